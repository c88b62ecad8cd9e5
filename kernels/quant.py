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
from numba.cpython.unsafe.numbers import leading_zeros

from ._config import _at, inline_jit, jit
from .prefetch import AHEAD, PAGE_ELEMENTS, _prefetch
from .rng import _uniform

NEAREST = 0
STOCHASTIC = 1
DITHER = 2


@inline_jit
def _quantize_one(v: float, index: int, mode: int, offset: float, seed: np.uint64) -> int:
    if mode == NEAREST:
        k = int(abs(v) + offset)  # non-negative: truncation is floor
        return -k if v < 0.0 else k
    return math.floor(v + _uniform(seed, index))


@inline_jit
def _dequantize_one(
    q: int, index: int, mode: int, step: float, recon: np.ndarray, seed: np.uint64
) -> float:
    """Reconstruction of integer ``q``; ``recon[k]`` (k >= 1) overrides level k in NEAREST."""
    if mode == DITHER:
        return (q - _uniform(seed, index) + 0.5) * step
    if mode == NEAREST:
        k = abs(q)
        if k > 0 and k < recon.shape[0]:
            return recon[k] * step if q > 0 else -recon[k] * step
    return q * step


@jit
def _quantize(
    x: np.ndarray, inv_step: float, mode: int, offset: float, seed: np.uint64, out: np.ndarray
) -> float:
    """Quantize ``x`` into ``out``. Returns the squared error (step units) for the random
    modes, which pay for their random numbers here anyway; 0 for NEAREST (see _sse)."""
    sse = 0.0
    if mode == NEAREST:  # branch-free, so that it vectorizes
        for i in range(x.shape[0]):
            v = float(x[i]) * inv_step
            k = int(abs(v) + offset)  # non-negative: truncation is floor
            out[i] = -k if v < 0.0 else k
    else:
        for i in range(x.shape[0]):
            v = float(x[i]) * inv_step
            u = _uniform(seed, i)
            q = math.floor(v + u)
            out[i] = q
            e = (q - v) if mode == STOCHASTIC else (q - u + 0.5 - v)
            sse += e * e
    return sse


@jit
def _sse_nearest(x: np.ndarray, inv_step: float, offset: float, recon: np.ndarray) -> float:
    """Squared error (step units) of NEAREST rounding with reconstruction ``recon``."""
    top = max(recon.shape[0], 1)
    shift = np.zeros(top + 1)
    for k in range(1, recon.shape[0]):
        shift[k] = recon[k] - k
    s0 = s1 = 0.0
    n2 = x.shape[0] // 2 * 2
    for i in range(0, n2, 2):
        if i % PAGE_ELEMENTS == 0:  # (a page walk's wait, without: 2.1 ns an element)
            _prefetch(x, i + AHEAD)
        a = abs(float(x[i]) * inv_step)
        k = int(a + offset)
        e = a - (k + shift[min(k, top)])
        s0 += e * e
        b = abs(float(x[i + 1]) * inv_step)
        k = int(b + offset)
        e = b - (k + shift[min(k, top)])
        s1 += e * e
    for i in range(n2, x.shape[0]):
        a = abs(float(x[i]) * inv_step)
        k = int(a + offset)
        e = a - (k + shift[min(k, top)])
        s0 += e * e
    return s0 + s1


@inline_jit
def _nearest_table(recon: np.ndarray, step: float) -> np.ndarray:
    """The levels with their own reconstruction, ``recon[k] * step`` (level 0 at 0.0):
    NEAREST's numbers of :func:`_dequantize_one` for ``k < len(recon)``."""
    top = recon.shape[0]
    table = np.zeros(max(top, 1))
    for k in range(1, top):
        table[k] = recon[k] * step
    return table


@inline_jit
def _nearest_magnitude(k: int, table: np.ndarray, step: float) -> float:
    """NEAREST's reconstruction of level magnitude ``k >= 0`` (``table`` from
    :func:`_nearest_table`)."""
    return table[k] if k < table.shape[0] else k * step


