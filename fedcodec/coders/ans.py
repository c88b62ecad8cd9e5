"""ANS with the message's own categorical model, serialized compactly in the payload.

The model
---------
The alphabet is a contiguous range of levels ``[lo, hi]`` plus one escape symbol (last).
Levels outside the range (rare large ones) are sent as the escape symbol in the ANS stream
and their values in a side section, so the alphabet stays small. A level joins the range
when its count is at least ``n / 2**14`` (or it lies between two that do).

Counts are quantized to 16-bit frequencies (sum ``2**16``, every occurring symbol ≥ 1) and
sent as Elias-gamma codes of ``count + 1``. Both sides then derive the coder's 24-bit
frequencies: ``f = c << 8``, symbols with ``c = 0`` get ``f = 1`` (taken from the most
frequent symbol), so every symbol of the range is codable, as constriction's leaky models
require.

Model section (bits, LSB first, one gamma code each): ``zigzag(lo) + 1``, ``hi - lo + 1``,
then ``c + 1`` for each symbol of the range and the escape symbol, then ``zigzag(v) + 1``
for each escaped level in order; zero-padded to a byte. The ANS words follow as
little-endian uint32, exactly as constriction's ``AnsCoder.get_compressed()`` returns them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..errors import DecodeError
from ..kernels import ans as _ans
from ..kernels import quant as _quantize

COUNT_BITS = 16
MAX_RANGE = 8193  # levels in the range; the escape symbol comes on top
LUT_BITS = 12
BACKENDS = ("numba", "constriction")


def zigzag(v: np.ndarray | int) -> np.ndarray | int:
    return np.where(np.asarray(v) >= 0, 2 * np.asarray(v), -2 * np.asarray(v) - 1)


def gamma_bits(v: np.ndarray) -> np.ndarray:
    """Bit lengths of the Elias-gamma codes of ``v >= 1`` (vectorized)."""
    v = np.asarray(v, dtype=np.int64)
    bitlen = np.zeros(v.shape, dtype=np.int64)
    nz = v > 0
    bitlen[nz] = np.floor(np.log2(v[nz])).astype(np.int64) + 1
    return 2 * bitlen - 1


def quantize_counts(counts: np.ndarray) -> np.ndarray:
    """Counts → 16-bit frequencies summing to ``2**16``; occurring symbols get at least 1."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    target = 1 << COUNT_BITS
    if total == 0:
        c16 = np.zeros(counts.shape, dtype=np.int64)
        c16[-1] = target
        return c16
    c16 = np.where(counts > 0, np.maximum(1, np.rint(counts * (target / total))), 0).astype(
        np.int64
    )
    c16[int(np.argmax(c16))] += target - int(c16.sum())
    return c16


def coder_frequencies(c16: np.ndarray) -> np.ndarray:
    """The 24-bit frequencies both sides derive from the sent 16-bit ones."""
    f = (np.asarray(c16, dtype=np.int64) << (kernels.ANS_PRECISION - COUNT_BITS)).astype(np.int64)
    zero = f == 0
    f[zero] = 1
    f[int(np.argmax(f))] -= int(zero.sum())
    return f.astype(np.uint32)


@dataclass
class AnsPlan:
    """Model chosen for one message and the size it predicts."""

    lo: int
    hi: int
    c16: np.ndarray  # range symbols then escape
    freq: np.ndarray  # uint32, 24-bit
    n_escapes: int
    bits: float  # predicted size of model section + ANS words, in bits


def plan(hist: np.ndarray, n_over: int, over_bits: int, scale: float = 1.0) -> AnsPlan:
    """Choose the model from a histogram of levels ``[-hk, hk]`` and predict its size.

    ``n_over`` levels fell outside the histogram, costing ``over_bits`` as escapes.
    ``scale`` extrapolates a subsample's counts to the whole message.
    """
    hk = (hist.shape[0] - 1) // 2
    total = int(hist.sum()) + n_over
    threshold = max(1, total >> 14)
    frequent = np.flatnonzero(hist >= threshold)
    if frequent.size == 0:
        frequent = np.flatnonzero(hist > 0)
    if frequent.size == 0:
        lo_i = hi_i = hk
    else:
        lo_i, hi_i = int(frequent[0]), int(frequent[-1])
    counts = np.empty(hi_i - lo_i + 2, dtype=np.int64)
    counts[:-1] = hist[lo_i : hi_i + 1]
    outside_idx = np.concatenate([np.arange(0, lo_i), np.arange(hi_i + 1, hist.shape[0])])
    outside_counts = hist[outside_idx]
    n_esc = int(outside_counts.sum()) + n_over
    counts[-1] = n_esc
    esc_bits = float(over_bits) + float(
        (outside_counts * gamma_bits(zigzag(outside_idx - hk) + 1)).sum()
    )
    c16 = quantize_counts(counts)
    freq = coder_frequencies(c16)
    lo, hi = lo_i - hk, hi_i - hk
    model_bits = (
        gamma_bits(np.array([zigzag(lo) + 1, hi - lo + 1])).sum() + gamma_bits(c16 + 1).sum()
    )
    present = counts > 0
    info = -np.log2(freq[present] / float(1 << kernels.ANS_PRECISION))
    symbol_bits = float((counts[present] * info).sum())
    bits = float(model_bits) + scale * (symbol_bits + esc_bits) + 64.0 + 8.0
    return AnsPlan(lo, hi, c16, freq, int(round(n_esc * scale)), bits)


