"""``topk``: keep the k largest magnitudes (Aji & Heafield 2017), indices coded honestly."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from . import kernels
from .codec import Codec, register_codec
from .container import Reader, put_varint
from .errors import DecodeError

_BITMAP = 1
_FP16 = 2
_ANS = 4  # with _BITMAP: the bitmap is ANS-coded
VALUE_DTYPES = ("float32", "float16")


def bitmap_frequencies(k: int, n: int) -> np.ndarray:
    """24-bit frequencies of (0, 1) in a bitmap with k ones out of n; both sides derive them
    from k and n, so the model costs nothing."""
    one = 1 << kernels.ANS_PRECISION
    f1 = min(max(round(k / max(n, 1) * one), 1), one - 1)
    return np.array([one - f1, f1], dtype=np.uint32)


class TopK(Codec):
    """Top-k sparsification: the k = ⌈fraction·n⌉ (or given ``k``) largest magnitudes.

    Reference: A. F. Aji, K. Heafield, *Sparse Communication for Distributed Gradient
    Descent*, EMNLP 2017. Biased: use it with :class:`fedcodec.ErrorFeedback`.

    Wire format: the indices are sent as the cheapest, for this message, of Elias-gamma
    codes of the gaps between sorted indices (first gap = index + 1), a plain bitmap of n
    bits, and that bitmap ANS-coded with the model P(1) = k / n both sides derive (flags in
    the parameters); then the k values as float32 or float16. Every index bit is in the
    payload. No seed.

    Parameters
    ----------
    fraction : float, optional
        Share of elements kept, in (0, 1] (default 0.01 when ``k`` is not given).
    k : int, optional
        Number of elements kept (capped at the update's size).
    value_dtype : {"float32", "float16"}

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.array([0.1, -5.0, 0.2, 3.0, 0.0], dtype=np.float32)
    >>> codec = fedcodec.get_codec({"id": "topk", "k": 2})
    >>> fedcodec.decode(codec.encode(x)).tolist()
    [0.0, -5.0, 0.0, 3.0, 0.0]
    """

    codec_id: ClassVar[str] = "topk"
    description: ClassVar[str] = (
        "top-k magnitudes, gap-gamma or bitmap indices (Aji & Heafield 2017)"
    )

    def __init__(
        self, *, fraction: float | None = None, k: int | None = None, value_dtype: str = "float32"
    ) -> None:
        if fraction is not None and k is not None:
            raise ValueError("set fraction or k, not both")
        if fraction is None and k is None:
            fraction = 0.01
        if fraction is not None and not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
        if k is not None and int(k) < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        if value_dtype not in VALUE_DTYPES:
            raise ValueError(f"value_dtype must be one of {VALUE_DTYPES}, got {value_dtype!r}")
        self.fraction = None if fraction is None else float(fraction)
        self.k = None if k is None else int(k)
        self.value_dtype = value_dtype

    def num_kept(self, n: int) -> int:
        """How many elements an update of ``n`` keeps."""
        if self.k is not None:
            return min(self.k, n)
        assert self.fraction is not None
        return min(n, math.ceil(self.fraction * n))

    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        n = x.size
        k = self.num_kept(n)
        index, values = kernels.topk(x, k)
        flags = 0
        if self.value_dtype == "float16":
            if k and float(np.abs(values).max()) > 65504.0:
                raise ValueError("kept values exceed float16's range: use value_dtype='float32'")
            flags |= _FP16
            value_bytes = values.astype("<f2").tobytes()
        else:
            value_bytes = values.astype("<f4").tobytes()
        gaps = np.diff(index, prepend=-1)
        gamma_bits = int((2 * np.floor(np.log2(np.maximum(gaps, 1))).astype(np.int64) + 1).sum())
        candidates = {0: (gamma_bits + 7) // 8, _BITMAP: (n + 7) // 8}
        # the ANS-coded bitmap costs about n·H(k/n) bits; only build it when it can win
        p = k / max(n, 1)
        entropy = 0.0 if p in (0.0, 1.0) else -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
        words = None
        if 0 < k < n and n * entropy / 8 + 8 < min(candidates.values()):
            mask = np.zeros(n, dtype=np.uint16)
            mask[index] = 1
            words = kernels.ans_encode(mask, bitmap_frequencies(k, n))
            candidates[_BITMAP | _ANS] = 4 * words.size
        choice = min(candidates, key=lambda c: candidates[c])
        flags |= choice
        if choice == 0:
            index_bytes = kernels.gamma_encode(gaps)
        elif choice == _BITMAP:
            mask8 = np.zeros(n, dtype=bool)
            mask8[index] = True
            index_bytes = np.packbits(mask8, bitorder="little").tobytes()
        else:
            assert words is not None
            index_bytes = words.astype("<u4").tobytes()
        return bytes([flags]) + put_varint(k), index_bytes + value_bytes

    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        n = out.shape[0]
        r = Reader(params, "topk parameters")
        flags = r.u8("flags")
        if flags & ~(_BITMAP | _FP16 | _ANS) or (flags & _ANS and not flags & _BITMAP):
            raise DecodeError(f"topk: invalid flags {flags:#04x}")
        k = r.varint("kept count", n)
        r.finish()
        width = 2 if flags & _FP16 else 4
        index_len = len(body) - width * k
        if index_len < 0:
            raise DecodeError("topk: body shorter than its values")
        section = np.frombuffer(body[:index_len], dtype=np.uint8)
        if flags & _ANS:
            if index_len % 4:
                raise DecodeError("topk: ANS-coded bitmap is not whole 32-bit words")
            words = np.frombuffer(body[:index_len], dtype="<u4").astype(np.uint32)
            try:
                mask16 = kernels.ans_decode(words, n, bitmap_frequencies(k, n))
            except ValueError:
                raise DecodeError("topk: invalid ANS-coded bitmap") from None
            index = np.flatnonzero(mask16)
            if index.size != k:
                raise DecodeError("topk: bitmap holds another count than k")
        elif flags & _BITMAP:
            if index_len != (n + 7) // 8:
                raise DecodeError("topk: bitmap length does not match the element count")
            mask = np.unpackbits(section, bitorder="little")
            if mask[n:].any():
                raise DecodeError("topk: bitmap padding is not zero")
            index = np.flatnonzero(mask[:n])
            if index.size != k:
                raise DecodeError("topk: bitmap holds another count than k")
        else:
            try:
                gaps, end = kernels.gamma_decode(section, k)
            except ValueError as exc:
                raise DecodeError(f"topk: invalid index codes ({exc})") from None
            if (end + 7) // 8 != index_len:
                raise DecodeError("topk: index section has trailing bytes")
            index = np.cumsum(gaps) - 1
            if k and index[-1] >= n:
                raise DecodeError("topk: an index lies beyond the element count")
        dtype = "<f2" if flags & _FP16 else "<f4"
        values = np.frombuffer(body[index_len:], dtype=dtype)
        if not np.isfinite(values).all():
            raise DecodeError("topk: payload holds NaN or Inf")
        out[:] = 0.0
        out[index] = values


register_codec(TopK)
