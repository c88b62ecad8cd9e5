"""``bf16``: bfloat16, the upper half of a float32 (16 bits/param, float32's range)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .codec import Codec, register_codec
from .errors import DecodeError


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (nearest, ties to even); returns uint16 bit patterns."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    bits = rounded.astype(np.uint16)
    # finite values within half a bfloat16 step of float32's max would round to Inf:
    # they saturate to the largest finite bfloat16 (±3.3895e38) instead
    special = (bits & 0x7F80) == 0x7F80
    if special.any():
        overflow = special & ((u & np.uint32(0x7F800000)) != 0x7F800000)
        bits[overflow] = (bits[overflow] & 0x8000) | 0x7F7F
    return bits


def from_bf16_bits(bits: np.ndarray, out: np.ndarray) -> None:
    """Expand uint16 bfloat16 bit patterns into float32 ``out``."""
    out.view(np.uint32)[:] = bits.astype(np.uint32) << np.uint32(16)


class BF16(Codec):
    """Values rounded to bfloat16 (8-bit exponent, 7-bit mantissa); no seed.

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.array([1.0, -3.14159, 1e30], dtype=np.float32)
    >>> y = fedcodec.decode(fedcodec.get_codec({"id": "bf16"}).encode(x))
    >>> np.allclose(y, x, rtol=1 / 128)
    True
    """

    codec_id: ClassVar[str] = "bf16"
    description: ClassVar[str] = "bfloat16 values (16 bits/param, float32's range)"

    def __init__(self) -> None:
        pass

    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        return b"", to_bf16_bits(x).astype("<u2").tobytes()

    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        if params or len(body) != 2 * out.shape[0]:
            raise DecodeError(f"bf16: expected {2 * out.shape[0]} body bytes, got {len(body)}")
        bits = np.frombuffer(body, dtype="<u2")
        if ((bits & 0x7F80) == 0x7F80).any():
            raise DecodeError("bf16: payload holds NaN or Inf")
        from_bf16_bits(bits, out)


register_codec(BF16)
