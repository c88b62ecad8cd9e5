"""Context-adaptive binary range coding of quantization levels (RDQ's ``coder="ctx"``).

The range coder is LZMA's with 15-bit adaptive probabilities (shift-5 adaptation, 32-bit range,
byte output with carry propagation through a cached byte). Levels are coded tensor by
tensor, row-major, each tensor a ``rows × cols`` matrix (a vector is one row):

- one direct bit: whether the tensor sends side information;
- with side information: the tensor's level RMS as a 7-bit index (direct bits), then the RMS
  index of each row and of each column (7-bit binary trees of adaptive bits). An index is
  ``round(2·log2(rms)) + SIDE_OFFSET``, 0 for an all-zero row or column, whose elements are
  then not coded at all (they are 0);
- each level: a significance bit in the context (predicted-scale bin, left neighbour
  significant), where the bin is ``2·log2`` of row RMS × column RMS / tensor RMS in half
  octaves (a tensor without side information has one bin of its own); then ``|q| − 1`` in
  truncated unary with adaptive bits per (bin, position), escaping to an order-0
  Exp-Golomb code in direct bits after ``MAG_UNARY`` ones; then the sign as an adaptive
  bit in the context of its rank-1 prediction (the sign of the column's last non-zero
  level times this row's sign relative to the columns, as last seen) and of the left
  neighbour's sign: an update made of a few outer products has predictable signs.

The encoder kernel also runs "dry" (a non-empty ``cost`` array switches it): it then adds up
each bit's ideal cost instead of writing, which the encoder uses to choose, per tensor,
whether side information pays.
"""

from __future__ import annotations

import math

import numpy as np

from ._config import _at, _unlikely, inline_jit, jit
from .quant import NEAREST, _bit_length_flat, _dequantize_run, _nearest_magnitude, _nearest_table

PROB_BITS = 15
PROB_ONE = 1 << PROB_BITS
MOVE_BITS = 5
TOP = 1 << 24
NUM_BINS = 24  # predicted-scale bins; bin NUM_BINS: a tensor without side information
NUM_CTX = NUM_BINS + 1
BIN_OFFSET = 8  # bin = clip(2·log2(predicted |q|) + BIN_OFFSET, 0, NUM_BINS - 1)
MAG_UNARY = 14
SIDE_BITS = 7
SIDE_OFFSET = 40
MAX_PREFIX = 31
SIG0 = 0
MAG0 = SIG0 + 2 * NUM_CTX
SIDE0 = MAG0 + MAG_UNARY * NUM_CTX
SIGN0 = SIDE0 + (1 << SIDE_BITS)
NUM_PROBS = SIGN0 + 9

ERR_CAPACITY = -1
ERR_EXHAUSTED = -2
ERR_TRAILING = -3
ERR_INVALID = -4

#: Cost in bits of a bit whose probability is p / PROB_ONE (p = 0 never occurs).
BIT_COST = np.array([-math.log2(max(p, 1) / PROB_ONE) for p in range(PROB_ONE + 1)])


# -- encoder -----------------------------------------------------------------------------------
# The encoder runs in two stages: the modelling loop turns levels into binary decisions and
# appends each to a buffer as (index of its adaptive probability + 1) * 2 + bit (index 0:
# a direct bit, probability 1/2 without adaptation); every CHUNK decisions, ``_flush`` codes
# them. The contexts depend only on the levels, never on the probabilities, so the split is
# exact; it keeps the range coder's hot loop small and in registers (inlining the coder at
# every call site of the modelling loop ran 3-20x slower).
CHUNK = 1 << 12
#: Most decisions one level (or one row/column index, or a tensor header) adds: 1 + 14 + 31
#: + 30 + 1; the buffer is flushed before the next level when fewer than this are free.
MAX_PER_LEVEL = 96
ZERO_COLUMN = -(1 << 40)


# -- the wide range coder (coder id 5, ``kernels.ctxb`` with ``wide``) --------------------------
# The same decisions on a 64-bit range renormalized 32 bits at a time: ``low`` and the range
# are uint64 (kept in the int64 state array ``es = [low, range, 0, 0, pos, 1]`` as their bit
# patterns), a carry out of ``low`` ripples into the bytes already written, and the stream
# ends with ``low``'s 8 bytes. A renormalization (a branch the predictor misses) then comes
# once per 32 bits of output instead of once per 8.
WIDE_STATE = 6  # the wide coder's state has 6 entries, the narrow one's 5
_U = np.uint64
_U0 = _U(0)
_U1 = _U(1)
_U8 = _U(8)
_U24 = _U(24)
_U32 = _U(32)
_UPROB = _U(PROB_BITS)
_UBYTE = _U(0xFF)
_WIDE_TOP = _U(1 << 32)  # the range's floor after a renormalization