@inline_jit
def _dequantize_run(
    q: np.ndarray,
    n: int,
    table: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    seed: np.uint64,
    index: int,
    out: np.ndarray,
    at: int,
) -> None:
    """``out[at + i]`` = the reconstruction of ``q[i]`` for ``i < n``, element ``index + i``
    of the random stream ``seed`` (``table`` from :func:`_nearest_table`)."""
    dst = out[at : at + n]  # a slice from 0: an offset in the index kept loops scalar
    if mode == NEAREST:
        for i in range(n):
            v = int(q[i])
            mag = _nearest_magnitude(abs(v), table, step)
            dst[i] = mag if v >= 0 else -mag
        return
    for i in range(n):
        dst[i] = _dequantize_one(int(q[i]), index + i, mode, step, recon, seed)


@jit
def _dequantize(
    q: np.ndarray, step: float, mode: int, recon: np.ndarray, seed: np.uint64, out: np.ndarray
) -> None:
    table = _nearest_table(recon, step)
    _dequantize_run(q, q.shape[0], table, mode, step, recon, seed, 0, out, 0)


@jit
def _all_finite(bits: np.ndarray) -> bool:
    """Whether every float32 (given as its uint32 bits) is finite: no exponent field all
    ones. An integer maximum, which vectorizes (a float test would not, without
    reassociation)."""
    top = np.uint32(0)
    for i in range(bits.shape[0]):
        top = max(top, bits[i] & np.uint32(0x7F800000))
    return top != np.uint32(0x7F800000)


@jit
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


_BIT_LENGTH_TABLE = np.array([int(v).bit_length() for v in range(256)], dtype=np.int64)


@inline_jit
def _bit_length_flat(v: int) -> int:
    """Bit length of ``0 <= v < 2**63`` from the count of leading zeros (one instruction,
    no branch or table), for hot loops."""
    return 64 - np.int64(leading_zeros(np.uint64(v)))  # type: ignore[call-arg, return-value]


@inline_jit
def _bit_length(v: int) -> int:
    """Bit length of ``0 <= v < 2**64`` (a table for small values, halving for the rest)."""
    if v < 256:
        return _BIT_LENGTH_TABLE[v]
    n = 0
    if v >= 1 << 32:
        v >>= 32
        n += 32
    if v >= 1 << 16:
        v >>= 16
        n += 16
    if v >= 1 << 8:
        v >>= 8
        n += 8
    return n + _BIT_LENGTH_TABLE[v]


@inline_jit
def _gamma_bits(v: int) -> int:
    """Length in bits of the Elias-gamma code of ``v >= 1``."""
    return 2 * _bit_length(v) - 1


