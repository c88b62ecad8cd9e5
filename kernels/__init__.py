"""numba kernels of fedcodec, installed as ``fedcodec.kernels``.

Private ``@njit`` kernels live in the submodules; the functions here are their public,
validating wrappers: they check dtype, contiguity and sizes and raise ``ValueError`` before
any kernel runs, so no kernel ever sees an array it could index out of bounds.

Examples
--------
>>> import numpy as np
>>> from fedcodec import kernels
>>> q = kernels.quantize(np.array([0.4, -1.6, 2.5], dtype=np.float32), step=1.0)
>>> q.tolist()
[0, -2, 3]
>>> kernels.rleg_decode(kernels.rleg_encode(q), 3).tolist()
[0, -2, 3]
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from . import ans as _ans
from . import bits as _bits
from . import hadamard as _hadamard
from . import quant as _quantize
from . import rng as _rng
from . import sparse as _sparse
from .ans import PRECISION as ANS_PRECISION
from .quant import DITHER, NEAREST, STOCHASTIC

__all__ = [
    "ANS_PRECISION",
    "DITHER",
    "MAX_ABS_LEVEL",
    "NEAREST",
    "STOCHASTIC",
    "all_finite",
    "ans_decode",
    "ans_encode",
    "build_ans_tables",
    "dequantize",
    "dot",
    "fwht",
    "gamma_decode",
    "gamma_encode",
    "histogram",
    "max_abs_and_sumsq",
    "quantize",
    "rleg_decode",
    "rleg_encode",
    "rotate",
    "rounding_mode",
    "segment_max_abs_and_sumsq",
    "topk",
]

Rounding = Literal["nearest", "stochastic", "dither"]
_MODES = {"nearest": NEAREST, "stochastic": STOCHASTIC, "dither": DITHER}

#: Largest |q| the quantizer may produce; keeps levels inside int32 and gamma codes short.
MAX_ABS_LEVEL = 1 << 30


def rounding_mode(rounding: str) -> int:
    """Kernel code of a rounding name; raises ``ValueError`` naming the valid ones."""
    try:
        return _MODES[rounding]
    except KeyError:
        raise ValueError(f"unknown rounding {rounding!r}; use one of {sorted(_MODES)}") from None


def _as_1d(x: np.ndarray, dtypes: tuple[type, ...], name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    if x.dtype.type not in dtypes:
        names = ", ".join(np.dtype(d).name for d in dtypes)
        raise ValueError(f"{name} must have dtype {names}, got {x.dtype}")
    return np.ascontiguousarray(x)


def _as_bytes(data: bytes | np.ndarray) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return _as_1d(data, (np.uint8,), "data")
    return np.frombuffer(bytes(data), dtype=np.uint8)


def _check_step(step: float) -> float:
    step = float(step)
    if not (np.isfinite(step) and step > 0.0):
        raise ValueError(f"step must be a finite positive number, got {step}")
    return step


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum(a * b)`` in float64 on one thread, in an order fixed on every machine (the
    codecs' replacement for ``np.dot``, whose BLAS thread pool stalls on a busy machine).

    Examples
    --------
    >>> import numpy as np
    >>> from fedcodec import kernels
    >>> kernels.dot(np.arange(5.0), np.ones(5))
    10.0
    """
    dtypes = (np.float32, np.float64)
    a, b = _as_1d(a, dtypes, "a"), _as_1d(b, dtypes, "b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must have the same length, got {a.shape[0]} and {b.shape[0]}")
    return float(_quantize._dot(a, b))


def all_finite(x: np.ndarray) -> bool:
    """Whether every value of a float32 vector is finite (no NaN or Inf).

    Examples
    --------
    >>> import numpy as np
    >>> from fedcodec import kernels
    >>> kernels.all_finite(np.array([1.0, -2.5], np.float32))
    True
    >>> kernels.all_finite(np.array([1.0, np.inf], np.float32))
    False
    """
    x = _as_1d(x, (np.float32,), "x")
    return bool(_quantize._all_finite(x.view(np.uint32)))


def max_abs_and_sumsq(x: np.ndarray) -> tuple[float, float, bool]:
    """Max |x|, sum of squares (float64) and whether all values are finite, in one pass."""
    x = _as_1d(x, (np.float16, np.float32, np.float64), "x")
    m, s, finite = _quantize._max_abs_and_sumsq(x)
    return float(m), float(s), bool(finite)


def segment_max_abs_and_sumsq(
    x: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, float, float, bool]:
    """Max |x| of each segment ``x[edges[s]:edges[s + 1]]`` (float64 array), then the
    totals of :func:`max_abs_and_sumsq`, in one pass."""
    x = _as_1d(x, (np.float16, np.float32, np.float64), "x")
    edges = _as_1d(np.asarray(edges, dtype=np.int64), (np.int64,), "edges")
    if edges.shape[0] < 1 or edges[0] != 0 or edges[-1] != x.shape[0]:
        raise ValueError(f"edges must run from 0 to len(x) = {x.shape[0]}")
    if edges.shape[0] > 1 and bool((np.diff(edges) < 0).any()):
        raise ValueError("edges must be non-decreasing")
    seg_max = np.zeros(edges.shape[0] - 1, dtype=np.float64)
    m, s, finite = _quantize._segment_max_abs_and_sumsq(x, edges, seg_max)
    return seg_max, float(m), float(s), bool(finite)