@inline_jit
def _emit(out: np.ndarray, pos: int, low: np.uint64) -> int:
    """Write ``low``'s top 32 bits at ``pos``, big-endian, where there is room; returns the
    next position."""
    if pos + 4 <= out.shape[0]:
        w = low >> _U32
        out[pos] = (w >> _U24) & _UBYTE
        out[pos + 1] = (w >> _U(16)) & _UBYTE
        out[pos + 2] = (w >> _U8) & _UBYTE
        out[pos + 3] = w & _UBYTE
    return pos + 4


@jit
def _code_wide(
    es: np.ndarray, probs: np.ndarray, dec: np.ndarray, nd: int, out: np.ndarray, final: bool
) -> None:
    """:func:`_flush`'s coding for the wide coder: the first ``nd`` decisions of ``dec``,
    the state in ``es``; ``final`` also writes the stream's last 8 bytes. An adaptive bit
    is coded without a branch on its value."""
    low, rng, pos = _U(es[0]), _U(es[1]), es[4]
    cap = out.shape[0]
    for k in range(nd):
        d = dec[k]
        i = (d >> 1) - 1
        old = low
        if _unlikely(i < 0):
            rng >>= _U1
            low += rng & (_U0 - _U(d & 1))
        else:
            p = probs[_at(i)]
            bit = d & 1
            umask = _U0 - _U(bit)  # all ones for a 1
            bound = (rng >> _UPROB) * _U(p)
            low += bound & umask
            rng = bound + ((rng - bound - bound) & umask)  # rng - bound for a 1
            mask = -bit
            probs[_at(i)] = p + (((PROB_ONE - p) >> MOVE_BITS) & ~mask) - ((p >> MOVE_BITS) & mask)
        # the carry and the output written out here: numba kept reference-count calls in
        # the loop for inlined helpers that take ``out`` (lab notes, "Other decoders").
        # A carry adds one to the bytes written; it never passes out[0] (the coded
        # interval stays inside [0, 2**(8 pos))); past ``cap`` the caller codes again.
        if _unlikely(low < old):
            b = min(pos, cap) - 1
            while b >= 0:
                v = int(out[b]) + 1
                if v <= 0xFF:
                    out[b] = v
                    break
                out[b] = 0
                b -= 1
        if _unlikely(rng < _WIDE_TOP):  # once at most: the range is at least 2**21 after a decision
            if pos + 4 <= cap:  # as :func:`_emit`
                w = low >> _U32
                out[pos] = (w >> _U24) & _UBYTE
                out[pos + 1] = (w >> _U(16)) & _UBYTE
                out[pos + 2] = (w >> _U8) & _UBYTE
                out[pos + 3] = w & _UBYTE
            pos += 4
            low <<= _U32
            rng <<= _U32
    if final:
        pos = _emit(out, pos, low)
        pos = _emit(out, pos, low << _U32)
    es[0], es[1], es[4] = np.int64(low), np.int64(rng), pos


@jit
def _flush(
    es: np.ndarray,
    probs: np.ndarray,
    dec: np.ndarray,
    nd: int,
    out: np.ndarray,
    cost: np.ndarray,
    counts: np.ndarray,
    final: bool,
) -> None:
    """Code the first ``nd`` decisions of ``dec``; the coder's state is ``es = [low, range,
    cache, cache size, pos]`` (the wide coder's, ``WIDE_STATE`` entries: :func:`_code_wide`).
    With a non-empty ``cost``, adds their ideal cost in bits to
    ``cost[0]`` instead, and with a non-empty ``counts`` (``2 * NUM_PROBS + 1``) counts
    each decision: ``counts[2 * i + bit]`` for probability i, ``counts[-1]`` direct bits.
    ``final`` also writes the coder's last bytes.

    The adaptive bit is coded without branches on its value (they would be mispredicted at
    the bit's entropy); the output is LZMA's ShiftLow: the cached byte plus carry, then the
    pending 0xFF bytes."""
    if cost.shape[0] > 0:
        c = cost[0]
        counting = counts.shape[0] > 0
        for k in range(nd):
            d = dec[k]
            if counting:
                counts[d - 2 if d >= 2 else counts.shape[0] - 1] += 1
            i = (d >> 1) - 1
            if i < 0:
                c += 1.0
                continue
            p = probs[i]
            mask = -(d & 1)  # all ones for a 1
            c += BIT_COST[p + ((PROB_ONE - 2 * p) & mask)]
            probs[i] = p + (((PROB_ONE - p) >> MOVE_BITS) & ~mask) - ((p >> MOVE_BITS) & mask)
        cost[0] = c
        return
    if es.shape[0] == WIDE_STATE:
        _code_wide(es, probs, dec, nd, out, final)
        return
    low, rng, cache, csize, pos = es[0], es[1], es[2], es[3], es[4]
    cap = out.shape[0]
    for k in range(nd + (5 if final else 0)):
        if k < nd:
            d = dec[k]
            i = (d >> 1) - 1
            if i < 0:
                rng >>= 1
                low += rng & -(d & 1)
            else:
                p = probs[_at(i)]
                mask = -(d & 1)
                bound = (rng >> PROB_BITS) * p
                low += bound & mask
                # rng - bound for a 1, bound for a 0, two steps after the product:
                # (rng & mask) - mask is ready while it is computed
                rng = ((rng & mask) - mask) + (bound ^ mask)
                probs[_at(i)] = (
                    p + (((PROB_ONE - p) >> MOVE_BITS) & ~mask) - ((p >> MOVE_BITS) & mask)
                )
            if rng >= TOP:
                continue
            rng <<= 8
            shifts = 1
            if rng < TOP:  # at most two: the range is at least 2**13 after a bit
                rng <<= 8
                shifts = 2
        else:
            shifts = 1
        for _ in range(shifts):
            if low < 0xFF000000 or low >= 1 << 32:
                carry = low >> 32
                temp = cache
                while True:
                    if pos < cap:
                        out[pos] = (temp + carry) & 0xFF
                    pos += 1
                    temp = 0xFF
                    csize -= 1
                    if csize == 0:
                        break
                cache = (low >> 24) & 0xFF
            csize += 1
            low = (low & 0x00FFFFFF) << 8
    es[0], es[1], es[2], es[3], es[4] = low, rng, cache, csize, pos