@jit
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of ``a[i] * b[i]`` in float64, on one thread, in a fixed order (four partial
    sums, then the tail), so the result is the same on every machine: unlike BLAS's dot,
    which spreads a long vector over a thread pool that stalls on a busy machine."""
    s0 = s1 = s2 = s3 = 0.0
    n4 = a.shape[0] // 4 * 4
    for i in range(0, n4, 4):
        s0 += np.float64(a[i]) * np.float64(b[i])
        s1 += np.float64(a[i + 1]) * np.float64(b[i + 1])
        s2 += np.float64(a[i + 2]) * np.float64(b[i + 2])
        s3 += np.float64(a[i + 3]) * np.float64(b[i + 3])
    for i in range(n4, a.shape[0]):
        s0 += np.float64(a[i]) * np.float64(b[i])
    return (s0 + s1) + (s2 + s3)


@jit
def _max_abs_and_sumsq(x: np.ndarray) -> tuple[float, float, bool]:
    """One pass: max |x|, sum of squares (float64), and whether every value is finite.

    A NaN or Inf makes the sum of squares non-finite, so no per-element test is needed;
    four partial sums keep the float additions from serializing.
    """
    m0 = m1 = m2 = m3 = 0.0
    s0 = s1 = s2 = s3 = 0.0
    n4 = x.shape[0] // 4 * 4
    for i in range(0, n4, 4):
        if i % PAGE_ELEMENTS == 0:
            _prefetch(x, i + AHEAD)
        a = np.float64(x[i])
        b = np.float64(x[i + 1])
        c = np.float64(x[i + 2])
        d = np.float64(x[i + 3])
        s0 += a * a
        s1 += b * b
        s2 += c * c
        s3 += d * d
        m0 = max(m0, abs(a))
        m1 = max(m1, abs(b))
        m2 = max(m2, abs(c))
        m3 = max(m3, abs(d))
    for i in range(n4, x.shape[0]):
        a = np.float64(x[i])
        s0 += a * a
        m0 = max(m0, abs(a))
    s = (s0 + s1) + (s2 + s3)
    finite = math.isfinite(s)
    return max(max(m0, m1), max(m2, m3)), s, finite


@jit
def _segment_max_abs_and_sumsq(
    x: np.ndarray, edges: np.ndarray, seg_max: np.ndarray
) -> tuple[float, float, bool]:
    """:func:`_max_abs_and_sumsq` of each segment ``x[edges[s]:edges[s + 1]]`` in one pass:
    fills ``seg_max[s]`` and returns the totals. The caller proves ``edges`` ascending
    within ``[0, len(x)]`` and ``len(seg_max) == len(edges) - 1``."""
    m = 0.0
    s = 0.0
    for j in range(edges.shape[0] - 1):
        mj, sj, _ = _max_abs_and_sumsq(x[edges[j] : edges[j + 1]])
        seg_max[j] = mj
        m = max(m, mj)
        s += sj
    return m, s, math.isfinite(s)


#: elements a tile of :func:`_stats_nearest` (its non-zero positions fit in L1)
STATS_TILE = 2048


@inline_jit
def _stats_nearest(
    x: np.ndarray,
    inv_step: float,
    offset: float,
    want_rleg: bool,
    hist: np.ndarray,
    sum_abs: np.ndarray,
    sum_sq: np.ndarray,
) -> tuple[int, int, float, int]:
    """:func:`_stats` for NEAREST, the same numbers in two loops a tile: the first, without
    a branch on the level, adds up the zero levels and lists the non-zero ones' positions;
    the second updates the non-zero levels' sums from that list. Every sum takes its terms
    in the same order as one loop would (the zeros' in element order, each level's in
    element order), so the floats are the same; what goes is a mispredicted branch on
    most non-zero levels."""
    hk = (hist.shape[0] - 1) // 2
    n = x.shape[0]
    n_over = 0
    over_bits = 0
    sse = 0.0
    rleg_bits = 0
    last = -1  # the last non-zero level's position
    zeros = 0
    zero_sq = 0.0
    where = np.empty(STATS_TILE, np.int64)
    for t0 in range(0, n, STATS_TILE):
        t1 = min(t0 + STATS_TILE, n)
        m = 0
        for j in range(t0, t1):
            a = abs(float(x[j]) * inv_step)
            zero = a + offset < 1.0  # int(a + offset) == 0, as 0 <= offset < 1
            zero_sq += a * a if zero else 0.0  # (+0.0: the sum unchanged)
            where[_at(m)] = j
            m += not zero
        zeros += (t1 - t0) - m
        for i in range(m):
            j = where[i]
            v = float(x[j]) * inv_step
            a = abs(v)
            k = int(a + offset)
            q = -k if v < 0.0 else k
            if k <= hk:
                sum_abs[_at(k)] += a
                sum_sq[_at(k)] += a * a
                hist[_at(q + hk)] += 1
            else:
                sse += (a - k) * (a - k)
                n_over += 1
                zz = 2 * q if q > 0 else -2 * q - 1
                over_bits += _gamma_bits(zz + 1)
            if want_rleg:
                rleg_bits += _gamma_bits(j - last) + 1 + _gamma_bits(k)
                last = j
    hist[hk] += zeros
    sum_sq[0] += zero_sq
    if want_rleg and n - 1 - last > 0:
        rleg_bits += _gamma_bits(n - last)
    return n_over, over_bits, sse, rleg_bits


@jit
def _stats(
    x: np.ndarray,
    index: np.ndarray,
    inv_step: float,
    mode: int,
    offset: float,
    seed: np.uint64,
    want_rleg: bool,
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
    of the elements not covered by the per-level sums, and (if ``want_rleg``) the exact bits
    the run-length Elias-gamma code would spend on this sequence.

    Safety: the caller (``fedcodec.rdq._Solver.evaluate``) proves ``inv_step`` finite and
    positive with ``max |x| * inv_step + 1 <= 2**30``: the level ``k`` of a NaN step is
    ``int(NaN)``, a huge negative index (it once corrupted the heap). ``len(sum_abs) ==
    len(sum_sq) == hk + 1``.
    """
    hk = (hist.shape[0] - 1) // 2
    if mode == NEAREST:
        return _stats_nearest(x, inv_step, offset, want_rleg, hist, sum_abs, sum_sq)
    # the random roundings: their error is summed here, per element (no per-level sums)
    has_index = index.shape[0] > 0
    n_over = 0
    over_bits = 0
    sse = 0.0
    rleg_bits = 0
    zero_run = 1
    zeros = 0
    for j in range(x.shape[0]):
        v = float(x[j]) * inv_step
        u = _uniform(seed, index[j] if has_index else j)
        q = math.floor(v + u)
        e = (q - v) if mode == STOCHASTIC else (q - u + 0.5 - v)
        sse += e * e
        if q == 0:
            zeros += 1
        if q != 0:
            if -hk <= q <= hk:
                hist[q + hk] += 1
            else:
                n_over += 1
                zz = 2 * q if q > 0 else -2 * q - 1
                over_bits += _gamma_bits(zz + 1)
        if want_rleg:
            if q == 0:
                zero_run += 1
            else:
                rleg_bits += _gamma_bits(zero_run) + 1 + _gamma_bits(abs(q))
                zero_run = 1
    hist[hk] += zeros
    if want_rleg and zero_run > 1:
        rleg_bits += _gamma_bits(zero_run)
    return n_over, over_bits, sse, rleg_bits