def quantize(
    x: np.ndarray,
    step: float,
    *,
    rounding: Rounding = "nearest",
    offset: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Quantize float32 ``x`` to int32 levels with step ``step``.

    ``offset`` is the rounding offset of ``nearest`` (0.5: plain rounding; smaller values
    widen the dead zone). ``seed`` feeds ``stochastic`` and ``dither`` (stream derived with
    :func:`fedcodec.kernels.rng.stream_seed`).
    """
    x = _as_1d(x, (np.float32,), "x")
    step = _check_step(step)
    mode = rounding_mode(rounding)
    if not 0.0 <= offset <= 0.5:
        raise ValueError(f"offset must lie in [0, 0.5], got {offset}")
    m, _, finite = _quantize._max_abs_and_sumsq(x)
    if not finite:
        raise ValueError("x contains NaN or Inf")
    if m / step + 1.0 > MAX_ABS_LEVEL:
        raise ValueError(f"step {step} is too small for max |x| = {m}: levels exceed 2**30")
    out = np.empty(x.shape[0], dtype=np.int32)
    stream = _rng.stream_seed(seed, _rng.STREAM_DITHER)
    _quantize._quantize(x, 1.0 / step, mode, float(offset), stream, out)
    return out


def dequantize(
    q: np.ndarray,
    step: float,
    *,
    rounding: Rounding = "nearest",
    recon: np.ndarray | None = None,
    seed: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Reconstruct float32 values from int32 levels (inverse of :func:`quantize`).

    ``recon[k]`` (k >= 1), in units of ``step``, replaces level ``k`` for ``nearest``.
    """
    q = _as_1d(q, (np.int32,), "q")
    step = _check_step(step)
    mode = rounding_mode(rounding)
    table = np.zeros(0) if recon is None else _as_1d(recon, (np.float64,), "recon")
    if out is None:
        out = np.empty(q.shape[0], dtype=np.float32)
    elif out.dtype != np.float32 or out.shape != q.shape or not out.flags.c_contiguous:
        raise ValueError("out must be a contiguous float32 array shaped like q")
    stream = _rng.stream_seed(seed, _rng.STREAM_DITHER)
    _quantize._dequantize(q, step, mode, table, stream, out)
    return out


def histogram(q: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, int]:
    """Counts of each level in ``[lo, hi]`` (int64) and the number of levels outside."""
    q = _as_1d(q, (np.int32, np.int64), "q")
    if hi < lo:
        raise ValueError(f"empty range [{lo}, {hi}]")
    counts = np.zeros(hi - lo + 1, dtype=np.int64)
    outside = _quantize._histogram(q, int(lo), counts)
    return counts, int(outside)


def fwht(x: np.ndarray) -> np.ndarray:
    """Orthonormal Walsh–Hadamard transform of a power-of-two-length float32 vector (copy)."""
    x = _as_1d(x, (np.float32,), "x")
    n = x.shape[0]
    if n & (n - 1):
        raise ValueError(f"length must be a power of two, got {n}")
    y = x.copy()
    if n:
        _hadamard._fwht(y, 0, n)
        y *= np.float32(1.0 / np.sqrt(n))
    return y


def rotate(
    x: np.ndarray, seed: int, *, inverse: bool = False, block: int = _hadamard.BLOCK
) -> np.ndarray:
    """Randomized Hadamard rotation of float32 ``x`` of any length, in place; returns ``x``."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 1:
        raise ValueError("x must be a one-dimensional float32 array")
    if not x.flags.c_contiguous or not x.flags.writeable:
        raise ValueError("x must be contiguous and writeable (rotation is in place)")
    if block < 1 or block & (block - 1):
        raise ValueError(f"block must be a power of two, got {block}")
    _hadamard._rotate(x, _rng.stream_seed(seed, _rng.STREAM_ROTATE), int(block), inverse)
    return x


def gamma_encode(values: np.ndarray) -> bytes:
    """Elias-gamma code of integers in ``[1, 2**32)``, zero-padded to a byte."""
    values = _as_1d(np.asarray(values, dtype=np.int64), (np.int64,), "values")
    if values.size and (values.min() < 1 or values.max() >= 1 << 32):
        raise ValueError("Elias-gamma codes integers in [1, 2**32)")
    out = np.empty(values.shape[0] * 8 + 8, dtype=np.uint8)
    nbytes = _bits._gamma_encode(values, out)
    return out[:nbytes].tobytes()


def gamma_decode(
    data: bytes | np.ndarray, count: int, bit_offset: int = 0
) -> tuple[np.ndarray, int]:
    """Decode ``count`` gamma codes from ``bit_offset``; returns (values, end bit offset).

    Raises ``ValueError`` if the data runs out or a code is longer than 63 bits.
    """
    buf = _as_bytes(data)
    if count < 0 or not 0 <= bit_offset <= 8 * buf.shape[0]:
        raise ValueError("count must be non-negative and bit_offset within the data")
    if count > 8 * buf.shape[0]:  # every code takes at least one bit
        raise ValueError(f"{count} gamma codes cannot fit in {buf.shape[0]} bytes")
    out = np.empty(count, dtype=np.int64)
    end = _bits._gamma_decode(buf, int(bit_offset), out)
    if end < 0:
        raise ValueError(f"invalid Elias-gamma data (status {end})")
    return out, int(end)


def rleg_encode(q: np.ndarray) -> bytes:
    """Run-length Elias-gamma code of int32 levels, byte-identical with TFC."""
    q = _as_1d(q, (np.int32,), "q")
    if q.size and int(np.abs(q.astype(np.int64)).max()) > MAX_ABS_LEVEL:
        raise ValueError("levels must satisfy |q| <= 2**30")
    cap = 64
    while True:
        out = np.empty(cap, dtype=np.uint8)
        nbytes = _bits._rleg_encode(q, out)
        if nbytes >= 0:
            return out[:nbytes].tobytes()
        cap = max(cap * 4, q.shape[0] * 17 + 64)


def rleg_decode(data: bytes | np.ndarray, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """Decode ``n`` int32 levels; ``ValueError`` on malformed or trailing data."""
    buf = _as_bytes(data)
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if out is None:
        out = np.empty(n, dtype=np.int32)
    elif out.dtype != np.int32 or out.shape != (n,) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous int32 array of shape ({n},)")
    status = _bits._rleg_decode(buf, out, MAX_ABS_LEVEL)
    if status < 0:
        reasons = {
            _bits.ERR_EXHAUSTED: "data ends before all elements were decoded",
            _bits.ERR_GAMMA_TOO_LONG: "a gamma code is longer than allowed",
            _bits.ERR_RUN_OVERFLOW: "a zero run passes the element count",
            _bits.ERR_TRAILING: "trailing bytes or non-zero padding after the last element",
        }
        raise ValueError(f"invalid run-length gamma data: {reasons.get(status, status)}")
    return out


def build_ans_tables(freq: np.ndarray, lut_bits: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative table (``len(freq) + 1`` entries) and decoder lookup table of a model.

    ``freq`` must be positive uint32 frequencies summing to ``2**24``.
    """
    freq = _as_1d(freq, (np.uint32,), "freq")
    if (
        freq.shape[0] < 1
        or int(freq.min()) < 1
        or int(freq.sum(dtype=np.int64)) != 1 << ANS_PRECISION
    ):
        raise ValueError("freq must be positive and sum to 2**24")
    cdf = np.zeros(freq.shape[0] + 1, dtype=np.uint32)
    np.cumsum(freq, out=cdf[1:])
    lut = np.empty(1 << lut_bits, dtype=np.int32)
    _ans._build_lut(cdf, lut, ANS_PRECISION - lut_bits)
    return cdf, lut


def ans_encode(symbols: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """rANS-encode symbol indices with fixed-point frequencies (constriction-compatible words)."""
    symbols = _as_1d(symbols, (np.int32, np.int64, np.uint8, np.uint16), "symbols")
    cdf, _ = build_ans_tables(freq)
    # each symbol costs at most 24 bits: the word count is bounded by n * 24 / 32 + 2
    words = np.empty(symbols.shape[0] * 3 // 4 + 4, dtype=np.uint32)
    nw = _ans._ans_encode(symbols, cdf, freq, words)
    if nw == _ans.ERR_SYMBOL:
        raise ValueError("a symbol is outside the model's alphabet")
    if nw < 0:
        raise RuntimeError("rANS word buffer too small (bug)")
    return words[:nw].copy()


def ans_decode(words: np.ndarray, n: int, freq: np.ndarray) -> np.ndarray:
    """Decode ``n`` symbol indices; ``ValueError`` if the stream is not a valid message."""
    words = _as_1d(words, (np.uint32,), "words")
    cdf, lut = build_ans_tables(freq)
    out = np.empty(n, dtype=np.int32)
    status = _ans._ans_decode(words, cdf, freq, lut, ANS_PRECISION - 12, out)
    if status < 0:
        raise ValueError("invalid rANS stream: it does not end where a valid message ends")
    return out


def topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ascending, int64) and values of the ``k`` largest magnitudes of float32 ``x``.

    Ties at the threshold go to the lowest indices; memory: one float32 copy of ``x``.
    """
    x = _as_1d(x, (np.float32,), "x")
    n = x.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, {n}], got {k}")
    index = np.empty(k, dtype=np.int64)
    values = np.empty(k, dtype=np.float32)
    if k == 0:
        return index, values
    mags = np.abs(x)
    mags.partition(n - k)
    threshold = float(mags[n - k])
    del mags
    greater = _sparse._count_greater(x, threshold)
    got = _sparse._topk_select(x, threshold, k - greater, index, values)
    if got != k:  # pragma: no cover - guards the kernels' contract
        raise RuntimeError("top-k selection returned the wrong count")
    return index, values