@inline_jit
def _side_index(sumsq: float, count: int) -> int:
    """``round(2·log2(rms)) + SIDE_OFFSET`` of levels (1..127), 0 when all are zero."""
    if sumsq <= 0.0:
        return 0
    v = round(math.log2(sumsq / count)) + SIDE_OFFSET  # 2·log2(rms) = log2(mean square)
    return min(max(v, 1), (1 << SIDE_BITS) - 1)


@inline_jit
def _sign_context(col_last: int, flip: int, lsign: int) -> int:
    """Context of a sign: the rank-1 prediction (the column's last sign times this row's
    flip, 0 if either is unknown) and the left neighbour's sign, 3 × 3 states."""
    return (col_last * flip + 1) * 3 + lsign + 1


@inline_jit
def _after_sign(col_last: np.ndarray, j: int, multi: bool, cl: int, sign: int, flip: int) -> int:
    """Update the sign state after a level of sign ``sign`` in column ``j`` (whose last
    sign was ``cl``; ``multi``: the tensor has several rows); returns the row's new flip."""
    if cl != 0:
        flip = sign * cl
    if multi:
        col_last[j] = sign
    return flip


@inline_jit
def _row_part(row: int, total: int) -> int:
    """A row's part of its elements' predicted-scale bin, from its RMS index and the
    tensor's: an element's bin is ``clip(row part + column's index, 0, NUM_BINS - 1)``,
    i.e. ``clip(2·log2(row rms · col rms / tensor rms) + BIN_OFFSET)``."""
    return row - total - SIDE_OFFSET + BIN_OFFSET


@jit
def _encode_rows(
    q: np.ndarray,
    start: int,
    rows: int,
    cols: int,
    row_side: np.ndarray,
    total: int,
    col_part: np.ndarray,
    top: int,
    multi: bool,
    dec: np.ndarray,
    nd: int,
    es: np.ndarray,
    probs: np.ndarray,
    out: np.ndarray,
    cost: np.ndarray,
    counts: np.ndarray,
    runs: np.ndarray,
) -> int:
    """Append ``rows`` rows of a tensor's levels (``cols`` columns, from ``q[start]``) to
    the decisions ``dec`` (``nd`` of them pending; flushed through the coder when the buffer
    fills); returns the count pending. ``row_side`` holds the rows' RMS indices (0: a zero
    row, not coded), empty for a tensor without side information (then ``total`` is not
    used); column j's part of the context is ``col_part[j]`` (negative: the element is not
    coded); ``multi``: the tensor has several rows (then each column's last sign is kept).

    A non-empty ``runs`` (``[first, bits, last]``) also counts the levels' run-length
    Elias-gamma code as the rows go: ``first`` and ``last`` are the positions in ``q`` of
    the first and last non-zero levels so far (``first`` < 0: none yet; ``last`` starts
    one before the piece), and each non-zero level adds its run's, sign's and magnitude's
    bits (``kernels.bits._rleg_runs``, whose piece this makes with
    :func:`_runs_piece`).

    The loop over rows is here, not in the callers, and this is not inlined: numba counts a
    reference to each array an inlined helper takes, at each call (about 20 calls a row;
    a tensor of 2-column rows was coded 3.9x slower). An element is read as ``q[base + j]``:
    a slice of the row costs those counts again."""
    track = runs.shape[0] > 0
    room = CHUNK - MAX_PER_LEVEL
    side = row_side.shape[0] > 0
    col_last = np.zeros(cols if multi else 1, np.int8)  # each column's last sign
    for i in range(rows):
        base = start + i * cols
        row_part = NUM_BINS
        if side:
            ri = int(row_side[i])
            if ri == 0:
                continue
            row_part = _row_part(ri, total)
        lsign = 0  # sign of the left neighbour (0: zero)
        flip = 0  # this row's sign relative to the columns' (rank-1 sign structure)
        for j in range(cols):
            c = col_part[j]
            if c < 0:
                lsign = 0
                continue
            ctx = min(max(row_part + c, 0), top)
            if nd > room:
                _flush(es, probs, dec, nd, out, cost, counts, False)
                nd = 0
            v = int(q[_at(base + j)])
            sig = (SIG0 + 2 * ctx + (lsign != 0) + 1) * 2
            if v == 0:
                dec[nd] = sig
                nd += 1
                lsign = 0
                continue
            dec[nd] = sig + 1
            nd += 1
            m = abs(v) - 1
            mag = MAG0 + ctx * MAG_UNARY + 1
            if m < MAG_UNARY:
                # m ones and a zero, written as MAG_UNARY entries whatever m (those past the
                # zero are overwritten): no loop exit for the predictor to miss once a level
                for k in range(MAG_UNARY):
                    dec[_at(nd + k)] = (mag + k) * 2 + (k < m)
                nd += m + 1
            else:  # MAG_UNARY ones, then the order-0 Exp-Golomb of the rest, in direct bits
                for k in range(MAG_UNARY):
                    dec[nd] = (mag + k) * 2 + 1
                    nd += 1
                w = m - MAG_UNARY + 1
                nb = 0
                while (w >> nb) > 1:
                    nb += 1
                for _ in range(nb):  # prefix: nb ones and a zero
                    dec[nd] = 1
                    nd += 1
                dec[nd] = 0
                nd += 1
                for b in range(nb - 1, -1, -1):
                    dec[nd] = (w >> b) & 1
                    nd += 1
            if track:  # (the same bits as _rleg_runs': run, sign and magnitude)
                at = base + j
                runs[1] += 2 * _bit_length_flat(at - runs[2]) + 2 * _bit_length_flat(m + 1) - 1
                runs[2] = at
                if runs[0] < 0:
                    runs[0] = at
            negative = v < 0
            cl = int(col_last[j]) if multi else 0
            dec[nd] = (SIGN0 + _sign_context(cl, flip, lsign) + 1) * 2 + negative
            nd += 1
            sign = -1 if negative else 1
            if cl != 0:  # _after_sign, written out in the hot loop: 6 % faster
                flip = sign * cl
            if multi:
                col_last[j] = sign
            lsign = sign
    return nd


