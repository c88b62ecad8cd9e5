"""Scalar quantization kernels: quantize, dequantize and the statistics of the rate search.

Rounding modes (``mode``):

- ``NEAREST`` (0): ``q = sign(v) * floor(|v| + offset)`` with ``v = x / step``;
  ``offset = 0.5`` is plain rounding (half away from zero), a smaller offset widens the
  dead zone around zero (rate-distortion optimized rounding).
- ``STOCHASTIC`` (1): ``q = floor(v + u)``, ``u ~ U[0, 1)`` from the encoder's stream;
  unbiased, reconstructed as ``q * step``.
- ``DITHER`` (2): subtractive dither, ``q = floor(v + u)`` and ``x̂ = (q - u + 1/2) * step``
  with ``u`` from the shared stream; the error is uniform on a step and independent of x.

``v`` is computed as ``float64(x) * inv_step`` in both the encoder and any reference.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._config import INLINE_OPTIONS, JIT_OPTIONS
from .rng import _uniform

NEAREST = 0
STOCHASTIC = 1
DITHER = 2


@njit(**INLINE_OPTIONS)
def _quantize_one(v: float, index: int, mode: int, offset: float, seed: np.uint64) -> int:
    if mode == NEAREST:
        k = math.floor(abs(v) + offset)
        return -k if v < 0.0 else k
    return math.floor(v + _uniform(seed, index))


@njit(**INLINE_OPTIONS)
def _dequantize_one(
    q: int, index: int, mode: int, step: float, recon: np.ndarray, seed: np.uint64
) -> float:
    """Reconstruction of integer ``q``; ``recon[k]`` (k >= 1) overrides level k in NEAREST."""
    if mode == DITHER:
        return (q - _uniform(seed, index) + 0.5) * step
    if mode == NEAREST:
        k = abs(q)
        if 0 < k < recon.shape[0]:
            return recon[k] * step if q > 0 else -recon[k] * step
    return q * step


@njit(**JIT_OPTIONS)
def _quantize(
    x: np.ndarray, inv_step: float, mode: int, offset: float, seed: np.uint64, out: np.ndarray
) -> None:
    for i in range(x.shape[0]):
        out[i] = _quantize_one(float(x[i]) * inv_step, i, mode, offset, seed)


@njit(**JIT_OPTIONS)
def _dequantize(
    q: np.ndarray, step: float, mode: int, recon: np.ndarray, seed: np.uint64, out: np.ndarray
) -> None:
    for i in range(q.shape[0]):
        out[i] = _dequantize_one(int(q[i]), i, mode, step, recon, seed)


@njit(**JIT_OPTIONS)
def _histogram(q: np.ndarray, lo: int, counts: np.ndarray) -> int:
    """Count ``q`` in ``[lo, lo + len(counts))``; returns the number outside."""
    outside = 0
    m = counts.shape[0]
    for i in range(q.shape[0]):
        s = int(q[i]) - lo
        if 0 <= s < m:
            counts[s] += 1
        else:
            outside += 1
    return outside


@njit(**INLINE_OPTIONS)
def _bit_length(v: int) -> int:
    n = 0
    while v > 0:
        v >>= 1
        n += 1
    return n


@njit(**INLINE_OPTIONS)
def _gamma_bits(v: int) -> int:
    """Length in bits of the Elias-gamma code of ``v >= 1``."""
    return 2 * _bit_length(v) - 1


@njit(**JIT_OPTIONS)
def _max_abs_and_sumsq(x: np.ndarray) -> tuple[float, float, bool]:
    """One pass: max |x|, sum of squares (float64), and whether every value is finite."""
    m = 0.0
    s = 0.0
    finite = True
    for i in range(x.shape[0]):
        v = float(x[i])
        if not math.isfinite(v):
            finite = False
            break
        a = abs(v)
        if a > m:
            m = a
        s += v * v
    return m, s, finite


@njit(**JIT_OPTIONS)
def _stats(
    x: np.ndarray,
    index: np.ndarray,
    inv_step: float,
    mode: int,
    offset: float,
    seed: np.uint64,
    hist: np.ndarray,
    sum_abs: np.ndarray,
    sum_sq: np.ndarray,
) -> tuple[int, int, float, int]:
    """Statistics of quantizing ``x`` (the rate search's one pass; nothing is written out).

    ``index[j]`` is the position of ``x[j]`` in the message (empty: ``index[j] = j``), so
    random streams match the real encode. Fills ``hist`` (counts of q in
    ``[-hk, hk]``, ``hk = (len(hist) - 1) // 2``) and, for NEAREST, ``sum_abs[k]`` and
    ``sum_sq[k]`` (sums of |v| and v² over elements with |q| = k <= hk). Returns the count of
    |q| > hk, the Elias-gamma bits of their zigzag codes, the squared error (in step units)
    of the elements not covered by the per-level sums, and the exact bits the run-length
    Elias-gamma code would spend on this sequence.
    """
    hk = (hist.shape[0] - 1) // 2
    has_index = index.shape[0] > 0
    n_over = 0
    over_bits = 0
    sse = 0.0
    rleg_bits = 0
    zero_run = 1
    for j in range(x.shape[0]):
        i = index[j] if has_index else j
        v = float(x[j]) * inv_step
        if mode == NEAREST:
            a = abs(v)
            k = math.floor(a + offset)
            q = -k if v < 0.0 else k
            if k <= hk:
                sum_abs[k] += a
                sum_sq[k] += a * a
            else:
                sse += (a - k) * (a - k)
        else:
            u = _uniform(seed, i)
            q = math.floor(v + u)
            e = (q - v) if mode == STOCHASTIC else (q - u + 0.5 - v)
            sse += e * e
        if -hk <= q <= hk:
            hist[q + hk] += 1
        else:
            n_over += 1
            zz = 2 * q if q > 0 else -2 * q - 1
            over_bits += _gamma_bits(zz + 1)
        if q == 0:
            zero_run += 1
        else:
            rleg_bits += _gamma_bits(zero_run) + 1 + _gamma_bits(abs(q))
            zero_run = 1
    if zero_run > 1:
        rleg_bits += _gamma_bits(zero_run)
    return n_over, over_bits, sse, rleg_bits


@njit(**JIT_OPTIONS)
def _quantize_symbols(
    x: np.ndarray,
    inv_step: float,
    mode: int,
    offset: float,
    seed: np.uint64,
    lo: int,
    m: int,
    symbols: np.ndarray,
    escapes: np.ndarray,
) -> int:
    """Quantize to ANS symbol indices: ``q - lo`` in ``[0, m)``, else the escape ``m`` with
    ``q`` appended to ``escapes``. Returns the escape count, or -1 if ``escapes`` is full."""
    n_esc = 0
    cap = escapes.shape[0]
    for i in range(x.shape[0]):
        q = _quantize_one(float(x[i]) * inv_step, i, mode, offset, seed)
        s = q - lo
        if 0 <= s < m:
            symbols[i] = s
        else:
            if n_esc >= cap:
                return -1
            escapes[n_esc] = q
            n_esc += 1
            symbols[i] = m
    return n_esc


@njit(**JIT_OPTIONS)
def _dequantize_symbols(
    symbols: np.ndarray,
    lo: int,
    esc_symbol: int,
    escapes: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    seed: np.uint64,
    out: np.ndarray,
) -> int:
    """Inverse of :func:`_quantize_symbols` into float32 ``out``; symbols must lie in
    ``[0, esc_symbol]``. Returns 0, -1 if there are more escape symbols than escaped levels,
    -2 if fewer, -3 for a symbol outside the alphabet."""
    # values of the range's levels, precomputed for the deterministic modes
    table = np.empty(esc_symbol, dtype=np.float32)
    for s in range(esc_symbol):
        table[s] = _dequantize_one(s + lo, 0, mode, step, recon, seed)
    n_esc = 0
    for i in range(symbols.shape[0]):
        s = symbols[i]
        if s == esc_symbol:
            if n_esc >= escapes.shape[0]:
                return -1
            q = escapes[n_esc]
            n_esc += 1
            out[i] = _dequantize_one(q, i, mode, step, recon, seed)
        elif s < 0 or s > esc_symbol:
            return -3
        elif mode == DITHER:
            out[i] = _dequantize_one(s + lo, i, mode, step, recon, seed)
        else:
            out[i] = table[s]
    if n_esc != escapes.shape[0]:
        return -2
    return 0
