"""Range-variant ANS (rANS) kernels, bit-compatible with constriction's ``AnsCoder``.

constriction's default ANS coder keeps a 64-bit state, emits 32-bit words and uses 24-bit
fixed-point probabilities. These kernels reproduce it exactly, so a stream written here
decodes with ``constriction.stream.stack.AnsCoder`` and a ``Categorical`` model built from
the same fixed-point table (see ``fedcodec.coders.ans``), and vice versa; the tests check
both directions. The kernels exist because constriction decodes about 40 M symbols/s from
Python while a table-driven decoder in numba runs several times faster.

Layout of a stream (``uint32`` words, as ``AnsCoder.get_compressed()`` returns them): the
renormalization words in the order they were pushed, then the final state as its low word
(if the state is not zero) and its high word (if that is not zero). The decoder pops from
the end. Symbols are encoded in reverse so that they decode in order.
"""

from __future__ import annotations

import numpy as np

from ._config import jit
from .quant import _gamma_bits

PRECISION = 24
ERR_CAPACITY = -1
ERR_SYMBOL = -2
ERR_NOT_EXHAUSTED = -3
ERR_SEGMENTS = -4

_P = np.uint64(PRECISION)
_MASK = np.uint64((1 << PRECISION) - 1)
_W = np.uint64(32)
_WMASK = np.uint64(0xFFFFFFFF)
_RENORM_SHIFT = np.uint64(64 - PRECISION)
_LOW_STATE = np.uint64(1) << _W


