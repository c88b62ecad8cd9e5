"""Randomized Hadamard rotation of vectors of any length.

A vector of length n is split into blocks: as many blocks of ``BLOCK`` (2**16) elements as
fit, then the binary decomposition of the rest (e.g. 1000 = 512 + 256 + 128 + 64 + 32 + 8),
so no padding is needed and nothing extra is sent. Each block is multiplied by random signs
(from the shared seed) and by the orthonormal Walsh–Hadamard matrix: ``y = H D x / sqrt(b)``.
The inverse is ``x = D H y / sqrt(b)``. Blocks of 2**16 float32 values fit in L2 cache.
"""

from __future__ import annotations

import math

import numpy as np

from ._config import jit
from .rng import _hash64

BLOCK = 1 << 16


@jit
def _fwht(a: np.ndarray, start: int, size: int) -> None:
    """In-place unnormalized fast Walsh–Hadamard transform of ``a[start:start+size]``.

    The first three stages run in registers on 8-element chunks and the rest two stages
    per pass (radix 4); every butterfly is the same float operation as in the textbook
    radix-2 order, so results do not depend on this arrangement.
    """
    h = 1
    if size >= 8:
        for b in range(start, start + size, 8):
            x0, x1, x2, x3 = a[b], a[b + 1], a[b + 2], a[b + 3]
            x4, x5, x6, x7 = a[b + 4], a[b + 5], a[b + 6], a[b + 7]
            y0, y1, y2, y3 = x0 + x1, x0 - x1, x2 + x3, x2 - x3
            y4, y5, y6, y7 = x4 + x5, x4 - x5, x6 + x7, x6 - x7
            z0, z2, z1, z3 = y0 + y2, y0 - y2, y1 + y3, y1 - y3
            z4, z6, z5, z7 = y4 + y6, y4 - y6, y5 + y7, y5 - y7
            a[b], a[b + 4] = z0 + z4, z0 - z4
            a[b + 1], a[b + 5] = z1 + z5, z1 - z5
            a[b + 2], a[b + 6] = z2 + z6, z2 - z6
            a[b + 3], a[b + 7] = z3 + z7, z3 - z7
        h = 8
    while 4 * h <= size:
        for i in range(start, start + size, 4 * h):
            for j in range(i, i + h):
                x0 = a[j]
                x1 = a[j + h]
                x2 = a[j + 2 * h]
                x3 = a[j + 3 * h]
                y0 = x0 + x1
                y1 = x0 - x1
                y2 = x2 + x3
                y3 = x2 - x3
                a[j] = y0 + y2
                a[j + 2 * h] = y0 - y2
                a[j + h] = y1 + y3
                a[j + 3 * h] = y1 - y3
        h *= 4
    while h < size:
        for i in range(start, start + size, 2 * h):
            for j in range(i, i + h):
                x = a[j]
                y = a[j + h]
                a[j] = x + y
                a[j + h] = x - y
        h *= 2


@jit
def _block_sizes(n: int, block: int) -> np.ndarray:
    count = n // block
    rest = n - count * block
    extra = 0
    r = rest
    while r > 0:
        extra += r & 1
        r >>= 1
    sizes = np.empty(count + extra, dtype=np.int64)
    for b in range(count):
        sizes[b] = block
    k = count
    bit = block
    while bit > 0:
        if rest & bit:
            sizes[k] = bit
            k += 1
        bit >>= 1
    return sizes


@jit
def _sign_scale(a: np.ndarray, start: int, size: int, seed: np.uint64, scale: np.float32) -> None:
    """Multiply ``a[start:start+size]`` by ``scale`` and the random signs of the stream:
    element i is negated when bit ``i % 64`` of word ``i // 64`` of the stream is set."""
    word = np.uint64(0)
    for i in range(start, start + size):
        if i % 64 == 0 or i == start:
            word = _hash64(seed, i // 64)
        if (word >> np.uint64(i % 64)) & np.uint64(1):
            a[i] = -a[i] * scale
        else:
            a[i] = a[i] * scale


@jit
def _rotate(a: np.ndarray, seed: np.uint64, block: int, inverse: bool) -> None:
    """Rotate ``a`` (float32) in place; ``inverse`` undoes it."""
    n = a.shape[0]
    sizes = _block_sizes(n, block)
    start = 0
    for b in range(sizes.shape[0]):
        size = sizes[b]
        scale = np.float32(1.0 / math.sqrt(size))
        if inverse:
            _fwht(a, start, size)
            _sign_scale(a, start, size, seed, scale)
        else:
            _sign_scale(a, start, size, seed, scale)
            _fwht(a, start, size)
        start += size
