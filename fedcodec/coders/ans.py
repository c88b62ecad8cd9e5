"""ANS with the message's own categorical model, serialized compactly in the payload.

The model
---------
The alphabet is a contiguous range of levels ``[lo, lo + m)`` plus one escape symbol
(``m``). Levels outside the range (rare large ones) are sent as the escape symbol in the
ANS stream and their values in the model section, so the alphabet stays small. The range
spans the levels whose count is at least ``total / 2**14`` in a histogram of the message
(or of an evenly spaced subsample of it, for long messages).

Counts are quantized to 16-bit frequencies (sum ``2**16``, every occurring symbol ≥ 1) and
sent as Elias-gamma codes of ``count + 1``. Both sides then derive the coder's 24-bit
frequencies: ``f = c << 8``, symbols with ``c = 0`` get ``f = 1`` (taken from the most
frequent symbol), so every symbol of the range is codable, as constriction's leaky models
require.

Model section (bits, LSB first, one gamma code each): ``zigzag(lo) + 1``, ``m``, then
``c + 1`` for each symbol of the range and the escape symbol, then ``zigzag(v) + 1`` for
each escaped level in element order; zero-padded to a byte.

Streams
-------
Messages of ``SEGMENT_MIN`` elements or more are cut into 4 contiguous segments of
``ceil(n / 4)`` elements, each coded as its own stream (exactly as constriction's
``AnsCoder.get_compressed()`` returns it: little-endian uint32 words), so that the numba
kernels can run the four streams in one loop; shorter messages are one stream. The body is
the model section followed by the segments' words; the codec parameters hold the section
length, the number of escaped levels, the segment count and each segment's word count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..container import Reader, put_varint
from ..errors import DecodeError
from ..kernels import ans as _ans
from ..kernels import quant as _quantize
from ..kernels import rng as _rng
from ..threads import thread_map

COUNT_BITS = _ans.COUNT_BITS
MAX_RANGE = _ans.RANGE_LIMIT  # levels in the range; the escape symbol comes on top
LUT_BITS = 12
SEGMENT_MIN = 1 << 16
BACKENDS = ("numba", "constriction")


def zigzag(v: np.ndarray | int) -> np.ndarray:
    a = np.asarray(v, dtype=np.int64)
    return np.where(a >= 0, 2 * a, -2 * a - 1)


def gamma_bits(v: np.ndarray) -> np.ndarray:
    """Bit lengths of the Elias-gamma codes of ``v >= 1`` (vectorized)."""
    v = np.asarray(v, dtype=np.int64)
    bitlen = np.zeros(v.shape, dtype=np.int64)
    nz = v > 0
    bitlen[nz] = np.floor(np.log2(v[nz])).astype(np.int64) + 1
    return 2 * bitlen - 1


def quantize_counts(counts: np.ndarray) -> np.ndarray:
    """Counts → 16-bit frequencies summing to ``2**16``; occurring symbols get at least 1
    (from the largest count alone when it can, the rule of every stream written before
    that rule was extended; else from the counts in decreasing order, each down to 1)."""
    c16, ok = _ans._quantize_counts(np.asarray(counts, dtype=np.int64))
    if not ok:
        raise AssertionError("too many symbols for the frequency total")  # at most 8,194 < 2**16
    return c16


def coder_frequencies(c16: np.ndarray) -> np.ndarray:
    """The 24-bit frequencies both sides derive from the sent 16-bit ones.

    ``f = c16 << 8``; each symbol with ``c16 = 0`` gets ``f = 1``, paid for by the most
    frequent symbols: the most frequent one alone when it can (every stream written before
    this rule was extended), else the symbols in decreasing order of frequency (stable),
    each down to a frequency of 1, until the deficit is covered (thousands of empty levels
    inside the range).
    """
    f, ok = _ans._coder_frequencies(np.asarray(c16, dtype=np.int64))
    if not ok:
        raise AssertionError("too many symbols for the frequency total")
    return f.astype(np.uint32)


def num_segments(n: int) -> int:
    return _ans.MAX_SEGMENTS if n >= SEGMENT_MIN else 1


@dataclass
class Model:
    """A message's model: level range, sent 16-bit counts, coder frequencies."""

    lo: int
    m: int  # levels in the range; the escape symbol is m
    c16: np.ndarray
    freq: np.ndarray

    @classmethod
    def from_counts(cls, lo: int, counts: np.ndarray) -> Model:
        c16 = quantize_counts(counts)
        return cls(lo, counts.shape[0] - 1, c16, coder_frequencies(c16))

    def section_bits(self, escapes_bits: float) -> float:
        head = gamma_bits(np.array([int(zigzag(self.lo)) + 1, self.m])).sum()
        return float(head + gamma_bits(self.c16 + 1).sum()) + escapes_bits

    def symbol_bits(self, counts: np.ndarray) -> float:
        return symbol_bits(self.freq, counts)


def symbol_bits(freq: np.ndarray, counts: np.ndarray) -> float:
    """The stream's bits for symbols counted ``counts`` at the coder's frequencies."""
    present = counts > 0
    info = -np.log2(freq[present] / float(1 << kernels.ANS_PRECISION))
    return float((counts[present] * info).sum())