def encode(
    x: np.ndarray,
    inv_step: float,
    mode: int,
    offset: float,
    stream: np.uint64,
    model: AnsPlan,
    backend: str = "numba",
) -> tuple[bytes, int, int]:
    """Quantize ``x`` and ANS-code it with ``model``.

    Returns (body, length of the model section in bytes, escape count).
    """
    n = x.shape[0]
    m = model.hi - model.lo + 1
    symbols = np.empty(n, dtype=np.int32)
    escapes = np.empty(max(16, 2 * model.n_escapes + 16), dtype=np.int64)
    while True:
        n_esc = _quantize._quantize_symbols(
            x, inv_step, mode, offset, stream, model.lo, m, symbols, escapes
        )
        if n_esc >= 0:
            break
        escapes = np.empty(n, dtype=np.int64)
    escapes = escapes[:n_esc]
    head = np.concatenate(
        [
            np.array([zigzag(model.lo) + 1, m], dtype=np.int64),
            model.c16 + 1,
            np.asarray(zigzag(escapes), dtype=np.int64) + 1,
        ]
    )
    section = kernels.gamma_encode(head)
    if backend == "constriction":
        import constriction

        cmodel = constriction.stream.model.Categorical(
            model.freq.astype(np.float64) - 1.0, perfect=False
        )
        coder = constriction.stream.stack.AnsCoder()
        if n:
            coder.encode_reverse(symbols, cmodel)
        words = coder.get_compressed()
    else:
        cdf, _ = kernels.build_ans_tables(model.freq, LUT_BITS)
        cap = int(model.bits / 32 * 1.25) + 64
        while True:
            buf = np.empty(cap, dtype=np.uint32)
            nw = _ans._ans_encode(symbols, cdf, model.freq, buf)
            if nw >= 0:
                break
            cap = n * 3 // 4 + 4
        words = buf[:nw]
    return section + words.astype("<u4").tobytes(), len(section), n_esc


def decode(
    body: memoryview,
    n: int,
    model_len: int,
    n_escapes: int,
    backend: str = "numba",
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Parse the model section and decode ``n`` symbols.

    Returns (symbols, lo, escape symbol ``m = hi - lo + 1``, escaped levels); the caller
    checks that escape symbols and escaped levels agree in number.
    """
    if model_len > len(body) or (len(body) - model_len) % 4:
        raise DecodeError("rdq/ans: model section length does not fit the body")
    section = np.frombuffer(body[:model_len], dtype=np.uint8)
    try:
        head, offset = kernels.gamma_decode(section, 2)
        zz_lo, m = int(head[0]) - 1, int(head[1])
        if not 1 <= m <= MAX_RANGE:
            raise DecodeError(f"rdq/ans: alphabet of {m} levels is out of range")
        lo = (zz_lo // 2) if zz_lo % 2 == 0 else -(zz_lo + 1) // 2
        if abs(lo) > kernels.MAX_ABS_LEVEL or abs(lo + m - 1) > kernels.MAX_ABS_LEVEL:
            raise DecodeError("rdq/ans: alphabet outside the level bound")
        c16, offset = kernels.gamma_decode(section, m + 1, offset)
        c16 = c16 - 1
        if int(c16.sum()) != 1 << COUNT_BITS:
            raise DecodeError("rdq/ans: model frequencies do not sum to 2**16")
        if n_escapes > n or n_escapes > 8 * len(section):
            raise DecodeError("rdq/ans: escape count out of range")
        zz, offset = kernels.gamma_decode(section, n_escapes, offset)
    except ValueError as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"rdq/ans: invalid model section ({exc})") from None
    if (offset + 7) // 8 != model_len:
        raise DecodeError("rdq/ans: model section has trailing bytes")
    zz = zz - 1
    escapes = np.where(zz % 2 == 0, zz // 2, -(zz + 1) // 2)
    if escapes.size and int(np.abs(escapes).max()) > kernels.MAX_ABS_LEVEL:
        raise DecodeError("rdq/ans: escaped level outside the level bound")
    freq = coder_frequencies(c16)
    words = np.frombuffer(body[model_len:], dtype="<u4").astype(np.uint32)
    if backend == "constriction":
        import constriction

        cmodel = constriction.stream.model.Categorical(freq.astype(np.float64) - 1.0, perfect=False)
        coder = constriction.stream.stack.AnsCoder(words)
        symbols = coder.decode(cmodel, n).astype(np.int32) if n else np.empty(0, np.int32)
        if not coder.is_empty():
            raise DecodeError("rdq/ans: stream has data left after the last symbol")
    else:
        cdf, lut = kernels.build_ans_tables(freq, LUT_BITS)
        symbols = np.empty(n, dtype=np.int32)
        status = _ans._ans_decode(words, cdf, freq, lut, kernels.ANS_PRECISION - LUT_BITS, symbols)
        if status < 0:
            raise DecodeError("rdq/ans: stream does not end where a valid message ends")
    return symbols, lo, m, escapes
