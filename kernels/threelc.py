"""3LC kernels (Lim, Andersen, Kaminsky 2019): ternary levels, quartic and zero-run coding.

Quartic encoding packs five trits t0..t4 (each in {-1, 0, 1}) into one byte
``sum((t_j + 1) * 3**j)`` in 0..242 (the first element is the least significant digit);
the last group is padded with zeros. An all-zero group is byte 121; zero-run encoding
replaces a run of 2..14 such bytes by one byte 243..255 (243 + run - 2), longer runs
being cut into runs of 14 (a leftover single 121 stays as it is).
"""

from __future__ import annotations

import numpy as np

from ._config import inline_jit, jit

ZERO_GROUP = 121
RUN_BASE = 243
MAX_RUN = 14


@inline_jit
def _flush_run(out: np.ndarray, pos: int, run: int) -> int:
    """Write a pending run of ``run < MAX_RUN`` zero groups; returns the new position."""
    if run == 1:
        out[pos] = ZERO_GROUP
        pos += 1
    elif run > 1:
        out[pos] = RUN_BASE + run - 2
        pos += 1
    return pos


@jit
def _threelc_encode(x: np.ndarray, inv_m: float, out: np.ndarray) -> int:
    """Ternarize ``round(x / M)`` (half away from zero, |x| <= M), quartic-encode and
    zero-run-encode into ``out`` (at least ceil(n / 5) bytes); returns the bytes written."""
    n = x.shape[0]
    groups = (n + 4) // 5
    pos = 0
    run = 0
    for g in range(groups):
        byte = 0
        mult = 1
        for j in range(5):
            i = 5 * g + j
            digit = 1
            if i < n:
                v = float(x[i]) * inv_m
                if v >= 0.5:
                    digit = 2
                elif v <= -0.5:
                    digit = 0
            byte += digit * mult
            mult *= 3
        if byte == ZERO_GROUP:
            run += 1
            if run == MAX_RUN:
                out[pos] = RUN_BASE + MAX_RUN - 2
                pos += 1
                run = 0
            continue
        pos = _flush_run(out, pos, run)
        run = 0
        out[pos] = byte
        pos += 1
    return _flush_run(out, pos, run)


@jit
def _threelc_decode(data: np.ndarray, m: float, out: np.ndarray) -> int:
    """Decode into float32 ``out`` (values t * M); returns 0, -1 if the groups do not add
    up to the element count, -2 if the padding trits of the last group are not zero.

    Safety: ``data`` may be any bytes and ``out`` any length; every write index is checked
    against the group count first (the caller, ``fedcodec.threelc``, proves M finite).
    """
    n = out.shape[0]
    groups = (n + 4) // 5
    g = 0
    for k in range(data.shape[0]):
        b = int(data[k])
        if b >= RUN_BASE:
            count = b - RUN_BASE + 2
            if g + count > groups:
                return -1
            for i in range(5 * g, min(n, 5 * (g + count))):
                out[i] = 0.0
            g += count
            continue
        if g >= groups:
            return -1
        for j in range(5):
            digit = b % 3
            b //= 3
            i = 5 * g + j
            if i < n:
                out[i] = (digit - 1) * m
            elif digit != 1:
                return -2
        g += 1
    if g != groups:
        return -1
    return 0
