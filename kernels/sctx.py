"""Static-context rANS coding of quantization levels (RDQ's coder id 3, ``coder="ctx"``).

The contexts are those of the adaptive binary coder (``kernels.ctx``): a level's
predicted-scale bin from its row's and column's RMS indices (side information), whether its
left neighbour is non-zero, and for a sign the rank-1 sign prediction and the left
neighbour's sign. What changes is the coding: each context has a static model, counted by
the encoder and sent, and a level is one multi-symbol step of a range-variant ANS coder
(its magnitude, 0-14 or an escape) plus one binary step for its sign, instead of a
significance bit, a unary magnitude and a sign bit through an adaptive binary range coder.
A static model makes the size of a block a sum over its counts, and the blocks (whole rows,
about ``BLOCK_ELEMENTS`` elements each, fixed by the shapes alone) are coded and decoded
independently: on several threads, with bytes that do not depend on the thread count.

Streams: 31-bit state in ``[2**15, 2**31)``, 16-bit words, ``PREC``-bit frequencies. The
encoder pushes symbols in reverse and writes words from the end of its buffer; the stream
is the final state (high word, low word) followed by the words in the order the decoder
reads them. A stream decodes back to state ``2**15`` with every word read, or it is
invalid.

Models (bits packed and Elias-gamma codes as ``kernels.bits`` writes them, least
significant first, ``docs/format.md``): per context a used bit;
a used context sends its precision ``p`` (4 bits), ``a`` = one more than its largest symbol
(Elias-gamma), then the frequencies of symbols ``0 .. a - 2`` at precision ``p``
(Elias-gamma of ``f + 1``); symbol ``a - 1`` gets the rest of ``2**p`` (at least 1). The
coder's frequencies are ``f << (PREC - p)``. The encoder picks ``p`` per context to
minimize the model's bits plus the data's.
"""

from __future__ import annotations

import math

import numpy as np

from ._config import inline_jit, jit
from .bits import _flush_bytes, _get_bits, _get_gamma, _put_bits, _put_gamma
from .ctx import BIN_OFFSET, NUM_BINS, SIDE_BITS, SIDE_OFFSET, _side_index
from .prefetch import AHEAD, _prefetch_span
from .quant import _bit_length, _dequantize_run, _nearest_table

PREC = 15
PROB_SCALE = 1 << PREC
RANS_L = 1 << 15
NSYM = 16  # magnitude symbols: 0-14, and 15 = escape (an Exp-Golomb remainder follows)
ESC = NSYM - 1
NUM_LEVEL_CTX = 2 * (NUM_BINS + 1)
NUM_SIGN_CTX = 9
NUM_CTX = NUM_LEVEL_CTX + NUM_SIGN_CTX
SIDE_SYMS = 1 << SIDE_BITS
#: a block holds whole rows: at least this many elements (or a tensor's rest, or one row)
BLOCK_ELEMENTS = 1 << 20
NB_BITS = 5  # the escape's Exp-Golomb prefix length, sent in 5 bits
MAX_NB = 30
CHUNK_BITS = 15  # raw bits go through the coder at most this many at a time

ERR_CAPACITY = -1
ERR_INVALID = -2
ERR_EXHAUSTED = -3
ERR_TRAILING = -4

#: ideal bits of a frequency f / 2**PREC
_LOG2 = np.array([0.0] + [math.log2(f) for f in range(1, PROB_SCALE + 1)])