@jit
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
    """Values of ANS symbols (level ``lo + s``; ``esc_symbol`` takes the next of
    ``escapes``) into float32 ``out``. Returns 0, -1 if there are more escape symbols than
    escaped levels, -2 if fewer, -3 for a symbol outside the alphabet.

    Safety: ``symbols`` and ``escapes`` may hold any values (each symbol is checked against
    the alphabet before use, escapes are counted); the caller (``fedcodec.coders.ans``)
    proves ``esc_symbol >= 1``, levels ``lo .. lo + esc_symbol`` and every escape within
    ``MAX_ABS_LEVEL``, a valid ``mode`` and a finite positive ``step``."""
    n_esc = 0
    n_escapes = escapes.shape[0]
    if mode == DITHER:
        for i in range(symbols.shape[0]):
            s = int(symbols[i])
            if s == esc_symbol:
                if n_esc >= n_escapes:
                    return -1
                q = escapes[n_esc]
                n_esc += 1
            elif s > esc_symbol or s < 0:
                return -3
            else:
                q = s + lo
            out[i] = (q - _uniform(seed, i) + 0.5) * step
    else:
        table = np.empty(esc_symbol + 1, dtype=np.float32)
        for s in range(esc_symbol):
            table[s] = _dequantize_one(s + lo, 0, mode, step, recon, seed)
        table[esc_symbol] = 0.0
        for i in range(symbols.shape[0]):
            s = int(symbols[i])
            if s > esc_symbol or s < 0:
                return -3
            out[i] = table[s]
        for i in range(symbols.shape[0]):  # escapes are rare: a second, cheap pass
            if symbols[i] == esc_symbol:
                if n_esc >= n_escapes:
                    return -1
                out[i] = _dequantize_one(escapes[n_esc], i, mode, step, recon, seed)
                n_esc += 1
    if n_esc != n_escapes:
        return -2
    return 0