def choose_range(hist: np.ndarray) -> tuple[int, int]:
    """Level range ``[lo, hi]`` from a histogram of levels ``[-hk, hk]``: the levels
    counted at least ``total / 2**14`` times and those between (at most ``MAX_RANGE``,
    around zero)."""
    lo, hi = _ans._choose_range(np.asarray(hist, dtype=np.int64))
    return int(lo), int(hi)


def estimate_bits(
    hist: np.ndarray, n_over: int, over_bits: int, scale: float
) -> tuple[float, int, int]:
    """Predicted model-section + stream bits from a (sub)sample histogram.

    Returns (bits, lo, hi); ``scale`` extrapolates the sample's counts to the message. The
    range and the model are :func:`choose_range`'s and :meth:`Model.from_counts`' (one
    kernel call, ``kernels.ans._estimate_model``); the stream's bits are
    :func:`symbol_bits`'."""
    lo, hi, counts, freq, head, esc_bits, ok = _ans._estimate_model(hist, n_over, over_bits)
    if not ok:
        raise AssertionError("too many symbols for the frequency total")
    n = max(int(counts.sum()) * scale, 1)
    bits = float(head) + scale * float(esc_bits) + scale * symbol_bits(freq, counts)
    return bits + 64.0 * num_segments(int(n)) + 8.0, lo, hi


@dataclass
class FullPass:
    """The encoder's pass over the whole message for one (step, offset, range)."""

    symbols: np.ndarray  # uint16
    model: Model
    counts: np.ndarray
    escapes: np.ndarray
    bits: float  # exact model section bits + ANS stream bits (up to state flushes)
    sse: float  # squared error in step units


#: the full pass runs in chunks of this many elements (on threads)
FULL_PASS_CHUNK = 1 << 20


def full_pass(
    x: np.ndarray,
    inv_step: float,
    mode: int,
    offset: float,
    stream: np.uint64,
    recon: np.ndarray,
    lo: int,
    hi: int,
    want_sse: bool = True,
    threads: int | None = 1,
) -> FullPass:
    """Quantize ``x`` and map its levels to the model's symbols in ``[lo, hi]`` (escapes
    beside them), counting them: in chunks of ``FULL_PASS_CHUNK`` elements on ``threads``
    threads, the chunks' counts, escapes and errors put together in order (the same for
    any thread count)."""
    n = x.shape[0]
    m = hi - lo + 1
    symbols = np.empty(n, dtype=np.uint16)

    def part(a: int) -> tuple[np.ndarray, np.ndarray, float, float]:
        b = min(a + FULL_PASS_CHUNK, n)
        counts = np.zeros(m + 1, dtype=np.int64)
        cap = (b - a) // 64 + 1024  # escapes are rare by construction of the range; else retry
        while True:
            escapes = np.empty(cap, dtype=np.int64)
            n_esc, esc_bits, sse = _quantize._quantize_model(
                x[a:b], inv_step, mode, offset, _rng.shifted(stream, a), recon, lo, want_sse,
                symbols[a:b], counts, escapes,
            )  # fmt: skip
            if n_esc >= 0:
                return counts, escapes[:n_esc], float(esc_bits), float(sse)
            counts[:] = 0
            cap = b - a

    parts = thread_map(part, list(range(0, n, FULL_PASS_CHUNK)) or [0], threads)
    counts = np.sum([p[0] for p in parts], axis=0)
    escapes = np.concatenate([p[1] for p in parts])
    esc_bits = sum(p[2] for p in parts)
    sse = sum(p[3] for p in parts)
    model = Model.from_counts(lo, counts)
    bits = model.section_bits(esc_bits) + model.symbol_bits(counts) + 64.0 * num_segments(n) + 8.0
    return FullPass(symbols, model, counts, escapes, bits, sse)


