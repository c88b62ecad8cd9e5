"""The context coder in blocks with a wide range coder (RDQ's coder id 5, ``coder="ctx"`` on
updates of more than one block).

The contexts are the adaptive context coder's (``kernels.ctx``): row and column scales from
the side section, the left neighbour, the rank-1 sign prediction. The blocks are id 4's
(``kernels.ctxb``: whole rows, about 2**20 elements, each starting afresh). Three things
differ, all for the decoder's speed:

- The range is 64 bits and is renormalized 32 bits at a time (id 4: 32 bits, 8 at a time).
  A renormalization is a branch the predictor misses; it now comes once per 32 bits of
  output instead of once per 8.
- A non-zero level's magnitude is one multi-symbol step, not a unary string of binary
  decisions. The 16 symbols are ``|q| - 1`` for 0..14 and an escape (``|q| >= 16``, then the
  order-0 Exp-Golomb code of ``|q| - 16`` in direct bits). Each context (the
  predicted-scale bin) has 15-bit frequencies. They start at halves (1/2, 1/4, ..., each at
  least 1) and every ``MODEL_PERIOD`` magnitudes of the block move halfway, weighted by
  ``min(n, MODEL_WEIGHT) / MODEL_WEIGHT``, towards the frequencies of the ``n`` magnitudes
  each context saw since (:func:`_adapt`).
- Magnitudes (and their escape bits) go to a second stream. A block's body is the first
  stream's length (4 bytes, little-endian), the first stream (significance and sign
  decisions, adaptive binary as in id 4), then the second. The encoder's two flush loops
  then never branch on what kind of decision comes next, and the decoder's two states form
  two dependency chains.

Binary decisions are LZMA's (15-bit probabilities, shift-5 adaptation; a 1 takes the range
above ``bound = (range >> 15) * p``); a symbol with cumulative frequency ``c`` and frequency
``f`` takes ``[low + r c, low + r (c + f))`` with ``r = range >> 15``; a direct bit halves
the range. The encoder writes ``low``'s top 32 bits when the range falls below 2**32 and
propagates a carry into the bytes already written; it ends with ``low``'s 8 bytes. The
decoder starts from a stream's first 8 bytes and reads 4 at a time; reads past the end give
zeros and fail at the end, where exactly the stream's bytes must have been read.
"""

from __future__ import annotations

import numpy as np

from ._config import _at, inline_jit, jit
from .ctx import (
    BIN_OFFSET,
    BIT_COST,
    CHUNK,
    ERR_CAPACITY,
    ERR_EXHAUSTED,
    ERR_INVALID,
    ERR_TRAILING,
    MAX_PER_LEVEL,
    MAX_PREFIX,
    MOVE_BITS,
    NUM_BINS,
    NUM_CTX,
    NUM_PROBS,
    PROB_BITS,
    PROB_ONE,
    SIDE_OFFSET,
    SIG0,
    SIGN0,
    _runs_piece,
    _sign_context,
)
from .quant import NEAREST, _bit_length_flat, _dequantize_run, _nearest_magnitude, _nearest_table

__all__ = ["ERR_CAPACITY", "ERR_EXHAUSTED", "ERR_INVALID", "ERR_TRAILING"]

NSYM = 16  # magnitude symbols: |q| - 1 for 0..14, then the escape
ESCAPE = NSYM - 1
MODEL_PERIOD = 1024  # magnitudes between two moves of the models
MODEL_WEIGHT = 32
SYM_TOTAL = PROB_ONE  # the frequencies' total, 2**15
HEAD = 4  # a block's first stream's length, little-endian

_U = np.uint64
_LOW32 = _U(0xFFFFFFFF)
_TOP = _U(1 << 32)  # the range's floor
_FULL = _U(0xFFFFFFFFFFFFFFFF)