@inline_jit
def _runs_piece(runs: np.ndarray, start: int, end: int, piece: np.ndarray) -> None:
    """``piece = [leading zeros, bits, trailing zeros, has a non-zero level]`` of the
    levels ``q[start:end]`` (``kernels.bits._rleg_runs``' piece) from :func:`_encode_rows`'
    ``runs`` over them (started as ``[-1, 0, start - 1]``): the first non-zero level's run
    is left out, as it depends on the zeros before the piece."""
    if runs[0] < 0:
        piece[0], piece[1], piece[2], piece[3] = end - start, 0, 0, 0
        return
    lead = runs[0] - start
    piece[0] = lead
    piece[1] = runs[1] - (2 * _bit_length_flat(lead + 1) - 1)
    piece[2] = end - 1 - runs[2]
    piece[3] = 1


@jit
def _ctx_encode(
    q: np.ndarray,
    tensors: np.ndarray,
    use_side: np.ndarray,
    out: np.ndarray,
    cost: np.ndarray,
    counts: np.ndarray,
) -> int:
    """Code int32 levels (``|q| <= 2**30``) of the ``rows × cols`` tensors (``tensors[t] =
    (rows, cols)``, sizes adding up to ``len(q)``) into ``out``; returns the bytes written,
    or ERR_CAPACITY if ``out`` is too small. With a non-empty ``cost``, writes nothing and
    sets ``cost[0]`` to the ideal cost in bits (returns 0); if ``cost`` has ``1 + 2T``
    entries (T tensors), ``cost[1 + 2t]`` to tensor t's part of it and ``cost[2 + 2t]`` to
    the side information's part of that; a non-empty ``counts`` also counts the decisions
    per context (see :func:`_flush`)."""
    dry = cost.shape[0] > 0
    per_tensor = cost.shape[0] >= 1 + 2 * tensors.shape[0]
    cost[:] = 0.0
    side_from = 0.0
    tensor_from = 0.0
    es = np.zeros(5, np.int64)
    es[1] = 0xFFFFFFFF
    es[3] = 1
    probs = np.full(NUM_PROBS, PROB_ONE // 2, np.int64)
    dec = np.empty(CHUNK, np.int64)
    no_runs = np.empty(0, np.int64)
    room = CHUNK - MAX_PER_LEVEL
    nd = 0
    start = 0
    for t in range(tensors.shape[0]):
        rows = tensors[t, 0]
        cols = tensors[t, 1]
        side = use_side[t]
        if nd > room or per_tensor:
            _flush(es, probs, dec, nd, out, cost, counts, False)
            nd = 0
            tensor_from = cost[0] if dry else 0.0
        dec[nd] = side  # a direct bit: (0 + 1 - 1) * 2 + bit
        nd += 1
        row_idx = np.zeros(rows if side else 0, np.uint8)
        col_idx = np.zeros(cols if side else 0, np.uint8)
        total_idx = 0
        if side:
            if per_tensor:  # the cost of the side information, on its own
                _flush(es, probs, dec, nd, out, cost, counts, False)
                nd = 0
                side_from = cost[0]
            rsq = np.zeros(rows)
            csq = np.zeros(cols)
            for i in range(rows):
                row = q[start + i * cols : start + (i + 1) * cols]  # a slice from 0
                acc = 0.0  # the row's sum in order, as rsq[i] += v * v would
                for j in range(cols):
                    v = float(row[j])
                    acc += v * v
                for j in range(cols):  # apart from the ordered sum, this loop vectorizes
                    v = float(row[j])
                    csq[j] += v * v
                rsq[i] = acc
            total_idx = _side_index(rsq.sum(), rows * cols)
            for b in range(SIDE_BITS - 1, -1, -1):
                dec[nd] = (total_idx >> b) & 1
                nd += 1
            for i in range(rows):
                row_idx[i] = _side_index(rsq[i], cols)
            for j in range(cols):
                col_idx[j] = _side_index(csq[j], rows)
            for k in range(rows + cols):
                if nd > room:
                    _flush(es, probs, dec, nd, out, cost, counts, False)
                    nd = 0
                v = int(row_idx[k]) if k < rows else int(col_idx[k - rows])
                node = 1
                for b in range(SIDE_BITS - 1, -1, -1):
                    bit = (v >> b) & 1
                    dec[nd] = (SIDE0 + node + 1) * 2 + bit
                    nd += 1
                    node = 2 * node + bit
            if per_tensor:
                _flush(es, probs, dec, nd, out, cost, counts, False)
                nd = 0
                cost[2 + 2 * t] = cost[0] - side_from
        # sign of each column's last non-zero level (one byte a column; vectors need none)
        # each column's part of the context (see _bin); ZERO_COLUMN: not coded
        col_part = np.zeros(cols, np.int64)
        top = NUM_BINS
        if side:
            top = NUM_BINS - 1
            for j in range(cols):
                c = int(col_idx[j])
                col_part[j] = c if c != 0 else ZERO_COLUMN
        nd = _encode_rows(
            q, start, rows, cols, row_idx, total_idx, col_part, top, rows > 1,
            dec, nd, es, probs, out, cost, counts, no_runs,
        )  # fmt: skip
        start += rows * cols
        if per_tensor:
            _flush(es, probs, dec, nd, out, cost, counts, False)
            nd = 0
            cost[1 + 2 * t] = cost[0] - tensor_from
    _flush(es, probs, dec, nd, out, cost, counts, True)
    if dry:
        return 0
    if es[4] > out.shape[0]:
        return ERR_CAPACITY
    return int(es[4])


# -- rate-distortion optimized levels ---------------------------------------------------------
@inline_jit
def _bit_cost(probs: np.ndarray, i: int, bit: int) -> float:
    p = probs[i]
    return BIT_COST[PROB_ONE - p] if bit else BIT_COST[p]


@inline_jit
def _adapt(probs: np.ndarray, i: int, bit: int) -> None:
    p = probs[i]
    probs[i] = p - (p >> MOVE_BITS) if bit else p + ((PROB_ONE - p) >> MOVE_BITS)


@inline_jit
def _level_bits(probs: np.ndarray, sig: int, mag: int, k: int) -> float:
    """Bits of level magnitude ``k`` under the current probabilities (its sign at 1 bit)."""
    if k == 0:
        return _bit_cost(probs, sig, 0)
    bits = _bit_cost(probs, sig, 1) + 1.0
    m = k - 1
    for j in range(min(m, MAG_UNARY)):
        bits += _bit_cost(probs, mag + j, 1)
    if m < MAG_UNARY:
        return bits + _bit_cost(probs, mag + m, 0)
    w = m - MAG_UNARY + 1
    nb = 0
    while (w >> nb) > 1:
        nb += 1
    return bits + 2 * nb + 1


@jit
def _ctx_rdoq(
    x: np.ndarray,
    inv_step: float,
    lam: float,
    tensors: np.ndarray,
    use_side: np.ndarray,
    q: np.ndarray,
    stats: np.ndarray,
) -> float:
    """Levels of ``x / step`` chosen one by one, in coding order, to minimize squared error
    (step units) + ``lam`` · their bits under the context coder's adaptive model as it
    stands at that element (RDOQ): each element takes 0, floor(|v|) or floor(|v|) + 1.
    The contexts' side information is that of plain rounding (the encoder later sends the
    side information of the chosen levels). Writes int32 ``q``; ``stats[3k + (0, 1, 2)]``
    receive the count, sum |v| and sum v² of the elements at level k (k <= len(stats)/3
    - 1), from which the conditional-mean reconstruction follows. Returns the squared
    error (step units) of reconstructing level k as k.

    The caller proves ``|x| · inv_step + 1 <= 2**30`` and the tensors' sizes (as for
    :func:`_ctx_encode`)."""
    top_k = stats.shape[0] // 3 - 1
    stats[:] = 0.0
    probs = np.full(NUM_PROBS, PROB_ONE // 2, np.int64)
    sse = 0.0
    start = 0
    for t in range(tensors.shape[0]):
        rows = tensors[t, 0]
        cols = tensors[t, 1]
        side = use_side[t]
        row_part = np.full(rows, NUM_BINS, np.int64)
        col_part = np.zeros(cols, np.int64)
        top = NUM_BINS
        if side:
            top = NUM_BINS - 1
            rsq = np.zeros(rows)
            csq = np.zeros(cols)
            for i in range(rows):
                base = start + i * cols
                for j in range(cols):
                    k = float(int(abs(float(x[base + j])) * inv_step + 0.5))
                    rsq[i] += k * k
                    csq[j] += k * k
            total = _side_index(rsq.sum(), rows * cols)
            for i in range(rows):
                r = _side_index(rsq[i], cols)
                row_part[i] = r - total - SIDE_OFFSET + BIN_OFFSET if r else ZERO_COLUMN
            for j in range(cols):
                c = _side_index(csq[j], rows)
                col_part[j] = c if c else ZERO_COLUMN
        col_last = np.zeros(cols if rows > 1 else 1, np.int8)
        for i in range(rows):
            lsign = 0
            flip = 0
            base = start + i * cols
            rp = row_part[i]
            for j in range(cols):
                xv = float(x[base + j]) * inv_step
                v = abs(xv)
                c = col_part[j]
                if rp == ZERO_COLUMN or c < 0:  # not coded: the level is 0
                    q[base + j] = 0
                    sse += v * v
                    lsign = 0
                    continue
                ctx = min(max(rp + c, 0), top)
                sig = SIG0 + 2 * ctx + (lsign != 0)
                mag = MAG0 + ctx * MAG_UNARY
                kf = int(v)
                best = 0
                best_cost = v * v + lam * _level_bits(probs, sig, mag, 0)
                for k in range(max(kf, 1), kf + 2):
                    d = v - k
                    cost = d * d + lam * _level_bits(probs, sig, mag, k)
                    if cost < best_cost:
                        best_cost = cost
                        best = k
                d = v - best
                sse += d * d
                if best <= top_k:
                    stats[3 * best] += 1.0
                    stats[3 * best + 1] += v
                    stats[3 * best + 2] += v * v
                if best == 0:
                    _adapt(probs, sig, 0)
                    q[base + j] = 0
                    lsign = 0
                    continue
                _adapt(probs, sig, 1)
                m = best - 1
                for k in range(min(m, MAG_UNARY)):
                    _adapt(probs, mag + k, 1)
                if m < MAG_UNARY:
                    _adapt(probs, mag + m, 0)
                negative = xv < 0.0
                cl = int(col_last[j]) if rows > 1 else 0
                _adapt(probs, SIGN0 + _sign_context(cl, flip, lsign), 1 if negative else 0)
                sign = -1 if negative else 1
                flip = _after_sign(col_last, j, rows > 1, cl, sign, flip)
                lsign = sign
                q[base + j] = sign * best
        start += rows * cols
    return sse


# -- decoder -----------------------------------------------------------------------------------
# The range decoder's state is (range, code, pos); reading past the end of the data gives
# zero bytes and leaves pos > len(data), which the decoder reports as ERR_EXHAUSTED. The
# levels' loop keeps the state in locals and decodes a level's decisions as they come
# (significance, magnitude, sign; :func:`_decode_rows`); the rare parts (headers, side
# information, escapes) use helpers on an array copy of the state.
@inline_jit
def _next_byte(data: np.ndarray, ds: np.ndarray) -> int:
    """ds = [range, code, pos]."""
    pos = ds[2]
    ds[2] = pos + 1
    return int(data[pos]) if pos < data.shape[0] else 0


@inline_jit
def _renorm(data: np.ndarray, n_data: int, rng: int, code: int, pos: int) -> tuple[int, int, int]:
    """Shift bytes into the decoder's code until its range is at least ``TOP``; returns
    (rng, code, pos). Reads at ``n_data`` (the data's length) and past give zeros."""
    while rng < TOP:
        rng <<= 8
        code = ((code << 8) | (int(data[_at(pos)]) if pos < n_data else 0)) & 0xFFFFFFFF
        pos += 1
    return rng, code, pos


@inline_jit
def _decide(
    data: np.ndarray, n_data: int, probs: np.ndarray, i: int, rng: int, code: int, pos: int
) -> tuple[int, int, int, int]:
    """One decision on probability ``probs[i]``, the coder's state in locals
    (:func:`_dec_bit` keeps it in an array); returns (bit, rng, code, pos). Reads at
    ``n_data`` (the data's length) and past give zeros."""
    p = probs[_at(i)]
    bound = (rng >> PROB_BITS) * p
    if code >= bound:
        code -= bound
        rng -= bound
        probs[_at(i)] = p - (p >> MOVE_BITS)
        bit = 1
    else:
        rng = bound
        probs[_at(i)] = p + ((PROB_ONE - p) >> MOVE_BITS)
        bit = 0
    rng, code, pos = _renorm(data, n_data, rng, code, pos)
    return bit, rng, code, pos


@inline_jit
def _decide_flat(
    data: np.ndarray, n_data: int, probs: np.ndarray, i: int, rng: int, code: int, pos: int
) -> tuple[int, int, int, int]:
    """:func:`_decide` without a branch on the bit, for a decision that steers no branch
    (a sign): a sign is a coin toss to the branch predictor, and each miss costs more
    than the masks."""
    p = probs[_at(i)]
    bound = (rng >> PROB_BITS) * p
    bit = 1 if code >= bound else 0
    mask = -bit  # all ones for a 1
    code -= bound & mask
    rng = bound + ((rng - 2 * bound) & mask)
    probs[_at(i)] = p + (((PROB_ONE - p) >> MOVE_BITS) & ~mask) - ((p >> MOVE_BITS) & mask)
    rng, code, pos = _renorm(data, n_data, rng, code, pos)
    return bit, rng, code, pos


@jit
def _dec_bit(data: np.ndarray, ds: np.ndarray, probs: np.ndarray, i: int) -> int:
    """:func:`_decide` on the state in ``ds``."""
    bit, ds[0], ds[1], ds[2] = _decide(data, data.shape[0], probs, i, ds[0], ds[1], ds[2])
    return bit


@jit
def _dec_direct(data: np.ndarray, ds: np.ndarray, nbits: int) -> int:
    value = 0
    for _ in range(nbits):
        ds[0] >>= 1
        bit = 0
        if ds[1] >= ds[0]:
            ds[1] -= ds[0]
            bit = 1
        value = (value << 1) | bit
        while ds[0] < TOP:
            ds[0] <<= 8
            ds[1] = ((ds[1] << 8) | _next_byte(data, ds)) & 0xFFFFFFFF
    return value


@jit
def _dec_escape(data: np.ndarray, ds: np.ndarray) -> int:
    """The order-0 Exp-Golomb remainder of a magnitude (direct bits): ``w - 1``, or -1 for a
    prefix longer than MAX_PREFIX."""
    nb = 0
    while _dec_direct(data, ds, 1):
        nb += 1
        if nb > MAX_PREFIX:
            return -1
    return ((1 << nb) | _dec_direct(data, ds, nb)) - 1


@jit
def _decode_rows(
    data: np.ndarray,
    ds: np.ndarray,
    rng: int,
    code: int,
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
) -> tuple[int, int, int, int]:
    """Decode ``rows`` rows of a tensor's levels (``cols`` columns; contexts as in
    :func:`_encode_rows`: ``row_side`` the rows' RMS indices, 0 for a zero row, empty
    without side information, ``total`` the tensor's; ``col_part`` the columns' parts, -1
    for a column not coded), the first at element ``first`` of ``q`` (levels: ``values``
    False) or ``out``. The coder's state ``(rng, code, pos)`` in locals, ``ds`` an array for
    the rare helpers. Returns (0, ERR_INVALID or ERR_EXHAUSTED; rng, code, pos).

    ``direct``: write each level's NEAREST reconstruction (``table`` from
    :func:`kernels.quant._nearest_table`, ``step``) into float32 ``out`` instead, as
    :func:`kernels.quant._dequantize_run` would, without a second pass. Each row is zeroed
    first (one vectorized fill; not with ``fill`` False, where the caller proves ``out``
    zero) and only the non-zero levels are written. With ``values`` and not ``direct``,
    ``q`` is a row's scratch and each row is dequantized into ``out`` (``mode``, ``step``,
    ``recon``, ``seed``).

    Written as the decisions come (significance; the unary magnitude, then the Exp-Golomb
    rest past ``MAG_UNARY``; the sign), one branch on each decoded bit, rather than one
    loop over decision stages (bench/results/lab_notes.md, "The decoder straight"). The
    loop over rows is here and this is not inlined, as :func:`_encode_rows`."""
    n_data = data.shape[0]
    side = row_side.shape[0] > 0
    col_last = np.zeros(cols if multi else 1, np.int8)  # each column's last sign
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
            ri = int(row_side[r])
            if ri == 0:  # a zero row
                if values and not direct:
                    _dequantize_run(q, cols, table, mode, step, recon, seed, base, out, base)
                continue
            row_part = _row_part(ri, total)
        lsign = 0
        flip = 0
        for j in range(cols):
            c = col_part[_at(j)]
            if c < 0:
                lsign = 0
                continue
            ctx = min(max(row_part + c, 0), top)
            bit, rng, code, pos = _decide(
                data, n_data, probs, SIG0 + 2 * ctx + (lsign != 0), rng, code, pos
            )
            if bit == 0:
                lsign = 0
                continue
            mag = MAG0 + ctx * MAG_UNARY
            m = 0
            while True:
                bit, rng, code, pos = _decide(data, n_data, probs, mag + m, rng, code, pos)
                if bit == 0:
                    break
                if m + 1 < MAG_UNARY:
                    m += 1
                    continue
                # MAG_UNARY ones: the Exp-Golomb remainder follows
                ds[0], ds[1], ds[2] = rng, code, pos
                rest = _dec_escape(data, ds)
                if rest < 0:
                    return ERR_INVALID, rng, code, pos
                rng, code, pos = ds[0], ds[1], ds[2]
                m = MAG_UNARY + rest
                break
            if m + 1 > max_abs:
                return ERR_INVALID, rng, code, pos
            cl = int(col_last[_at(j)]) if multi else 0
            i_sign = SIGN0 + _sign_context(cl, flip, lsign)
            bit, rng, code, pos = _decide_flat(data, n_data, probs, i_sign, rng, code, pos)
            sign = 1 - 2 * bit
            if cl != 0:  # _after_sign, written out in the hot loop
                flip = sign * cl
            if multi:
                col_last[_at(j)] = sign
            lsign = sign
            if direct:
                mag = _nearest_magnitude(m + 1, table, step)
                out[_at(base + j)] = -mag if bit else mag
            else:
                q[_at(at + j)] = sign * (m + 1)
        if pos > n_data:
            return ERR_EXHAUSTED, rng, code, pos
        if values and not direct:
            _dequantize_run(q, cols, table, mode, step, recon, seed, base, out, base)
    return 0, rng, code, pos


@jit
def _ctx_decode(
    data: np.ndarray,
    tensors: np.ndarray,
    max_abs: int,
    q: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    seed: np.uint64,
    out: np.ndarray,
) -> int:
    """Inverse of :func:`_ctx_encode`; returns 0, ERR_INVALID (a first byte that is not 0,
    an initial code out of range, a level above ``max_abs``, an Exp-Golomb prefix longer
    than ``MAX_PREFIX``), ERR_EXHAUSTED (the data ended early) or ERR_TRAILING (bytes left
    over).

    Levels: with an empty ``out``, into int32 ``q`` (``len(q)`` elements). Values:
    otherwise into float32 ``out`` (``len(out)`` elements) as reconstructions (``mode``,
    ``step``, ``recon``; element ``i`` at index ``i`` of the random stream ``seed``), row
    by row: ``q`` is then a row's scratch (at least the widest tensor's columns), so that
    the levels are never held whole; in NEAREST mode each level's reconstruction goes into
    ``out`` as it is decoded, and ``q`` is not used.

    Safety: ``data`` may be any bytes: reads past its end give zeros and fail at the end,
    every loop is bounded by the element count or a constant, and every write index is
    below ``len(q)`` (levels) or ``len(out)`` and the widest row (values); the caller
    (``fedcodec.coders.ctx``) proves that the tensors' sizes add up to that length and
    that each has ``rows, cols >= 1``.
    """
    values = out.shape[0] > 0
    direct = values and mode == NEAREST  # reconstructions written as decoded
    table = _nearest_table(recon, step)
    n_data = data.shape[0]
    if n_data < 5 or data[0] != 0:
        return ERR_INVALID
    ds = np.zeros(3, np.int64)
    ds[0] = 0xFFFFFFFF
    ds[1] = (int(data[1]) << 24) | (int(data[2]) << 16) | (int(data[3]) << 8) | int(data[4])
    ds[2] = 5
    if ds[1] >= ds[0]:
        return ERR_INVALID
    probs = np.full(NUM_PROBS, PROB_ONE // 2, np.int64)
    start = 0
    for t in range(tensors.shape[0]):
        rows = tensors[t, 0]
        cols = tensors[t, 1]
        side = _dec_direct(data, ds, 1)
        row_idx = np.zeros(rows if side else 0, np.uint8)
        col_part = np.zeros(cols, np.int64)  # as in the encoder
        top = NUM_BINS
        total_idx = 0
        if side:
            top = NUM_BINS - 1
            total_idx = _dec_direct(data, ds, SIDE_BITS)
            for k in range(rows + cols):
                node = 1
                for _ in range(SIDE_BITS):
                    node = 2 * node + _dec_bit(data, ds, probs, SIDE0 + node)
                v = node - (1 << SIDE_BITS)
                if k < rows:
                    row_idx[k] = v
                else:
                    col_part[k - rows] = v if v != 0 else ZERO_COLUMN
            if ds[2] > n_data:
                return ERR_EXHAUSTED
        status, ds[0], ds[1], ds[2] = _decode_rows(
            data, ds, ds[0], ds[1], ds[2], probs, col_part, row_idx, total_idx, top, rows,
            rows > 1, cols, start, max_abs, q, values, direct, True, mode, table,
            step, recon, seed, out,
        )  # fmt: skip
        if status < 0:
            return status
        start += rows * cols
    if ds[2] > n_data:
        return ERR_EXHAUSTED
    if ds[2] != n_data:
        return ERR_TRAILING
    return 0