def encode(fp: FullPass, backend: str = "numba") -> tuple[bytes, bytes]:
    """ANS-code a full pass; returns (codec parameter bytes, body)."""
    model = fp.model
    head = np.concatenate(
        [
            np.array([int(zigzag(model.lo)) + 1, model.m], dtype=np.int64),
            model.c16 + 1,
            zigzag(fp.escapes) + 1,
        ]
    )
    section = kernels.gamma_encode(head)
    n = fp.symbols.shape[0]
    k = num_segments(n)
    if backend == "constriction":
        import constriction

        cmodel = constriction.stream.model.Categorical(
            model.freq.astype(np.float64) - 1.0, perfect=False
        )
        seg = -(-n // k) if n else 0
        parts = []
        for j in range(k):
            coder = constriction.stream.stack.AnsCoder()
            piece = fp.symbols[j * seg : (j + 1) * seg].astype(np.int32)
            if piece.size:
                coder.encode_reverse(piece, cmodel)
            parts.append(coder.get_compressed())
        word_counts = np.array([p.size for p in parts], dtype=np.int64)
        words = np.concatenate(parts) if parts else np.empty(0, np.uint32)
    else:
        cdf, _ = kernels.build_ans_tables(model.freq, LUT_BITS)
        # the size is known from the exact counts; the fallback is the worst case (24 bits
        # per symbol) and only guards against a bug
        cap = int(fp.bits / 32 / k * 1.05) + 64
        word_counts = np.zeros(k, dtype=np.int64)
        while True:
            buf = np.empty(cap * k, dtype=np.uint32)
            if k == 1:
                nw = _ans._ans_encode(fp.symbols, cdf, model.freq, buf)
                status = min(nw, 0)
                word_counts[0] = max(nw, 0)
            else:
                status = _ans._ans_encode4(fp.symbols, cdf, model.freq, buf, word_counts)
            if status == 0:
                break
            cap = -(-n // k) * 3 // 4 + 4
        words = np.concatenate([buf[j * cap : j * cap + word_counts[j]] for j in range(k)])
    params = bytearray(put_varint(len(section)) + put_varint(fp.escapes.size) + put_varint(k))
    for j in range(k):
        params += put_varint(int(word_counts[j]))
    return bytes(params), section + words.astype("<u4", copy=False).tobytes()


def _read(
    r: Reader, body: memoryview, n: int, backend: str
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Read the ANS parameters from ``r`` and decode the body's ``n`` symbols; returns
    (symbols, lo, m, escaped levels): level ``lo + s``, symbol ``m`` the next escape."""
    model_len = r.varint("model section length", len(body))
    n_escapes = r.varint("escape count", n)
    k = r.varint("segment count", _ans.MAX_SEGMENTS)
    if k != num_segments(n):
        raise DecodeError(f"rdq/ans: {k} segments for {n} elements")
    word_counts = np.empty(k, dtype=np.int64)
    for j in range(k):
        word_counts[j] = r.varint("segment word count", len(body) // 4)
    r.finish()
    if model_len + 4 * int(word_counts.sum()) != len(body):
        raise DecodeError("rdq/ans: section and stream lengths do not add up to the body")
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
        if n_escapes > 8 * len(section):
            raise DecodeError("rdq/ans: escape count out of range")
        zz, offset = kernels.gamma_decode(section, n_escapes, offset)
    except DecodeError:
        raise
    except ValueError as exc:
        raise DecodeError(f"rdq/ans: invalid model section ({exc})") from None
    if (offset + 7) // 8 != model_len:
        raise DecodeError("rdq/ans: model section has trailing bytes")
    zz = zz - 1
    escapes = np.where(zz % 2 == 0, zz // 2, -(zz + 1) // 2)
    if escapes.size and int(np.abs(escapes).max()) > kernels.MAX_ABS_LEVEL:
        raise DecodeError("rdq/ans: escaped level outside the level bound")
    freq = coder_frequencies(c16)
    words = np.frombuffer(body[model_len:], dtype="<u4").astype(np.uint32)
    symbols = np.empty(n, dtype=np.uint16)
    if backend == "constriction":
        import constriction

        cmodel = constriction.stream.model.Categorical(freq.astype(np.float64) - 1.0, perfect=False)
        seg = -(-n // k) if n else 0
        w = 0
        for j in range(k):
            piece = words[w : w + word_counts[j]]
            w += int(word_counts[j])
            count = max(0, min(n, (j + 1) * seg) - j * seg)
            coder = constriction.stream.stack.AnsCoder(piece)
            if count:
                symbols[j * seg : j * seg + count] = coder.decode(cmodel, count)
            if not coder.is_empty():
                raise DecodeError("rdq/ans: stream has data left after the last symbol")
    else:
        cdf, lut = kernels.build_ans_tables(freq, LUT_BITS)
        shift = kernels.ANS_PRECISION - LUT_BITS
        if k == 1:
            status = _ans._ans_decode(words, cdf, freq, lut, shift, symbols)
        else:
            status = _ans._ans_decode4(words, word_counts, cdf, freq, lut, shift, symbols)
        if status < 0:
            raise DecodeError("rdq/ans: the stream does not end where a valid message ends")
    return symbols, lo, m, escapes


def decode(
    r: Reader,
    body: memoryview,
    out: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    stream: np.uint64,
    backend: str = "numba",
) -> None:
    """Read the ANS parameters from ``r`` and decode the body into ``out``."""
    symbols, lo, m, escapes = _read(r, body, out.shape[0], backend)
    status = _quantize._dequantize_symbols(symbols, lo, m, escapes, mode, step, recon, stream, out)
    if status < 0:
        raise DecodeError("rdq/ans: escape symbols and escaped levels disagree")


def decode_levels(r: Reader, body: memoryview, n: int, backend: str = "numba") -> np.ndarray:
    """The body's ``n`` levels (int32), for analysis: :func:`decode` without the values."""
    symbols, lo, m, escapes = _read(r, body, n, backend)
    q = symbols.astype(np.int32) + np.int32(lo)
    escaped = symbols == m
    if int(escaped.sum()) != escapes.size or int(symbols.max(initial=0)) > m:
        raise DecodeError("rdq/ans: escape symbols and escaped levels disagree")
    q[escaped] = escapes
    return q
