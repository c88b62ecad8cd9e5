"""The wide range decoder of the context coder's blocks (RDQ's coder id 5, ``kernels.ctxb``
with ``wide``).

Coder id 5 makes id 4's decisions (``kernels.ctx``: significance in the context of the
predicted-scale bin and the left neighbour, the unary magnitude with its Exp-Golomb escape,
the sign in its rank-1 context; 15-bit probabilities with shift-5 adaptation) on a 64-bit
range renormalized 32 bits at a time (id 4: a 32-bit range, 8 bits at a time). The encoder
is :func:`kernels.ctx._code_wide`. A decision on probability ``p`` splits the range at
``bound = (range >> 15) * p``: a 0 keeps ``[0, bound)``, a 1 the rest; a direct bit halves the
range (a 1 takes the upper half). When the range falls below 2**32, both shift it 32 bits:
the encoder writes ``low``'s top 32 bits (big-endian; a carry out of ``low`` ripples into the
bytes already written), the decoder reads 4 bytes. The stream starts the decoder's code with
its first 8 bytes and ends with the encoder's ``low`` (8 bytes), so a stream is 8 + 4k bytes
and the decoder must have read exactly its bytes at the end. A renormalization is a branch
the predictor misses; it now comes once per 32 bits of output instead of once per 8.

The decoder takes a tensor's rows at a time (:func:`_decode_rows`, called once per tensor in
a block, not inlined): numba counts a reference to each array an inlined helper takes, at
each call, which had cost about 80 ns a row (a block of 2-column rows decoded at a fifth of
the speed). A row's context pairs are computed first, in one loop over its columns on SIMD
lanes; then its decisions are written out in the loop rather than through inlined helpers
(numba kept reference-count calls on the data array in the loop for each inlined helper that
took it: bench/results/lab_notes.md, "Other decoders, prototyped"), and a zero level, the
common case, is decoded to its end on its own branch.
"""

from __future__ import annotations

import numpy as np

from ._config import _at, _unlikely, inline_jit, jit
from .ctx import (
    ERR_EXHAUSTED,
    ERR_INVALID,
    MAG0,
    MAG_UNARY,
    MAX_PREFIX,
    MOVE_BITS,
    NUM_BINS,
    PROB_BITS,
    PROB_ONE,
    SIG0,
    SIGN0,
    _row_part,
    _sign_context,
)
from .quant import _dequantize_run, _nearest_magnitude

_U = np.uint64
_U0 = _U(0)
_U1 = _U(1)
_U32 = _U(32)
_UPROB = _U(PROB_BITS)
_TOP = _U(1 << 32)
WIDE_HEAD = 8  # the bytes that start the decoder's code


@inline_jit
def _read32(data: np.ndarray, n_data: int, pos: int) -> np.uint64:
    """The 4 bytes at ``pos``, big-endian; zeros where they pass the data's end (the
    escape's reads; the row's loop reads inline)."""
    if pos + 4 <= n_data:
        return (
            (_U(data[pos]) << _U(24))
            | (_U(data[pos + 1]) << _U(16))
            | (_U(data[pos + 2]) << _U(8))
            | _U(data[pos + 3])
        )
    return _U0


@inline_jit
def _start(data: np.ndarray) -> tuple[np.uint64, np.uint64]:
    """(range, code) from the stream's first ``WIDE_HEAD`` bytes (the caller proves them)."""
    code = _U0
    for k in range(WIDE_HEAD):
        code = (code << _U(8)) | _U(data[k])
    return _U(0xFFFFFFFFFFFFFFFF), code


