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
from numba import njit

from ._config import JIT_OPTIONS

PRECISION = 24
ERR_CAPACITY = -1
ERR_SYMBOL = -2
ERR_NOT_EXHAUSTED = -3

_P = np.uint64(PRECISION)
_MASK = np.uint64((1 << PRECISION) - 1)
_W = np.uint64(32)
_WMASK = np.uint64(0xFFFFFFFF)
_RENORM_SHIFT = np.uint64(64 - PRECISION)
_LOW_STATE = np.uint64(1) << _W


@njit(**JIT_OPTIONS)
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


@njit(**JIT_OPTIONS)
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


@njit(**JIT_OPTIONS)
def _build_lut(cdf: np.ndarray, lut: np.ndarray, lut_shift: int) -> None:
    s = 0
    for slot in range(lut.shape[0]):
        start = slot << lut_shift
        while cdf[s + 1] <= start:
            s += 1
        lut[slot] = s