@jit
def _count_symbols(symbols: np.ndarray, counts: np.ndarray) -> None:
    """Add the histogram of ``symbols`` to ``counts`` (four partial histograms, so that
    runs of equal symbols do not serialize on one counter)."""
    m = counts.shape[0]
    partial = np.zeros((4, m), dtype=np.int64)
    n4 = symbols.shape[0] // 4 * 4
    for i in range(0, n4, 4):
        if i % PAGE_ELEMENTS == 0:
            _prefetch(symbols, i + 2 * AHEAD)  # two-byte symbols: as many pages ahead
        partial[0, symbols[i]] += 1
        partial[1, symbols[i + 1]] += 1
        partial[2, symbols[i + 2]] += 1
        partial[3, symbols[i + 3]] += 1
    for i in range(n4, symbols.shape[0]):
        partial[0, symbols[i]] += 1
    for j in range(m):
        counts[j] += partial[0, j] + partial[1, j] + partial[2, j] + partial[3, j]


@jit
def _quantize_model(
    x: np.ndarray,
    inv_step: float,
    mode: int,
    offset: float,
    seed: np.uint64,
    recon: np.ndarray,
    lo: int,
    want_sse: bool,
    symbols: np.ndarray,
    counts: np.ndarray,
    escapes: np.ndarray,
) -> tuple[int, int, float]:
    """The encoder's full pass for the ANS coder: quantize, map to model symbols, count.

    ``symbols[i] = q - lo`` when it lies in ``[0, m)`` with ``m = len(counts) - 1``, else
    the escape symbol ``m`` with ``q`` appended to ``escapes`` (element order). Fills
    ``counts`` (the exact histogram of the symbols). Returns the escape count (-1 if
    ``escapes`` is full), the Elias-gamma bits of the escaped levels' zigzag codes, and the
    squared error in step units given the reconstruction table ``recon`` (for rounding
    ``nearest`` only if ``want_sse``; 0 otherwise).
    """
    m = counts.shape[0] - 1
    cap = escapes.shape[0]
    n_esc = 0
    sse = 0.0
    if mode == NEAREST:
        # branch-free so that it vectorizes: out-of-range levels become the escape symbol
        # here and are collected below (they are rare)
        for i in range(x.shape[0]):
            v = float(x[i]) * inv_step
            k = int(abs(v) + offset)  # non-negative: truncation is floor
            q = -k if v < 0.0 else k
            s = q - lo
            symbols[i] = s if (s >= 0) & (s < m) else m
        _count_symbols(symbols, counts)
        n_esc = counts[m]
        if n_esc > cap:
            return -1, 0, 0.0
        j = 0
        if n_esc > 0:
            for i in range(x.shape[0]):
                if symbols[i] == m:
                    v = float(x[i]) * inv_step
                    k = int(abs(v) + offset)
                    escapes[j] = -k if v < 0.0 else k
                    j += 1
        if want_sse:
            sse = _sse_nearest(x, inv_step, offset, recon)
    else:
        for i in range(x.shape[0]):
            v = float(x[i]) * inv_step
            u = _uniform(seed, i)
            q = math.floor(v + u)
            e = (q - v) if mode == STOCHASTIC else (q - u + 0.5 - v)
            sse += e * e
            s = q - lo
            if s >= 0 and s < m:
                symbols[i] = s
            else:
                if n_esc >= cap:
                    return -1, 0, 0.0
                escapes[n_esc] = q
                n_esc += 1
                symbols[i] = m
        _count_symbols(symbols, counts)
    esc_bits = 0
    for j in range(n_esc):
        q = escapes[j]
        esc_bits += _gamma_bits((2 * q if q > 0 else -2 * q - 1) + 1)
    return n_esc, esc_bits, sse