@jit
def _escape(
    data: np.ndarray, rng: np.uint64, code: np.uint64, pos: int
) -> tuple[int, np.uint64, np.uint64, int]:
    """The order-0 Exp-Golomb remainder of a magnitude in direct bits: (``w - 1``, or -1 for
    a prefix longer than MAX_PREFIX; the decoder's range, code and position after it)."""
    n_data = data.shape[0]
    nb = 0
    w = 1
    reading = True  # the prefix (ones and a zero), then nb bits of the value
    k = 0
    while True:
        if not reading and k == nb:
            break
        rng >>= _U1
        bit = 0
        if code >= rng:
            code -= rng
            bit = 1
        if _unlikely(rng < _TOP):
            rng <<= _U32
            code = (code << _U32) | _read32(data, n_data, pos)
            pos += 4
        if reading:
            if bit == 0:
                reading = False
                continue
            nb += 1
            if nb > MAX_PREFIX:
                return -1, rng, code, pos
        else:
            w = (w << 1) | bit
            k += 1
    return w - 1, rng, code, pos


@jit
def _decode_rows(
    data: np.ndarray,
    rng: np.uint64,
    code: np.uint64,
    pos: int,
    probs: np.ndarray,
    col_part: np.ndarray,
    row_side: np.ndarray,
    total: int,
    top: int,
    rows: int,
    multi: bool,
    cols: int,
    first: int,
    max_abs: int,
    q: np.ndarray,
    values: bool,
    direct: bool,
    fill: bool,
    mode: int,
    table: np.ndarray,
    step: float,
    recon: np.ndarray,
    seed: np.uint64,
    out: np.ndarray,
) -> tuple[int, np.uint64, np.uint64, int]:
    """One tensor's ``rows`` rows of ``cols`` columns (``col_part``: the columns' context
    parts, -1 for a column not coded; ``row_side``: the rows' RMS indices, 0 for a zero row,
    empty for a tensor without side information, whose RMS index is ``total``), the first
    at element ``first`` of the block's ``q`` (levels: ``values`` False) or ``out``; with
    ``direct``, NEAREST reconstructions go into ``out`` as they are decoded (``fill`` False:
    ``out`` is proven zero, rows are not zeroed first); with ``values`` and not ``direct``,
    ``q`` is a row's scratch and each row is dequantized into ``out`` (``mode``, ``step``,
    ``recon``, ``seed``). Returns (0, ERR_INVALID or ERR_EXHAUSTED; rng, code, pos).

    The loop over rows is here, not in the caller, so that the arrays are passed once per
    tensor: numba counts references to each array an inlined helper takes, at each call."""
    n_data = data.shape[0]
    side = row_side.shape[0] > 0
    col_last = np.zeros(cols if multi else 1, np.int8)  # (a vector needs none)
    sidx = np.empty(cols, np.int32)  # the row's context pairs (int32: on SIMD lanes)
    zero = np.int32(0)
    tp = np.int32(top)
    for r in range(rows):
        base = first + r * cols
        at = base if direct or not values else 0  # where the row's levels go in q
        if direct:
            if fill:
                out[base : base + cols] = 0.0
        else:
            q[at : at + cols] = 0
        row_part = NUM_BINS
        if side:
            ri = row_side[_at(r)]
            if ri == 0:  # a zero row
                if values and not direct:
                    _dequantize_run(q, cols, table, mode, step, recon, seed, base, out, base)
                continue
            row_part = _row_part(ri, total)
        rp = np.int32(row_part)
        for j in range(cols):  # each column's 2 ctx (the significance pair), -1: not coded
            c = np.int32(col_part[_at(j)])
            v = np.int32(min(max(np.int32(rp + c), zero), tp))
            sidx[_at(j)] = np.int32(v + v) if c >= zero else np.int32(-1)
        lsign = 0
        flip = 0
        for j in range(cols):
            si = sidx[_at(j)]
            if si < 0:
                lsign = 0
                continue
            i = SIG0 + si + (lsign & 1)  # lsign is -1, 0 or 1
            p = probs[_at(i)]
            bound = (rng >> _UPROB) * _U(p)
            if code < bound:  # a zero level: the common case, written out to its end
                rng = bound
                probs[_at(i)] = p + ((PROB_ONE - p) >> MOVE_BITS)
                lsign = 0
                if _unlikely(rng < _TOP):
                    rng <<= _U32
                    code <<= _U32
                    if pos + 4 <= n_data:
                        code |= (
                            (_U(data[_at(pos)]) << _U(24)) | (_U(data[_at(pos + 1)]) << _U(16))
                            | (_U(data[_at(pos + 2)]) << _U(8)) | _U(data[_at(pos + 3)])
                        )  # fmt: skip
                    pos += 4
                continue
            code -= bound
            rng -= bound
            probs[_at(i)] = p - (p >> MOVE_BITS)
            if _unlikely(rng < _TOP):
                rng <<= _U32
                code <<= _U32
                if pos + 4 <= n_data:
                    code |= (
                        (_U(data[_at(pos)]) << _U(24)) | (_U(data[_at(pos + 1)]) << _U(16))
                        | (_U(data[_at(pos + 2)]) << _U(8)) | _U(data[_at(pos + 3)])
                    )  # fmt: skip
                pos += 4
            mag = MAG0 + (si >> 1) * MAG_UNARY
            m = 0
            while True:
                i = mag + m
                p = probs[_at(i)]
                bound = (rng >> _UPROB) * _U(p)
                if code >= bound:
                    code -= bound
                    rng -= bound
                    probs[_at(i)] = p - (p >> MOVE_BITS)
                    bit = 1
                else:
                    rng = bound
                    probs[_at(i)] = p + ((PROB_ONE - p) >> MOVE_BITS)
                    bit = 0
                if _unlikely(rng < _TOP):
                    rng <<= _U32
                    code <<= _U32
                    if pos + 4 <= n_data:
                        code |= (
                            (_U(data[_at(pos)]) << _U(24)) | (_U(data[_at(pos + 1)]) << _U(16))
                            | (_U(data[_at(pos + 2)]) << _U(8)) | _U(data[_at(pos + 3)])
                        )  # fmt: skip
                    pos += 4
                if bit == 0:
                    break
                if m + 1 < MAG_UNARY:
                    m += 1
                    continue
                rest, rng, code, pos = _escape(data, rng, code, pos)
                if rest < 0:
                    return ERR_INVALID, rng, code, pos
                m = MAG_UNARY + rest
                break
            if m + 1 > max_abs:
                return ERR_INVALID, rng, code, pos
            cl = int(col_last[_at(j)]) if multi else 0
            i = SIGN0 + _sign_context(cl, flip, lsign)
            p = probs[_at(i)]  # the sign: no branch on the bit (a coin toss to the predictor)
            bound = (rng >> _UPROB) * _U(p)
            bit = 1 if code >= bound else 0
            umask = _U0 - _U(bit)
            code -= bound & umask
            rng = bound + ((rng - bound - bound) & umask)
            mask = -bit
            probs[_at(i)] = p + (((PROB_ONE - p) >> MOVE_BITS) & ~mask) - ((p >> MOVE_BITS) & mask)
            if _unlikely(rng < _TOP):
                rng <<= _U32
                code <<= _U32
                if pos + 4 <= n_data:
                    code |= (
                        (_U(data[_at(pos)]) << _U(24)) | (_U(data[_at(pos + 1)]) << _U(16))
                        | (_U(data[_at(pos + 2)]) << _U(8)) | _U(data[_at(pos + 3)])
                    )  # fmt: skip
                pos += 4
            sign = 1 - 2 * bit
            if cl != 0:
                flip = sign * cl
            if multi:
                col_last[_at(j)] = sign
            lsign = sign
            if direct:
                value = _nearest_magnitude(m + 1, table, step)
                out[_at(base + j)] = -value if bit else value
            else:
                q[_at(at + j)] = sign * (m + 1)
        if pos > n_data:
            return ERR_EXHAUSTED, rng, code, pos
        if values and not direct:
            _dequantize_run(q, cols, table, mode, step, recon, seed, base, out, base)
    return 0, rng, code, pos