# -- models -----------------------------------------------------------------------------------
@jit
def _quantize_freqs(counts: np.ndarray, a: int, p: int, f: np.ndarray) -> bool:
    """Frequencies at precision ``p`` (summing to ``2**p``, at least 1 for every counted
    symbol, 0 for the others) into ``f[:a]``; False if ``2**p`` is too small."""
    total = 0
    used = 0
    for s in range(a):
        total += counts[s]
        used += counts[s] > 0
    scale = 1 << p
    if used > scale:
        return False
    acc = 0
    for s in range(a):
        if counts[s] > 0:
            f[s] = max(1, (counts[s] * scale + total // 2) // total)
        else:
            f[s] = 0
        acc += f[s]
    while acc != scale:  # pay the difference from (or to) the largest frequencies
        big = 0
        for s in range(a):
            if f[s] > f[big]:
                big = s
        if acc < scale:
            f[big] += scale - acc
            acc = scale
        else:
            take = min(acc - scale, f[big] - 1)
            if take <= 0:
                return False
            f[big] -= take
            acc -= take
    return True


@jit
def _model_cost(counts: np.ndarray, a: int, p: int, f: np.ndarray) -> float:
    """Model bits of one used context at precision ``p`` plus its data's ideal bits
    (``f`` holds the frequencies); inf if ``p`` cannot hold the symbols."""
    if not _quantize_freqs(counts, a, p, f):
        return np.inf
    top = 0
    for s in range(a):
        if f[s] > 0:
            top = s
    bits = 1.0 + 4.0 + 2 * _bit_length(top + 1) - 1  # Elias-gamma: 2n - 1 bits
    for s in range(top):
        bits += 2 * _bit_length(f[s] + 1) - 1
    for s in range(a):
        if counts[s] > 0:
            bits += counts[s] * (p - _LOG2[f[s]])
    return bits


@jit
def _build_model(
    counts: np.ndarray, alpha: np.ndarray, freq_p: np.ndarray, prec: np.ndarray
) -> float:
    """Per context (row of ``counts``), the precision (``prec``, -1: unused) and the
    frequencies at it (``freq_p``) of least model plus data bits; returns those bits (one
    bit per unused context included)."""
    width = counts.shape[1]
    tmp = np.zeros(width, np.int64)
    total = 0.0
    for c in range(counts.shape[0]):
        a = alpha[c]
        n = 0
        for s in range(a):
            n += counts[c, s]
        prec[c] = -1
        freq_p[c, :] = 0
        if n == 0:
            total += 1.0
            continue
        best = np.inf
        for p in range(0, PREC + 1):
            cost = _model_cost(counts[c], a, p, tmp)
            if cost < best:
                best = cost
                prec[c] = p
                freq_p[c, :a] = tmp[:a]
        total += best
    return total


@jit
def _write_model(
    freq_p: np.ndarray, prec: np.ndarray, out: np.ndarray, pos: int, buf: np.uint64, nbits: int
) -> tuple[int, np.uint64, int]:
    """Append a model (``kernels.bits``' packing; the caller sized ``out``)."""
    for c in range(prec.shape[0]):
        p = prec[c]
        if p < 0:
            pos, buf, nbits = _put_bits(out, pos, buf, nbits, np.uint64(0), 1)
            continue
        pos, buf, nbits = _put_bits(out, pos, buf, nbits, np.uint64(1 | (p << 1)), 5)
        top = 0
        for s in range(freq_p.shape[1]):
            if freq_p[c, s] > 0:
                top = s
        pos, buf, nbits = _put_gamma(out, pos, buf, nbits, top + 1)
        for s in range(top):
            pos, buf, nbits = _put_gamma(out, pos, buf, nbits, freq_p[c, s] + 1)
    return pos, buf, nbits


@jit
def _model_section(freq_p: np.ndarray, prec: np.ndarray, out: np.ndarray) -> int:
    """A block's model from byte 0 of zeroed ``out``; its bytes, padded to 16 bits."""
    pos, buf, nbits = _write_model(freq_p, prec, out, 0, np.uint64(0), 0)
    bits = 8 * pos + nbits
    _flush_bytes(out, pos, buf, nbits)
    return ((bits + 15) >> 4) << 1


@jit
def _read_model(
    data: np.ndarray,
    pos: int,
    buf: np.uint64,
    nbits: int,
    alpha: np.ndarray,
    freq: np.ndarray,
    cum: np.ndarray,
) -> tuple[int, int, np.uint64, int]:
    """Read a model into the coder's frequencies (``freq[c, s]`` out of ``2**PREC``) and
    cumulative frequencies (``cum[c, s]``, ``cum[c, a] = 2**PREC``); returns (0 or an
    error, and the reader's state)."""
    freq[:, :] = 0
    cum[:, :] = 0
    for c in range(alpha.shape[0]):
        used, pos, buf, nbits = _get_bits(data, pos, buf, nbits, 1)
        if used < 0:
            return ERR_EXHAUSTED, pos, buf, nbits
        if used == 0:
            continue
        p, pos, buf, nbits = _get_bits(data, pos, buf, nbits, 4)
        g, pos, buf, nbits = _get_gamma(data, pos, buf, nbits)
        if p < 0 or g < 0:
            return ERR_EXHAUSTED, pos, buf, nbits
        top = int(g) - 1
        if top >= alpha[c]:
            return ERR_INVALID, pos, buf, nbits
        rest = 1 << p
        for s in range(top):
            g, pos, buf, nbits = _get_gamma(data, pos, buf, nbits)
            if g < 0:
                return ERR_EXHAUSTED, pos, buf, nbits
            f = int(g) - 1
            if f > rest:
                return ERR_INVALID, pos, buf, nbits
            freq[c, s] = f << (PREC - p)
            rest -= f
        if rest < 1:
            return ERR_INVALID, pos, buf, nbits
        freq[c, top] = rest << (PREC - p)
        acc = 0
        for s in range(alpha[c]):
            cum[c, s] = acc
            acc += freq[c, s]
        for s in range(alpha[c], cum.shape[1]):
            cum[c, s] = acc
    return 0, pos, buf, nbits


# -- rANS -------------------------------------------------------------------------------------
@inline_jit
def _push(x: int, f: int, c: int, words: np.ndarray, pos: int) -> tuple[int, int]:
    """Encode a symbol of frequency ``f`` and cumulative frequency ``c`` (``f >= 1``);
    words are written downwards from ``pos`` (the caller leaves room for one)."""
    if x >= (f << (31 - PREC)):
        pos -= 1
        words[pos] = x & 0xFFFF
        x >>= 16
    return ((x // f) << PREC) + x % f + c, pos


def reciprocals(freq: np.ndarray, cum: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rcp, rsh, bias) of each frequency (Alverson's integer
    division by multiplication: ``rcp = ceil(2**(31 + s) / f)``, ``s = ceil(log2 f)``; for
    ``f = 1`` the quotient comes out one short and the bias adds it back). The push is
    then ``x + bias + ((x * rcp) >> rsh) * (2**PREC - f)``: ``x // f == (x * rcp) >> rsh``
    for every state the encoder holds (``x < 2**31``)."""
    f = np.maximum(freq, 1).astype(np.int64)
    shift = np.zeros_like(f)
    for b in range(1, PREC + 1):  # ceil(log2 f)
        shift += f > (1 << (b - 1))
    rcp = np.where(f == 1, (1 << 32) - 1, ((np.int64(1) << (shift + 31)) + f - 1) // f)
    rsh = np.where(f == 1, 32, 31 + shift)
    bias = cum + np.where(f == 1, PROB_SCALE - 1, 0)
    return rcp, rsh, bias


@inline_jit
def _push_raw(x: int, value: int, nbits: int, words: np.ndarray, pos: int) -> tuple[int, int]:
    """``nbits`` raw bits (at most ``CHUNK_BITS``), as a uniform symbol."""
    f = 1 << (PREC - nbits)
    return _push(x, f, value * f, words, pos)


@inline_jit
def _pop_raw(x: int, nbits: int) -> tuple[int, int]:
    """(value, state before renormalization) of ``nbits`` raw bits."""
    slot = x & (PROB_SCALE - 1)
    shift = PREC - nbits
    value = slot >> shift
    f = 1 << shift
    return value, f * (x >> PREC) + slot - value * f


# -- the side information ---------------------------------------------------------------------
@jit
def _side_encode(
    use_side: np.ndarray,
    totals: np.ndarray,
    indices: np.ndarray,
    out: np.ndarray,
) -> int:
    """The side section: per tensor its side bit (and with it the tensor's 7-bit RMS
    index), then, if any tensor sends side information, the indices' model and their
    stream (``indices``: every side tensor's rows' then columns' indices, in tensor order).
    Returns the section's bytes, or ERR_CAPACITY."""
    out[:] = 0
    pos, buf, nbits = 0, np.uint64(0), 0
    for t in range(use_side.shape[0]):
        field = use_side[t] | (totals[t] << 1) if use_side[t] else 0
        pos, buf, nbits = _put_bits(
            out, pos, buf, nbits, np.uint64(field), 1 + SIDE_BITS * use_side[t]
        )
    if indices.shape[0] == 0:
        return _flush_bytes(out, pos, buf, nbits)
    counts = np.zeros((1, SIDE_SYMS), np.int64)
    for k in range(indices.shape[0]):
        counts[0, indices[k]] += 1
    alpha = np.full(1, SIDE_SYMS, np.int64)
    freq_p = np.zeros((1, SIDE_SYMS), np.int64)
    prec = np.zeros(1, np.int64)
    _build_model(counts, alpha, freq_p, prec)
    pos, buf, nbits = _write_model(freq_p, prec, out, pos, buf, nbits)
    head = ((8 * pos + nbits + 15) >> 4) << 1  # whole 16-bit words
    _flush_bytes(out, pos, buf, nbits)
    shift = PREC - prec[0]
    cum = np.zeros(SIDE_SYMS, np.int64)
    acc = 0
    for s in range(SIDE_SYMS):
        cum[s] = acc
        acc += freq_p[0, s] << shift
    nwords = (out.shape[0] - head) // 2
    words = np.empty(nwords, np.int64)
    pos = nwords
    x = RANS_L
    for k in range(indices.shape[0] - 1, -1, -1):
        if pos < 3:
            return ERR_CAPACITY
        s = indices[k]
        x, pos = _push(x, freq_p[0, s] << shift, cum[s], words, pos)
    return _finish(x, words, pos, out, head)


@jit
def _finish(x: int, words: np.ndarray, pos: int, out: np.ndarray, head: int) -> int:
    """Write the final state and the words from ``pos`` on after ``head`` bytes of
    ``out``; returns the bytes used."""
    n = words.shape[0] - pos
    end = head + 4 + 2 * n
    if end > out.shape[0]:
        return ERR_CAPACITY
    out[head] = (x >> 16) & 0xFF
    out[head + 1] = (x >> 24) & 0xFF
    out[head + 2] = x & 0xFF
    out[head + 3] = (x >> 8) & 0xFF
    o = head + 4
    for k in range(pos, words.shape[0]):
        w = words[k]
        out[o] = w & 0xFF
        out[o + 1] = w >> 8
        o += 2
    return end


@inline_jit
def _word(data: np.ndarray, pos: int) -> int:
    if pos + 1 < data.shape[0]:
        return int(np.int64(data[pos]) | (np.int64(data[pos + 1]) << 8))
    return 0


@jit
def _side_decode(
    data: np.ndarray,
    tensors: np.ndarray,
    use_side: np.ndarray,
    totals: np.ndarray,
    indices: np.ndarray,
) -> int:
    """Inverse of :func:`_side_encode`: fills ``use_side``, ``totals`` and the indices
    (``indices`` holds room for every tensor's rows and columns); returns the number of
    indices, or an error."""
    pos, buf, nbits = 0, np.uint64(0), 0
    count = 0
    for t in range(tensors.shape[0]):
        used, pos, buf, nbits = _get_bits(data, pos, buf, nbits, 1)
        if used < 0:
            return ERR_EXHAUSTED
        use_side[t] = used
        totals[t] = 0
        if used:
            rows, cols = tensors[t, 0], tensors[t, 1]
            if rows < 2 or cols < 2 or rows * cols < 64:
                return ERR_INVALID
            total, pos, buf, nbits = _get_bits(data, pos, buf, nbits, SIDE_BITS)
            if total < 0:
                return ERR_EXHAUSTED
            totals[t] = total
            count += rows + cols
    if count == 0:
        if ((8 * pos - nbits + 7) >> 3) != data.shape[0]:
            return ERR_TRAILING
        return 0
    alpha = np.full(1, SIDE_SYMS, np.int64)
    freq = np.zeros((1, SIDE_SYMS), np.int64)
    cum = np.zeros((1, SIDE_SYMS + 1), np.int64)
    status, pos, buf, nbits = _read_model(data, pos, buf, nbits, alpha, freq, cum)
    if status < 0:
        return status
    pos = ((8 * pos - nbits + 15) >> 4) << 1  # the bits read, in whole 16-bit words
    n_data = data.shape[0]
    if pos + 4 > n_data:
        return ERR_EXHAUSTED
    x = (_word(data, pos) << 16) | _word(data, pos + 2)
    pos += 4
    if x < RANS_L:
        return ERR_INVALID
    for k in range(count):
        slot = x & (PROB_SCALE - 1)
        s = 0
        while s < SIDE_SYMS - 1 and cum[0, s + 1] <= slot:
            s += 1
        f = freq[0, s]
        if f == 0:
            return ERR_INVALID
        x = f * (x >> PREC) + slot - cum[0, s]
        if x < RANS_L:
            x = (x << 16) | _word(data, pos)
            pos += 2
        indices[k] = s
    if pos > n_data:
        return ERR_EXHAUSTED
    if pos != n_data or x != RANS_L:
        return ERR_TRAILING if x == RANS_L else ERR_INVALID
    return count


# -- blocks of levels -------------------------------------------------------------------------
@inline_jit
def _escape_bits(m: int) -> tuple[int, int]:
    """(prefix length nb, value w) of the Exp-Golomb remainder of magnitude ``m >= ESC``."""
    w = m - ESC + 1
    nb = 0
    while (w >> nb) > 1:
        nb += 1
    return nb, w


@jit
def _block_contexts(
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
    lctx: np.ndarray,
    sctx: np.ndarray,
    counts: np.ndarray,
) -> int:
    """The forward pass over a block (``segs[k] = (tensor, first row, end row)``): each
    coded level's context into ``lctx`` and, if it is not zero, its sign's into ``sctx``;
    counts per context (level contexts first, then the sign contexts). Returns the
    escapes' raw pushes (the block's symbols: coded levels + signs + these)."""
    counts[:, :] = 0
    e = 0
    raw = 0
    for k in range(segs.shape[0]):
        t, r0, r1 = segs[k, 0], segs[k, 1], segs[k, 2]
        cols = tensors[t, 1]
        side = use_side[t]
        ro, co = row_off[t], col_off[t]
        top = NUM_BINS - 1 if side else NUM_BINS
        col_last = np.zeros(cols, np.int8)
        multi = tensors[t, 0] > 1
        for i in range(r0, r1):
            base = starts[t] + i * cols
            row_part = NUM_BINS
            if side:
                ri = row_idx[ro + i]
                if ri == 0:
                    continue
                row_part = ri - totals[t] - SIDE_OFFSET + BIN_OFFSET
            lsign = 0
            flip = 0
            for j in range(cols):
                c = col_part[co + j] if side else 0
                if c < 0:
                    lsign = 0
                    continue
                ctx = min(max(row_part + c, 0), top)
                lc = 2 * ctx + (lsign != 0)
                lctx[e] = lc
                v = int(q[base + j])
                if v == 0:
                    counts[lc, 0] += 1
                    lsign = 0
                    e += 1
                    continue
                m = abs(v)
                if m >= ESC:
                    counts[lc, ESC] += 1
                    nb = _escape_bits(m)[0]
                    raw += 1 + (nb > 0) + (nb > CHUNK_BITS)
                else:
                    counts[lc, m] += 1
                cl = int(col_last[j]) if multi else 0
                sc = (cl * flip + 1) * 3 + lsign + 1  # _sign_context, written out
                sctx[e] = sc
                neg = v < 0
                counts[NUM_LEVEL_CTX + sc, 1 if neg else 0] += 1
                sign = -1 if neg else 1
                if cl != 0:
                    flip = sign * cl
                if multi:
                    col_last[j] = sign
                lsign = sign
                e += 1
    return raw


@jit
def _block_encode(
    q: np.ndarray,
    segs: np.ndarray,
    starts: np.ndarray,
    tensors: np.ndarray,
    use_side: np.ndarray,
    row_idx: np.ndarray,
    col_part: np.ndarray,
    row_off: np.ndarray,
    col_off: np.ndarray,
    lctx: np.ndarray,
    sctx: np.ndarray,
    freq: np.ndarray,
    rcp: np.ndarray,
    rsh: np.ndarray,
    bias: np.ndarray,
    n_coded: int,
    words: np.ndarray,
) -> tuple[int, int, int]:
    """Push the block's symbols in reverse (the contexts from :func:`_block_contexts`) on
    two interleaved states: symbol i (in decoding order) on state ``i % 2``. ``x`` is the
    state of the next push, ``y`` the other; they swap after every push, so after the last
    push (symbol 0) ``y`` is state 0 and ``x`` state 1 (both start at ``RANS_L``, so which
    one takes the first push does not matter). Returns (final state 0, final state 1,
    first word used), or (ERR_CAPACITY, 0, 0)."""
    x: int = np.int64(RANS_L)  # type: ignore[assignment]  # int64 for numba
    y: int = np.int64(RANS_L)  # type: ignore[assignment]
    pos = words.shape[0]
    e = n_coded
    for k in range(segs.shape[0] - 1, -1, -1):
        t, r0, r1 = segs[k, 0], segs[k, 1], segs[k, 2]
        cols = tensors[t, 1]
        side = use_side[t]
        ro, co = row_off[t], col_off[t]
        for i in range(r1 - 1, r0 - 1, -1):
            if side and row_idx[ro + i] == 0:
                continue
            base = starts[t] + i * cols
            for j in range(cols - 1, -1, -1):
                if side and col_part[co + j] < 0:
                    continue
                e -= 1
                v = int(q[base + j])
                if pos < 8:  # a level pushes at most 5 words
                    return ERR_CAPACITY, 0, 0
                lc = np.int64(lctx[e])
                if v == 0:  # the pushes are written out: as calls they ran 5-10x slower
                    f = freq[lc, 0]
                    if x >= (f << (31 - PREC)):
                        pos -= 1
                        words[pos] = x & 0xFFFF
                        x >>= 16
                    x += bias[lc, 0] + ((x * rcp[lc, 0]) >> rsh[lc, 0]) * (PROB_SCALE - f)
                    x, y = y, x
                    continue
                sc = NUM_LEVEL_CTX + np.int64(sctx[e])
                b = 1 if v < 0 else 0
                f = freq[sc, b]
                if x >= (f << (31 - PREC)):
                    pos -= 1
                    words[pos] = x & 0xFFFF
                    x >>= 16
                x += bias[sc, b] + ((x * rcp[sc, b]) >> rsh[sc, b]) * (PROB_SCALE - f)
                x, y = y, x
                m = abs(v)
                if m >= ESC:
                    nb, w = _escape_bits(m)
                    low = w - (1 << nb)
                    if nb > CHUNK_BITS:
                        x, pos = _push_raw(x, low >> CHUNK_BITS, nb - CHUNK_BITS, words, pos)
                        x, y = y, x
                        x, pos = _push_raw(x, low & ((1 << CHUNK_BITS) - 1), CHUNK_BITS, words, pos)
                        x, y = y, x
                    elif nb > 0:
                        x, pos = _push_raw(x, low, nb, words, pos)
                        x, y = y, x
                    x, pos = _push_raw(x, nb, NB_BITS, words, pos)
                    x, y = y, x
                    m = ESC
                f = freq[lc, m]
                if x >= (f << (31 - PREC)):
                    pos -= 1
                    words[pos] = x & 0xFFFF
                    x >>= 16
                x += bias[lc, m] + ((x * rcp[lc, m]) >> rsh[lc, m]) * (PROB_SCALE - f)
                x, y = y, x
    return y, x, pos


@jit
def _dec_escape(data: np.ndarray, ds: np.ndarray) -> int:
    """The magnitude of an escaped level (``ds = [state, other state, pos]``, swapped after
    each symbol as in the levels' loop): its Exp-Golomb prefix length (5 raw bits) and
    remainder; -1 for a prefix over ``MAX_NB``."""
    x, y, pos = ds[0], ds[1], ds[2]
    nb, x = _pop_raw(x, NB_BITS)
    if x < RANS_L:
        x = (x << 16) | _word(data, pos)
        pos += 2
    x, y = y, x
    if nb > MAX_NB:
        return -1
    low = 0
    if nb > CHUNK_BITS:
        lo, x = _pop_raw(x, CHUNK_BITS)
        if x < RANS_L:
            x = (x << 16) | _word(data, pos)
            pos += 2
        x, y = y, x
        hi, x = _pop_raw(x, nb - CHUNK_BITS)
        if x < RANS_L:
            x = (x << 16) | _word(data, pos)
            pos += 2
        x, y = y, x
        low = (hi << CHUNK_BITS) | lo
    elif nb > 0:
        low, x = _pop_raw(x, nb)
        if x < RANS_L:
            x = (x << 16) | _word(data, pos)
            pos += 2
        x, y = y, x
    ds[0], ds[1], ds[2] = x, y, min(pos, data.shape[0] + 2)
    return ESC - 1 + (1 << nb) + low


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
    q: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    seed: np.uint64,
    out: np.ndarray,
    origin: int,
) -> int:
    """Decode one block's section (model, then stream); 0 or an error.

    Levels: with an empty ``out``, into int32 ``q`` (the whole update's). Values:
    otherwise ``q`` is a row's scratch (at least the block's widest row) and each decoded
    row goes into float32 ``out`` (the block's elements, from element ``origin`` on) as
    reconstructions (``mode``, ``step``, ``recon``; element ``i`` of the block at index
    ``i`` of the random stream ``seed``).

    Safety: ``data`` may be any bytes (reads past its end give zeros and fail at the end);
    every loop is bounded by the block's elements or a constant; writes go to the block's
    own elements of ``q`` or ``out``, or to a row of ``q`` (the caller proves the segments
    and tensors, and the sizes of ``q`` and ``out``)."""
    values = out.shape[0] > 0
    table = _nearest_table(recon, step)
    alpha = np.empty(NUM_CTX, np.int64)
    alpha[:NUM_LEVEL_CTX] = NSYM
    alpha[NUM_LEVEL_CTX:] = 2
    freq = np.zeros((NUM_CTX, NSYM), np.int64)
    cum = np.zeros((NUM_CTX, NSYM + 1), np.int64)
    status, pos, _, nbits = _read_model(data, 0, np.uint64(0), 0, alpha, freq, cum)
    if status < 0:
        return status
    pos = ((8 * pos - nbits + 15) >> 4) << 1  # the bits read, in whole 16-bit words
    n_data = data.shape[0]
    if pos + 8 > n_data:
        return ERR_EXHAUSTED
    x = np.int64((_word(data, pos) << 16) | _word(data, pos + 2))  # state 0: symbol 0's
    y = np.int64((_word(data, pos + 4) << 16) | _word(data, pos + 6))
    pos += 8
    if x < RANS_L or y < RANS_L or x >= 1 << 31 or y >= 1 << 31:
        return ERR_INVALID
    mask = PROB_SCALE - 1
    ds = np.zeros(3, np.int64)
    for k in range(segs.shape[0]):
        t, r0, r1 = segs[k, 0], segs[k, 1], segs[k, 2]
        cols = tensors[t, 1]
        side = use_side[t]
        ro, co = row_off[t], col_off[t]
        top = NUM_BINS - 1 if side else NUM_BINS
        col_last = np.zeros(cols, np.int8)
        multi = tensors[t, 0] > 1
        for i in range(r0, r1):
            rel = starts[t] + i * cols - origin  # the row's place in the block
            at = 0 if values else starts[t] + i * cols  # where its levels go in q
            row_part = NUM_BINS
            if side:
                ri = row_idx[ro + i]
                if ri == 0:
                    for j in range(cols):
                        q[at + j] = 0
                    if values:
                        _dequantize_run(q, cols, table, mode, step, recon, seed, rel, out, rel)
                    continue
                row_part = ri - totals[t] - SIDE_OFFSET + BIN_OFFSET
            lsign = 0
            flip = 0
            for j in range(cols):
                c = col_part[co + j] if side else 0
                if c < 0:
                    q[at + j] = 0
                    lsign = 0
                    continue
                ctx = min(max(row_part + c, 0), top)
                lc = 2 * ctx + (lsign != 0)
                slot = x & mask
                s = 0
                while s < ESC and cum[lc, s + 1] <= slot:
                    s += 1
                f = freq[lc, s]
                if f == 0:
                    return ERR_INVALID
                x = f * (x >> PREC) + slot - cum[lc, s]
                if x < RANS_L:  # written out: a call to _word ran several times slower
                    if pos + 1 < n_data:
                        x = (x << 16) | np.int64(data[pos]) | (np.int64(data[pos + 1]) << 8)
                    else:
                        x <<= 16
                    pos += 2
                x, y = y, x
                if s == 0:
                    q[at + j] = 0
                    lsign = 0
                    continue
                m = s
                if s == ESC:  # rare: the remainder in a helper, on an array copy of the state
                    ds[0], ds[1], ds[2] = x, y, pos
                    m = _dec_escape(data, ds)
                    x, y, pos = ds[0], ds[1], ds[2]
                    if m < 0 or m > max_abs:
                        return ERR_INVALID
                cl = int(col_last[j]) if multi else 0
                sc = NUM_LEVEL_CTX + (cl * flip + 1) * 3 + lsign + 1  # _sign_context
                slot = x & mask
                b = 1 if cum[sc, 1] <= slot else 0
                f = freq[sc, b]
                if f == 0:
                    return ERR_INVALID
                x = f * (x >> PREC) + slot - cum[sc, b]
                if x < RANS_L:
                    if pos + 1 < n_data:
                        x = (x << 16) | np.int64(data[pos]) | (np.int64(data[pos + 1]) << 8)
                    else:
                        x <<= 16
                    pos += 2
                x, y = y, x
                sign = -1 if b else 1
                if cl != 0:
                    flip = sign * cl
                if multi:
                    col_last[j] = sign
                lsign = sign
                q[at + j] = sign * m
            if values:
                _dequantize_run(q, cols, table, mode, step, recon, seed, rel, out, rel)
            if pos > n_data:
                return ERR_EXHAUSTED
    if pos > n_data:
        return ERR_EXHAUSTED
    if x != RANS_L or y != RANS_L:
        return ERR_INVALID
    if pos != n_data:
        return ERR_TRAILING
    return 0


_EXACT_LEVEL = 1 << 20
_EXACT_COLS = 1 << 22
_EXACT_SUM = 1 << 53


@jit
def _side_sums(
    q: np.ndarray,
    segs: np.ndarray,
    starts: np.ndarray,
    tensors: np.ndarray,
    use_side: np.ndarray,
    row_off: np.ndarray,
    part_off: np.ndarray,
    rsq: np.ndarray,
    csq: np.ndarray,
) -> None:
    """One block's part of the side tensors' sums of squared levels: each of its rows'
    sum into ``rsq[row_off[t] + i]`` (a row lies in one block), its columns' partial sums
    into ``csq[part_off[t] + j]`` (added up over the blocks by the caller).

    A row's sum is taken in integers, without a branch on each level, and is the float
    sum of its squares in order whenever every partial sum is an integer below 2**53 (so
    that each float addition is exact): levels up to 2**20 in rows of up to 2**22
    columns; other rows are summed again in floats."""
    for k in range(segs.shape[0]):
        t, r0, r1 = segs[k, 0], segs[k, 1], segs[k, 2]
        if not use_side[t]:
            continue
        cols = tensors[t, 1]
        # the tensor's columns and each row as slices from 0: with the offsets in the
        # indices, the loop did not vectorize (14 -> 3.3 ms on the 10M matrix)
        part = csq[part_off[t] : part_off[t] + cols]
        for i in range(r0, r1):
            base = starts[t] + i * cols
            _prefetch_span(q, base + AHEAD, base + cols + AHEAD)
            row = q[base : base + cols]
            exact = 0
            top = 0
            for j in range(cols):
                v = int(row[j])
                exact += v * v
                top = max(top, abs(v))
                part[j] += float(v) * float(v)  # (+0.0 for a zero: the same sum)
            if top <= _EXACT_LEVEL and cols <= _EXACT_COLS and exact < _EXACT_SUM:
                rsq[row_off[t] + i] = float(exact)
            else:
                acc = 0.0
                for j in range(cols):
                    v = row[j]
                    if v != 0:
                        acc += float(v) * float(v)
                rsq[row_off[t] + i] = acc


@jit
def _side_from_sums(
    tensors: np.ndarray,
    use_side: np.ndarray,
    rsq: np.ndarray,
    csq: np.ndarray,
    row_off: np.ndarray,
    col_off: np.ndarray,
    totals: np.ndarray,
    row_idx: np.ndarray,
    col_idx: np.ndarray,
) -> None:
    """Each side tensor's RMS index (``totals``) and its rows' and columns' (the
    adaptive coder's ``_side_index``) from their sums of squared levels."""
    for t in range(tensors.shape[0]):
        totals[t] = 0
        if not use_side[t]:
            continue
        rows, cols = tensors[t, 0], tensors[t, 1]
        r, c = row_off[t], col_off[t]
        totals[t] = _side_index(rsq[r : r + rows].sum(), rows * cols)
        for i in range(rows):
            row_idx[r + i] = _side_index(rsq[r + i], cols)
        for j in range(cols):
            col_idx[c + j] = _side_index(csq[c + j], rows)
