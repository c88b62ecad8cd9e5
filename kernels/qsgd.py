"""QSGD kernels (Alistarh et al. 2017, Section 3's code): stochastic levels, Elias omega.

Per bucket of ``bucket`` elements: the number of nonzero levels + 1, then for each nonzero
element the gap to it (position - previous position, the first counted from -1), its sign
(1 = positive) and its level, each as an Elias omega code or a bit, LSB-first packing.
The bucket norms travel separately as float32.
"""

from __future__ import annotations

import math

import numpy as np

from ._config import jit
from .bits import (
    ERR_CAPACITY,
    ERR_RUN_OVERFLOW,
    ERR_TRAILING,
    _flush_bytes,
    _get_bit,
    _get_omega,
    _put_bits,
    _put_omega,
)
from .rng import _uniform


@jit
def _qsgd_encode(
    x: np.ndarray, bucket: int, num_levels: int, norms: np.ndarray, seed: np.uint64, out: np.ndarray
) -> int:
    """Quantize ``x`` bucket by bucket (level = floor(|x| / norm * s + u)) and write the
    codes; returns the bytes written or ERR_CAPACITY."""
    n = x.shape[0]
    cap = out.shape[0]
    pos = 0
    buf = np.uint64(0)
    nbits = 0
    levels = np.empty(bucket, dtype=np.int64)
    for b in range(norms.shape[0]):
        start = b * bucket
        end = min(n, start + bucket)
        norm = norms[b]
        count = 0
        if norm > 0:
            scale = num_levels / float(norm)
            for i in range(start, end):
                lv = math.floor(abs(float(x[i])) * scale + _uniform(seed, i))
                lv = min(lv, num_levels)
                levels[i - start] = lv
                count += lv != 0
        if pos + 16 > cap:
            return ERR_CAPACITY
        pos, buf, nbits = _put_omega(out, pos, buf, nbits, count + 1)
        if count == 0:
            continue
        prev = start - 1
        for i in range(start, end):
            lv = levels[i - start]
            if lv == 0:
                continue
            if pos + 24 > cap:
                return ERR_CAPACITY
            pos, buf, nbits = _put_omega(out, pos, buf, nbits, i - prev)
            pos, buf, nbits = _put_bits(out, pos, buf, nbits, np.uint64(1 if x[i] > 0 else 0), 1)
            pos, buf, nbits = _put_omega(out, pos, buf, nbits, lv)
            prev = i
    if pos + 8 > cap:
        return ERR_CAPACITY
    return _flush_bytes(out, pos, buf, nbits)


@jit
def _qsgd_decode(
    data: np.ndarray, bucket: int, num_levels: int, norms: np.ndarray, out: np.ndarray
) -> int:
    """Decode into float32 ``out``; returns 0 or a negative status (see kernels.bits).

    Safety (the caller, ``fedcodec.qsgd``, proves it): ``bucket >= 1``, ``num_levels >= 1``
    and ``len(norms) == ceil(len(out) / bucket)``. ``data`` may be any bytes: every read is
    bounds-checked by the bit reader and every write index is checked against its bucket.
    """
    n = out.shape[0]
    pos = 0
    buf = np.uint64(0)
    nbits = 0
    for i in range(n):
        out[i] = 0.0
    for b in range(norms.shape[0]):
        start = b * bucket
        end = min(n, start + bucket)
        count, pos, buf, nbits = _get_omega(data, pos, buf, nbits)
        if count < 0:
            return count
        count -= 1
        if count > end - start:
            return ERR_RUN_OVERFLOW
        unit = float(norms[b]) / num_levels
        prev = start - 1
        for _ in range(count):
            gap, pos, buf, nbits = _get_omega(data, pos, buf, nbits)
            if gap < 0:
                return gap
            i = prev + gap
            if i >= end:
                return ERR_RUN_OVERFLOW
            sign, pos, buf, nbits = _get_bit(data, pos, buf, nbits)
            if sign < 0:
                return sign
            lv, pos, buf, nbits = _get_omega(data, pos, buf, nbits)
            if lv < 0:
                return lv
            if lv > num_levels:
                return ERR_RUN_OVERFLOW
            out[i] = lv * unit if sign else -lv * unit
            prev = i
    if pos != data.shape[0] or nbits >= 8 or buf != np.uint64(0):
        return ERR_TRAILING
    return 0
