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
from numba import njit

from ._config import JIT_OPTIONS
from .rng import _hash64

BLOCK = 1 << 16


@njit(**JIT_OPTIONS)
def _fwht(a: np.ndarray, start: int, size: int) -> None:
    """In-place unnormalized fast Walsh–Hadamard transform of ``a[start:start+size]``."""
    h = 1
    while h < size:
        for i in range(start, start + size, 2 * h):
            for j in range(i, i + h):
                x = a[j]
                y = a[j + h]
                a[j] = x + y
                a[j + h] = x - y
        h *= 2


@njit(**JIT_OPTIONS)
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


@njit(**JIT_OPTIONS)
def _rotate(a: np.ndarray, seed: np.uint64, block: int, inverse: bool) -> None:
    """Rotate ``a`` (float32) in place; ``inverse`` undoes it."""
    n = a.shape[0]
    sizes = _block_sizes(n, block)
    start = 0
    for b in range(sizes.shape[0]):
        size = sizes[b]
        scale = np.float32(1.0 / math.sqrt(size))
        if not inverse:
            for i in range(start, start + size):
                if _hash64(seed, i) >> np.uint64(63):
                    a[i] = -a[i]
        _fwht(a, start, size)
        for i in range(start, start + size):
            a[i] *= scale
        if inverse:
            for i in range(start, start + size):
                if _hash64(seed, i) >> np.uint64(63):
                    a[i] = -a[i]
        start += size