# -- the magnitudes' models ----------------------------------------------------------------
@jit
def _model_start(freq: np.ndarray, cum: np.ndarray) -> None:
    """Every context's frequencies at halves: 2**14, 2**13, ..., at least 1; the rest of
    the total on symbol 0. ``cum[c, s]``: the sum of ``freq[c, :s]`` (``cum[c, NSYM]`` the
    total)."""
    for c in range(freq.shape[0]):
        total = 0
        for s in range(NSYM):
            f = max(SYM_TOTAL >> (s + 1), 1)
            freq[c, s] = f
            total += f
        freq[c, 0] += SYM_TOTAL - total
        acc = 0
        for s in range(NSYM):
            cum[c, s] = acc
            acc += freq[c, s]
        cum[c, NSYM] = acc


@jit
def _adapt(freq: np.ndarray, cum: np.ndarray, counts: np.ndarray) -> None:
    """Move each context that saw magnitudes (``counts[c]``, then cleared) towards their
    frequencies: by ``min(n, MODEL_WEIGHT) / (2 * MODEL_WEIGHT)`` of the way, each
    frequency at least 1, the rounding's rest on the largest (which stays at least
    ``SYM_TOTAL / NSYM``). Integers only: the encoder and the decoder agree exactly."""
    for c in range(freq.shape[0]):
        n = 0
        for s in range(NSYM):
            n += counts[c, s]
        if n == 0:
            continue
        w = min(n, MODEL_WEIGHT)
        total = 0
        big = 0
        for s in range(NSYM):
            target = (counts[c, s] * SYM_TOTAL) // n
            f = max(freq[c, s] + ((target - freq[c, s]) * w) // (2 * MODEL_WEIGHT), 1)
            freq[c, s] = f
            total += f
            if f > freq[c, big]:
                big = s
            counts[c, s] = 0
        freq[c, big] += SYM_TOTAL - total
        acc = 0
        for s in range(NSYM):
            cum[c, s] = acc
            acc += freq[c, s]
        cum[c, NSYM] = acc


# -- encoder ---------------------------------------------------------------------------------
@inline_jit
def _carry(out: np.ndarray, pos: int) -> None:
    """Add one to the big-endian number in ``out[:pos]`` (bytes past ``len(out)`` are not
    kept: the caller reports the lack of room)."""
    k = min(pos, out.shape[0]) - 1
    while k >= 0:
        v = int(out[k]) + 1
        if v <= 0xFF:
            out[k] = v
            return
        out[k] = 0
        k -= 1


@inline_jit
def _emit(out: np.ndarray, pos: int, low: np.uint64) -> int:
    """Write ``low``'s top 32 bits at ``pos`` (big-endian, where there is room); returns the
    next position."""
    if pos + 4 <= out.shape[0]:
        w = low >> _U(32)
        out[pos] = (w >> _U(24)) & _U(0xFF)
        out[pos + 1] = (w >> _U(16)) & _U(0xFF)
        out[pos + 2] = (w >> _U(8)) & _U(0xFF)
        out[pos + 3] = w & _U(0xFF)
    return pos + 4


@jit
def _flush_bits(
    es: np.ndarray, probs: np.ndarray, dec: np.ndarray, nd: int, out: np.ndarray, cost: np.ndarray
) -> None:
    """Code the first ``nd`` binary decisions of ``dec`` (``(i + 1) * 2 + bit`` for
    probability ``i``, 0 or 1 a direct bit) into the first stream; the coder's state is
    ``es = [low, range, pos]`` (uint64). With a non-empty ``cost``, adds their ideal cost in
    bits to ``cost[0]`` instead. An adaptive bit is coded without a branch on its value."""
    if cost.shape[0] > 0:
        c = cost[0]
        for k in range(nd):
            d = dec[k]
            i = (d >> 1) - 1
            if i < 0:
                c += 1.0
                continue
            p = probs[_at(i)]
            mask = -(d & 1)
            c += BIT_COST[p + ((PROB_ONE - 2 * p) & mask)]
            probs[_at(i)] = p + (((PROB_ONE - p) >> MOVE_BITS) & ~mask) - ((p >> MOVE_BITS) & mask)
        cost[0] = c
        return
    low, rng, pos = es[0], es[1], int(np.int64(es[2]))
    for k in range(nd):
        d = dec[k]
        i = (d >> 1) - 1
        old = low
        if i < 0:
            rng >>= _U(1)
            low += rng & (_U(0) - _U(d & 1))
        else:
            p = probs[_at(i)]
            bit = d & 1
            umask = _U(0) - _U(bit)
            bound = (rng >> _U(PROB_BITS)) * _U(p)
            low += bound & umask
            # rng - bound for a 1, bound for a 0
            rng = bound + ((rng - bound - bound) & umask)
            mask = -bit
            probs[_at(i)] = p + (((PROB_ONE - p) >> MOVE_BITS) & ~mask) - ((p >> MOVE_BITS) & mask)
        if low < old:
            _carry(out, pos)
        if rng < _TOP:
            pos = _emit(out, pos, low)
            low <<= _U(32)
            rng <<= _U(32)
    es[0], es[1], es[2] = low, rng, _U(pos)


@jit
def _flush_syms(
    es: np.ndarray,
    freq: np.ndarray,
    cum: np.ndarray,
    counts: np.ndarray,
    left: np.ndarray,
    dec: np.ndarray,
    nd: int,
    out: np.ndarray,
    cost: np.ndarray,
) -> None:
    """Code the first ``nd`` entries of ``dec`` into the second stream: ``-(1 + c * NSYM +
    s)`` a magnitude symbol ``s`` in context ``c`` (counted; the models move every
    ``MODEL_PERIOD`` of them, ``left[0]`` to go), 0 or 1 a direct bit. State and ``cost``
    as :func:`_flush_bits`."""
    counting = cost.shape[0] > 0
    c_bits = cost[0] if counting else 0.0
    low, rng, pos = es[0], es[1], int(np.int64(es[2]))
    for k in range(nd):
        d = dec[k]
        old = low
        if d >= 0:
            if counting:
                c_bits += 1.0
                continue
            rng >>= _U(1)
            low += rng & (_U(0) - _U(d))
        else:
            e = -d - 1
            ctx = e // NSYM
            s = e - ctx * NSYM
            if counting:
                c_bits += BIT_COST[freq[ctx, s]]
            else:
                r = rng >> _U(PROB_BITS)
                low += r * _U(cum[ctx, s])
                rng = r * _U(freq[ctx, s])
            counts[ctx, s] += 1
            left[0] -= 1
            if left[0] == 0:
                left[0] = MODEL_PERIOD
                _adapt(freq, cum, counts)
        if counting:
            continue
        if low < old:
            _carry(out, pos)
        if rng < _TOP:
            pos = _emit(out, pos, low)
            low <<= _U(32)
            rng <<= _U(32)
    if counting:
        cost[0] = c_bits
        return
    es[0], es[1], es[2] = low, rng, _U(pos)


@jit
def _room(buf: np.ndarray, used: int, need: int) -> np.ndarray:
    """``buf``, or a copy of its first ``used`` bytes in one twice as large (or more), so
    that ``need`` bytes fit after them."""
    if used + need <= buf.shape[0]:
        return buf
    grown = np.empty(max(2 * buf.shape[0], used + need), np.uint8)
    grown[:used] = buf[:used]
    return grown


@jit
def _finish(es: np.ndarray, out: np.ndarray) -> int:
    """Write the stream's last 8 bytes (``low``); returns its length."""
    low, pos = es[0], int(np.int64(es[2]))
    pos = _emit(out, pos, low)
    pos = _emit(out, pos, low << _U(32))
    return pos


@inline_jit
def _encode_row(
    q: np.ndarray,
    base: int,
    cols: int,
    j0: int,
    lsign: int,
    flip: int,
    row_part: int,
    col_part: np.ndarray,
    top: int,
    multi: bool,
    col_last: np.ndarray,
    dec: np.ndarray,
    nd: int,
    sym: np.ndarray,
    ns: int,
    runs: np.ndarray,
) -> tuple[int, int, int, int, int]:
    """Append a row's levels ``q[base + j0 : base + cols]``: significance and sign
    decisions to ``dec`` (``nd`` there), magnitudes and escape bits to ``sym`` (``ns``),
    until one of them has fewer than ``MAX_PER_LEVEL`` places left; returns (nd, ns, the
    next column, the row's left sign and flip, to go on with). Contexts and the run-length
    count as :func:`kernels.ctx._encode_row`'s."""
    track = runs.shape[0] > 0
    row = q[base : base + cols]
    full = dec.shape[0] - MAX_PER_LEVEL
    j = j0
    while j < cols:
        if nd > full or ns > full:
            break
        c = col_part[_at(j)]
        j += 1
        if c < 0:
            lsign = 0
            continue
        ctx = min(max(row_part + c, 0), top)
        v = int(row[_at(j - 1)])
        sig = (SIG0 + 2 * ctx + (lsign != 0) + 1) * 2
        if v == 0:
            dec[_at(nd)] = sig
            nd += 1
            lsign = 0
            continue
        dec[_at(nd)] = sig + 1
        nd += 1
        m = abs(v) - 1
        s = min(m, ESCAPE)
        sym[_at(ns)] = -(1 + ctx * NSYM + s)
        ns += 1
        if s == ESCAPE:  # the order-0 Exp-Golomb code of m - ESCAPE, in direct bits
            w = m - ESCAPE + 1
            nb = _bit_length_flat(w) - 1
            for _ in range(nb):
                sym[_at(ns)] = 1
                ns += 1
            sym[_at(ns)] = 0
            ns += 1
            for b in range(nb - 1, -1, -1):
                sym[_at(ns)] = (w >> b) & 1
                ns += 1
        if track:
            at = base + j - 1
            runs[1] += 2 * _bit_length_flat(at - runs[2]) + 2 * _bit_length_flat(m + 1) - 1
            runs[2] = at
            if runs[0] < 0:
                runs[0] = at
        negative = v < 0
        cl = int(col_last[_at(j - 1)]) if multi else 0
        dec[_at(nd)] = (SIGN0 + _sign_context(cl, flip, lsign) + 1) * 2 + negative
        nd += 1
        sign = -1 if negative else 1
        if cl != 0:
            flip = sign * cl
        if multi:
            col_last[_at(j - 1)] = sign
        lsign = sign
    return nd, ns, j, lsign, flip


@jit
def _block_encode(
    q: np.ndarray,
    segs: np.ndarray,
    starts: np.ndarray,
    tensors: np.ndarray,
    use_side: np.ndarray,
    totals: np.ndarray,
    row_idx: np.ndarray,
    col_part: np.ndarray,
    row_off: np.ndarray,
    col_off: np.ndarray,
    out: np.ndarray,
    cost: np.ndarray,
    piece: np.ndarray,
) -> int:
    """Code one block (``segs[k] = (tensor, first row, end row)``) of int32 levels into
    ``out`` (the first stream's length, the first stream, the second); returns the bytes
    written, or ERR_CAPACITY if ``out`` is too small. With a non-empty ``cost``, writes
    nothing, sets ``cost[0]`` to the ideal cost in bits and returns 0. The other arguments
    as :func:`kernels.ctxb._block_encode`'s (the same side information, offsets and
    run-length ``piece``)."""
    dry = cost.shape[0] > 0
    cost[:] = 0.0
    probs = np.full(NUM_PROBS, PROB_ONE // 2, np.int64)
    freq = np.zeros((NUM_CTX, NSYM), np.int64)
    cum = np.zeros((NUM_CTX, NSYM + 1), np.int64)
    counts = np.zeros((NUM_CTX, NSYM), np.int64)
    left = np.full(1, MODEL_PERIOD, np.int64)
    _model_start(freq, cum)
    dec = np.empty(CHUNK, np.int64)
    sym = np.empty(CHUNK, np.int64)
    es1 = np.zeros(3, np.uint64)
    es2 = np.zeros(3, np.uint64)
    es1[1] = _FULL
    es2[1] = _FULL
    cap = out.shape[0]
    # the first stream from out[HEAD], the second in a buffer of its own
    first = out[min(HEAD, cap) :]
    # the second stream's bytes grow as needed: magnitudes are a part of the block's
    second = np.empty(0 if dry else max(cap // 4, 4096), np.uint8)
    c1 = np.zeros(1 if dry else 0)
    c2 = np.zeros(1 if dry else 0)
    t0, t1 = segs[0, 0], segs[segs.shape[0] - 1, 0]
    block_start = starts[t0] + segs[0, 1] * tensors[t0, 1]
    block_end = starts[t1] + segs[segs.shape[0] - 1, 2] * tensors[t1, 1]
    runs = np.empty(3 if piece.shape[0] > 0 else 0, np.int64)
    if runs.shape[0] > 0:
        runs[0], runs[1], runs[2] = -1, 0, block_start - 1
    nd = 0
    ns = 0
    for k in range(segs.shape[0]):
        t, r0, r1 = segs[k, 0], segs[k, 1], segs[k, 2]
        cols = tensors[t, 1]
        side = use_side[t]
        top = NUM_BINS - 1 if side else NUM_BINS
        multi = tensors[t, 0] > 1
        col_last = np.zeros(cols, np.int8)
        parts = col_part[col_off[t] : col_off[t] + cols]
        for i in range(r0, r1):
            row_part = NUM_BINS
            if side:
                ri = row_idx[row_off[t] + i]
                if ri == 0:
                    continue
                row_part = ri - totals[t] - SIDE_OFFSET + BIN_OFFSET
            j, lsign, flip = 0, 0, 0
            while j < cols:
                nd, ns, j, lsign, flip = _encode_row(
                    q, starts[t] + i * cols, cols, j, lsign, flip, row_part, parts, top,
                    multi, col_last, dec, nd, sym, ns, runs,
                )  # fmt: skip
                if j < cols:  # a buffer is full
                    _flush_bits(es1, probs, dec, nd, first, c1)
                    if not dry:
                        second = _room(second, int(np.int64(es2[2])), 2 * CHUNK + 16)
                    _flush_syms(es2, freq, cum, counts, left, sym, ns, second, c2)
                    nd = 0
                    ns = 0
    _flush_bits(es1, probs, dec, nd, first, c1)
    if not dry:
        second = _room(second, int(np.int64(es2[2])), 2 * CHUNK + 16)
    _flush_syms(es2, freq, cum, counts, left, sym, ns, second, c2)
    if runs.shape[0] > 0:
        _runs_piece(runs, block_start, block_end, piece)
    if dry:
        cost[0] = c1[0] + c2[0] + 8.0 * (HEAD + 16)
        return 0
    n1 = _finish(es1, first)
    second = _room(second, int(np.int64(es2[2])), 8)
    n2 = _finish(es2, second)
    total = HEAD + n1 + n2
    if total > cap:
        return ERR_CAPACITY
    out[0], out[1], out[2], out[3] = n1 & 0xFF, (n1 >> 8) & 0xFF, (n1 >> 16) & 0xFF, n1 >> 24
    out[HEAD + n1 : total] = second[:n2]
    return total


# -- decoder ---------------------------------------------------------------------------------
@inline_jit
def _word(data: np.ndarray, n: int, pos: int) -> np.uint64:
    """The big-endian 32-bit word at ``pos`` (bytes at ``n`` and past read as zeros)."""
    if pos + 4 <= n:
        return (
            (_U(data[_at(pos)]) << _U(24))
            | (_U(data[_at(pos + 1)]) << _U(16))
            | (_U(data[_at(pos + 2)]) << _U(8))
            | _U(data[_at(pos + 3)])
        )
    w = _U(0)
    for k in range(4):
        w = (w << _U(8)) | (_U(data[_at(pos + k)]) if pos + k < n else _U(0))
    return w


@jit
def _block_decode(
    data: np.ndarray,
    segs: np.ndarray,
    starts: np.ndarray,
    tensors: np.ndarray,
    use_side: np.ndarray,
    totals: np.ndarray,
    row_idx: np.ndarray,
    col_part: np.ndarray,
    row_off: np.ndarray,
    col_off: np.ndarray,
    max_abs: int,
    origin: int,
    q: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    seed: np.uint64,
    out: np.ndarray,
) -> int:
    """Inverse of :func:`_block_encode`; returns 0, ERR_INVALID (a first stream longer than
    the block, a magnitude symbol past the frequencies' total, a level above ``max_abs``,
    an Exp-Golomb prefix longer than ``MAX_PREFIX``), ERR_EXHAUSTED or ERR_TRAILING (either
    stream read short of or past its end). Arguments, outputs and safety as
    :func:`kernels.ctxb._block_decode`'s: ``data`` may be any bytes, every loop is bounded
    by the block's elements or a constant, writes go to the block's own elements.

    Written out in the element loop, not in helpers: numba kept reference counts of a
    helper's array arguments in the loop, five times slower."""
    values = out.shape[0] > 0
    direct = values and mode == NEAREST
    table = _nearest_table(recon, step)
    n = data.shape[0]
    if n < HEAD:
        return ERR_INVALID
    n1 = int(data[0]) | (int(data[1]) << 8) | (int(data[2]) << 16) | (int(data[3]) << 24)
    if n1 > n - HEAD:
        return ERR_INVALID
    a = data[HEAD : HEAD + n1]
    b = data[HEAD + n1 :]
    na = a.shape[0]
    nb = b.shape[0]
    rng1 = _FULL
    code1 = (_word(a, na, 0) << _U(32)) | _word(a, na, 4)
    pos1 = 8
    rng2 = _FULL
    code2 = (_word(b, nb, 0) << _U(32)) | _word(b, nb, 4)
    pos2 = 8
    probs = np.full(NUM_PROBS, PROB_ONE // 2, np.int64)
    freq = np.zeros((NUM_CTX, NSYM), np.int64)
    cum = np.zeros((NUM_CTX, NSYM + 1), np.int64)
    counts = np.zeros((NUM_CTX, NSYM), np.int64)
    _model_start(freq, cum)
    cumf = cum.ravel().copy()  # each context's cumulative frequencies, flat
    left = MODEL_PERIOD
    for k in range(segs.shape[0]):
        t, r0, r1 = segs[k, 0], segs[k, 1], segs[k, 2]
        cols = tensors[t, 1]
        side = use_side[t]
        top = NUM_BINS - 1 if side else NUM_BINS
        multi = tensors[t, 0] > 1
        col_last = np.zeros(cols, np.int8)
        parts = col_part[col_off[t] : col_off[t] + cols]
        for i in range(r0, r1):
            base = starts[t] + i * cols - origin
            at = base if direct or not values else 0
            row_part = NUM_BINS
            zero_row = False
            if side:
                ri = row_idx[row_off[t] + i]
                zero_row = ri == 0
                row_part = ri - totals[t] - SIDE_OFFSET + BIN_OFFSET
            if direct:
                out[base : base + cols] = 0.0
            else:
                q[at : at + cols] = 0
            if not zero_row:
                lsign = 0
                flip = 0
                for j in range(cols):
                    c = parts[_at(j)]
                    if c < 0:
                        lsign = 0
                        continue
                    ctx = min(max(row_part + c, 0), top)
                    # significance: first stream
                    ii = SIG0 + 2 * ctx + (lsign != 0)
                    p = probs[_at(ii)]
                    bound = (rng1 >> _U(PROB_BITS)) * _U(p)
                    if code1 >= bound:
                        code1 -= bound
                        rng1 -= bound
                        probs[_at(ii)] = p - (p >> MOVE_BITS)
                        bit = 1
                    else:
                        rng1 = bound
                        probs[_at(ii)] = p + ((PROB_ONE - p) >> MOVE_BITS)
                        bit = 0
                    if rng1 < _TOP:
                        rng1 <<= _U(32)
                        code1 = (code1 << _U(32)) | _word(a, na, pos1)
                        pos1 += 4
                    if bit == 0:
                        lsign = 0
                        continue
                    # the magnitude: second stream
                    r = rng2 >> _U(PROB_BITS)
                    cb = ctx * (NSYM + 1)
                    if r * _U(cumf[_at(cb + NSYM)]) <= code2:  # beyond the total
                        return ERR_INVALID
                    s = 8 * int(r * _U(cumf[_at(cb + 8)]) <= code2)
                    s += 4 * int(r * _U(cumf[_at(cb + s + 4)]) <= code2)
                    s += 2 * int(r * _U(cumf[_at(cb + s + 2)]) <= code2)
                    s += int(r * _U(cumf[_at(cb + s + 1)]) <= code2)
                    code2 -= r * _U(cumf[_at(cb + s)])
                    rng2 = r * _U(cumf[_at(cb + s + 1)] - cumf[_at(cb + s)])
                    if rng2 < _TOP:
                        rng2 <<= _U(32)
                        code2 = (code2 << _U(32)) | _word(b, nb, pos2)
                        pos2 += 4
                    counts[ctx, s] += 1
                    left -= 1
                    if left == 0:
                        left = MODEL_PERIOD
                        _adapt(freq, cum, counts)
                        cumf[:] = cum.ravel()
                    m = s
                    if s == ESCAPE:
                        nbits = 0
                        while True:
                            rng2 >>= _U(1)
                            one = code2 >= rng2
                            if one:
                                code2 -= rng2
                            if rng2 < _TOP:
                                rng2 <<= _U(32)
                                code2 = (code2 << _U(32)) | _word(b, nb, pos2)
                                pos2 += 4
                            if not one:
                                break
                            nbits += 1
                            if nbits > MAX_PREFIX:
                                return ERR_INVALID
                        w = 1
                        for _ in range(nbits):
                            rng2 >>= _U(1)
                            one = code2 >= rng2
                            if one:
                                code2 -= rng2
                            if rng2 < _TOP:
                                rng2 <<= _U(32)
                                code2 = (code2 << _U(32)) | _word(b, nb, pos2)
                                pos2 += 4
                            w = (w << 1) | int(one)
                        m = ESCAPE + w - 1
                    if m + 1 > max_abs:
                        return ERR_INVALID
                    # the sign: first stream, without a branch on its bit
                    cl = int(col_last[_at(j)]) if multi else 0
                    ii = SIGN0 + _sign_context(cl, flip, lsign)
                    p = probs[_at(ii)]
                    bound = (rng1 >> _U(PROB_BITS)) * _U(p)
                    bit = 1 if code1 >= bound else 0
                    umask = _U(0) - _U(bit)
                    code1 -= bound & umask
                    rng1 = bound + ((rng1 - bound - bound) & umask)
                    mask = -bit
                    probs[_at(ii)] = (
                        p + (((PROB_ONE - p) >> MOVE_BITS) & ~mask) - ((p >> MOVE_BITS) & mask)
                    )
                    if rng1 < _TOP:
                        rng1 <<= _U(32)
                        code1 = (code1 << _U(32)) | _word(a, na, pos1)
                        pos1 += 4
                    sign = 1 - 2 * bit
                    if cl != 0:
                        flip = sign * cl
                    if multi:
                        col_last[_at(j)] = sign
                    lsign = sign
                    if direct:
                        mag = _nearest_magnitude(m + 1, table, step)
                        out[_at(base + j)] = -mag if bit else mag
                    else:
                        q[_at(at + j)] = sign * (m + 1)
                if pos1 > na or pos2 > nb:
                    return ERR_EXHAUSTED
            if values and not direct:
                _dequantize_run(q, cols, table, mode, step, recon, seed, base, out, base)
    if pos1 > na or pos2 > nb:
        return ERR_EXHAUSTED
    if pos1 != na or pos2 != nb:
        return ERR_TRAILING
    return 0