@jit
def _ans_encode(symbols: np.ndarray, cdf: np.ndarray, freq: np.ndarray, words: np.ndarray) -> int:
    """Encode symbol indices (in ``[0, len(freq))``) in reverse; returns the word count.

    ``cdf[s]`` is the left cumulative frequency of symbol ``s`` and ``freq[s] >= 1`` its
    frequency, both out of ``2**24``. Returns ``ERR_CAPACITY`` if ``words`` is too small and
    ``ERR_SYMBOL`` for a symbol outside the alphabet.
    """
    cap = words.shape[0]
    m = freq.shape[0]
    state = np.uint64(0)
    nw = 0
    for i in range(symbols.shape[0] - 1, -1, -1):
        s = int(symbols[i])
        if s < 0 or s >= m:
            return ERR_SYMBOL
        f = np.uint64(freq[s])
        if (state >> _RENORM_SHIFT) >= f:
            if nw >= cap:
                return ERR_CAPACITY
            words[nw] = np.uint32(state & _WMASK)
            nw += 1
            state >>= _W
        state = ((state // f) << _P) | (np.uint64(cdf[s]) + state % f)
    if state != np.uint64(0):
        if nw + 2 > cap:
            return ERR_CAPACITY
        words[nw] = np.uint32(state & _WMASK)
        nw += 1
        high = state >> _W
        if high != np.uint64(0):
            words[nw] = np.uint32(high)
            nw += 1
    return nw


@jit
def _ans_decode(
    words: np.ndarray,
    cdf: np.ndarray,
    freq: np.ndarray,
    lut: np.ndarray,
    lut_shift: int,
    out: np.ndarray,
) -> int:
    """Decode ``len(out)`` symbol indices. ``lut[quantile >> lut_shift]`` is the smallest
    symbol that can hold any quantile in that slot; ``cdf`` has ``len(freq) + 1`` entries
    ending in ``2**24``. Returns 0, or ``ERR_NOT_EXHAUSTED`` if the stream does not end in
    the initial state with every word consumed (a corrupted or foreign stream).

    Safety: ``words`` may be any values (pops stop at the array's start); the tables must
    come from :func:`fedcodec.kernels.build_ans_tables`, which checks that the frequencies
    are positive and sum to ``2**24``, so every quantile maps to a symbol of the alphabet.
    """
    pos = words.shape[0]
    state = np.uint64(0)
    if pos >= 2:
        state = (np.uint64(words[pos - 1]) << _W) | np.uint64(words[pos - 2])
        pos -= 2
    elif pos == 1:
        state = np.uint64(words[0])
        pos = 0
    shift = np.uint64(lut_shift)
    for i in range(out.shape[0]):
        quantile = state & _MASK
        s = int(lut[quantile >> shift])
        while np.uint64(cdf[s + 1]) <= quantile:
            s += 1
        state = (state >> _P) * np.uint64(freq[s]) + (quantile - np.uint64(cdf[s]))
        if state < _LOW_STATE and pos > 0:
            pos -= 1
            state = (state << _W) | np.uint64(words[pos])
        out[i] = s
    if state != np.uint64(0) or pos != 0:
        return ERR_NOT_EXHAUSTED
    return 0


@jit
def _build_lut(cdf: np.ndarray, lut: np.ndarray, lut_shift: int) -> None:
    s = 0
    for slot in range(lut.shape[0]):
        start = slot << lut_shift
        while cdf[s + 1] <= start:
            s += 1
        lut[slot] = s


# -- interleaved segments ----------------------------------------------------------------
# A long message is cut into 4 contiguous segments of ceil(n / 4) elements (the last one may
# be shorter, never empty), each an independent constriction-compatible stream. The kernels
# below run the 4 streams in one loop so that their dependency chains (a division per
# symbol when encoding, a table walk when decoding) overlap. The loop bodies are written
# out by hand: numba's inlined helpers made them several times slower.
MAX_SEGMENTS = 4


@jit
def _ans_encode4(
    symbols: np.ndarray,
    cdf: np.ndarray,
    freq: np.ndarray,
    words: np.ndarray,
    word_counts: np.ndarray,
) -> int:
    """Encode 4 segments of ``symbols``. Segment k's words go to
    ``words[k * cap:(k + 1) * cap]`` (``cap = len(words) // 4``), their count to
    ``word_counts[k]``. Returns 0, ERR_CAPACITY, or ERR_SEGMENTS if the last segment would
    be empty (n = 5, 6, 9, ...: the codec uses 4 segments only from 65,536 elements)."""
    n = symbols.shape[0]
    seg = (n + 3) // 4
    cap = words.shape[0] // 4
    last = n - 3 * seg  # length of the last segment, 1..seg
    if last < 1:
        return ERR_SEGMENTS
    s0 = s1 = s2 = s3 = np.uint64(0)
    n0, n1, n2, n3 = 0, cap, 2 * cap, 3 * cap
    e0, e1, e2, e3 = cap, 2 * cap, 3 * cap, 4 * cap
    for t in range(seg):
        i = seg - 1 - t
        f = np.uint64(freq[symbols[i]])
        if (s0 >> _RENORM_SHIFT) >= f:
            if n0 >= e0:
                return ERR_CAPACITY
            words[n0] = np.uint32(s0 & _WMASK)
            n0 += 1
            s0 >>= _W
        s0 = ((s0 // f) << _P) | (np.uint64(cdf[symbols[i]]) + s0 % f)
        i = 2 * seg - 1 - t
        f = np.uint64(freq[symbols[i]])
        if (s1 >> _RENORM_SHIFT) >= f:
            if n1 >= e1:
                return ERR_CAPACITY
            words[n1] = np.uint32(s1 & _WMASK)
            n1 += 1
            s1 >>= _W
        s1 = ((s1 // f) << _P) | (np.uint64(cdf[symbols[i]]) + s1 % f)
        i = 3 * seg - 1 - t
        f = np.uint64(freq[symbols[i]])
        if (s2 >> _RENORM_SHIFT) >= f:
            if n2 >= e2:
                return ERR_CAPACITY
            words[n2] = np.uint32(s2 & _WMASK)
            n2 += 1
            s2 >>= _W
        s2 = ((s2 // f) << _P) | (np.uint64(cdf[symbols[i]]) + s2 % f)
        if t < last:
            i = n - 1 - t
            f = np.uint64(freq[symbols[i]])
            if (s3 >> _RENORM_SHIFT) >= f:
                if n3 >= e3:
                    return ERR_CAPACITY
                words[n3] = np.uint32(s3 & _WMASK)
                n3 += 1
                s3 >>= _W
            s3 = ((s3 // f) << _P) | (np.uint64(cdf[symbols[i]]) + s3 % f)
    # flush each state: low word if the state is not zero, high word if that is not zero
    states = (s0, s1, s2, s3)
    ends = (n0, n1, n2, n3)
    for k in range(4):
        state = states[k]
        nw = ends[k]
        if state != np.uint64(0):
            if nw + 2 > (k + 1) * cap:
                return ERR_CAPACITY
            words[nw] = np.uint32(state & _WMASK)
            nw += 1
            if (state >> _W) != np.uint64(0):
                words[nw] = np.uint32(state >> _W)
                nw += 1
        word_counts[k] = nw - k * cap
    return 0


@jit
def _ans_decode4(
    words: np.ndarray,
    word_counts: np.ndarray,
    cdf: np.ndarray,
    freq: np.ndarray,
    lut: np.ndarray,
    lut_shift: int,
    out: np.ndarray,
) -> int:
    """Decode 4 consecutive segment streams into symbol indices.

    Returns 0, ERR_SEGMENTS if the last segment would be empty (see _ans_encode4), or
    ERR_NOT_EXHAUSTED unless every stream ends in the initial state with all its words
    used.

    Safety: as :func:`_ans_decode`, and the caller (``fedcodec.coders.ans.decode``) proves
    ``word_counts`` non-negative with ``sum(word_counts) == len(words)`` (the body's
    length is checked against them), so every segment's words lie inside ``words``."""
    n = out.shape[0]
    seg = (n + 3) // 4
    last = n - 3 * seg
    if last < 1:
        return ERR_SEGMENTS
    shift = np.uint64(lut_shift)
    # word ranges [b_k, b_k + c_k); p_k = next word to pop + 1
    b0 = 0
    b1 = b0 + word_counts[0]
    b2 = b1 + word_counts[1]
    b3 = b2 + word_counts[2]
    b4 = b3 + word_counts[3]
    s0 = s1 = s2 = s3 = np.uint64(0)
    p0, p1, p2, p3 = b1, b2, b3, b4
    if p0 - b0 >= 2:
        s0 = (np.uint64(words[p0 - 1]) << _W) | np.uint64(words[p0 - 2])
        p0 -= 2
    elif p0 - b0 == 1:
        s0 = np.uint64(words[b0])
        p0 = b0
    if p1 - b1 >= 2:
        s1 = (np.uint64(words[p1 - 1]) << _W) | np.uint64(words[p1 - 2])
        p1 -= 2
    elif p1 - b1 == 1:
        s1 = np.uint64(words[b1])
        p1 = b1
    if p2 - b2 >= 2:
        s2 = (np.uint64(words[p2 - 1]) << _W) | np.uint64(words[p2 - 2])
        p2 -= 2
    elif p2 - b2 == 1:
        s2 = np.uint64(words[b2])
        p2 = b2
    if p3 - b3 >= 2:
        s3 = (np.uint64(words[p3 - 1]) << _W) | np.uint64(words[p3 - 2])
        p3 -= 2
    elif p3 - b3 == 1:
        s3 = np.uint64(words[b3])
        p3 = b3
    for t in range(seg):
        q = s0 & _MASK
        s = int(lut[q >> shift])
        while np.uint64(cdf[s + 1]) <= q:
            s += 1
        s0 = (s0 >> _P) * np.uint64(freq[s]) + (q - np.uint64(cdf[s]))
        if s0 < _LOW_STATE and p0 > b0:
            p0 -= 1
            s0 = (s0 << _W) | np.uint64(words[p0])
        out[t] = s
        q = s1 & _MASK
        s = int(lut[q >> shift])
        while np.uint64(cdf[s + 1]) <= q:
            s += 1
        s1 = (s1 >> _P) * np.uint64(freq[s]) + (q - np.uint64(cdf[s]))
        if s1 < _LOW_STATE and p1 > b1:
            p1 -= 1
            s1 = (s1 << _W) | np.uint64(words[p1])
        out[seg + t] = s
        q = s2 & _MASK
        s = int(lut[q >> shift])
        while np.uint64(cdf[s + 1]) <= q:
            s += 1
        s2 = (s2 >> _P) * np.uint64(freq[s]) + (q - np.uint64(cdf[s]))
        if s2 < _LOW_STATE and p2 > b2:
            p2 -= 1
            s2 = (s2 << _W) | np.uint64(words[p2])
        out[2 * seg + t] = s
        if t < last:
            q = s3 & _MASK
            s = int(lut[q >> shift])
            while np.uint64(cdf[s + 1]) <= q:
                s += 1
            s3 = (s3 >> _P) * np.uint64(freq[s]) + (q - np.uint64(cdf[s]))
            if s3 < _LOW_STATE and p3 > b3:
                p3 -= 1
                s3 = (s3 << _W) | np.uint64(words[p3])
            out[3 * seg + t] = s
    if (s0 | s1 | s2 | s3) != np.uint64(0) or p0 != b0 or p1 != b1 or p2 != b2 or p3 != b3:
        return ERR_NOT_EXHAUSTED
    return 0


# -- the model's counts (``fedcodec.coders.ans``: its format, these its arithmetic) ---------
COUNT_BITS = 16
COUNT_TOTAL = 1 << COUNT_BITS  # the sent counts' sum
RANGE_LIMIT = 8193  # levels in the model's range at most (``fedcodec.coders.ans.MAX_RANGE``)


@jit
def _take_from_the_largest(values: np.ndarray, amount: int) -> bool:
    """Subtract ``amount`` from int64 ``values`` in place, keeping every value >= 1: from
    the largest value (the first of equals) alone when it can, else from the values in
    decreasing order (stable), each down to 1 (values at 0 stay 0). False if they cannot
    give that much."""
    top = int(np.argmax(values))
    if values[top] - amount >= 1:
        values[top] -= amount
        return True
    for j in np.argsort(-values, kind="mergesort"):
        take = max(0, min(amount, values[j] - 1))
        values[j] -= take
        amount -= take
        if amount == 0:
            return True
    return False


@jit
def _quantize_counts(counts: np.ndarray) -> tuple[np.ndarray, bool]:
    """Counts -> 16-bit counts summing to ``2**16``, every occurring symbol >= 1 (an empty
    histogram: all on the last symbol); and whether that was possible."""
    c16 = np.zeros(counts.shape[0], np.int64)
    total = 0
    for c in counts:
        total += c
    if total == 0:
        c16[-1] = COUNT_TOTAL
        return c16, True
    ratio = COUNT_TOTAL / total
    for s in range(counts.shape[0]):
        if counts[s] > 0:
            c16[s] = int(max(1.0, np.rint(counts[s] * ratio)))
    return c16, _take_from_the_largest(c16, int(c16.sum()) - COUNT_TOTAL)


@jit
def _coder_frequencies(c16: np.ndarray) -> tuple[np.ndarray, bool]:
    """The 24-bit frequencies of sent 16-bit counts: ``c16 << 8``, each 0 raised to 1 and
    paid for by the largest (:func:`_take_from_the_largest`); and whether that was
    possible."""
    f = c16 << (PRECISION - COUNT_BITS)
    deficit = 0
    for s in range(f.shape[0]):
        if f[s] == 0:
            f[s] = 1
            deficit += 1
    return f, _take_from_the_largest(f, deficit)


@jit
def _choose_range(hist: np.ndarray) -> tuple[int, int]:
    """The model's level range ``[lo, hi]`` from a histogram of levels ``[-hk, hk]``: the
    levels counted at least ``total / 2**14`` times and those between (at most
    ``RANGE_LIMIT``, around zero); ``(0, 0)`` for an empty histogram."""
    hk = (hist.shape[0] - 1) // 2
    total = 0
    for c in hist:
        total += c
    threshold = max(1, total >> 14)
    first, last = -1, -1
    for s in range(hist.shape[0]):
        if hist[s] >= threshold:
            if first < 0:
                first = s
            last = s
    if first < 0:
        return 0, 0
    lo, hi = first - hk, last - hk
    if hi - lo + 1 > RANGE_LIMIT:  # keep the most frequent part around zero
        lo, hi = max(lo, -(RANGE_LIMIT // 2)), min(hi, RANGE_LIMIT // 2)
    return lo, hi


@jit
def _estimate_model(
    hist: np.ndarray, n_over: int, over_bits: int
) -> tuple[int, int, np.ndarray, np.ndarray, int, int, bool]:
    """The model a histogram of levels ``[-hk, hk]`` gets (``fedcodec.coders.ans``'s
    ``choose_range`` and ``Model.from_counts``, one call): (lo, hi, counts of the range's
    levels and the escape symbol, the coder's frequencies, the model section's bits
    without the escaped values, the escaped values' bits (``over_bits`` for those beyond
    the histogram, given), whether the counts could be made)."""
    hk = (hist.shape[0] - 1) // 2
    lo, hi = _choose_range(hist)
    m = hi - lo + 1
    counts = np.empty(m + 1, np.int64)
    counts[:m] = hist[lo + hk : hi + hk + 1]
    escaped = n_over
    esc_bits = over_bits
    for s in range(hist.shape[0]):
        level = s - hk
        if (level < lo or level > hi) and hist[s] > 0:
            escaped += hist[s]
            esc_bits += hist[s] * _gamma_bits((2 * level if level >= 0 else -2 * level - 1) + 1)
    counts[m] = escaped
    c16, ok = _quantize_counts(counts)
    freq, ok2 = _coder_frequencies(c16)
    head = _gamma_bits((2 * lo if lo >= 0 else -2 * lo - 1) + 1) + _gamma_bits(m)
    for c in c16:
        head += _gamma_bits(c + 1)
    return lo, hi, counts, freq, head, esc_bits, ok and ok2
