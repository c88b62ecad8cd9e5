"""``fp16``: IEEE half precision (16 bits/param)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .codec import Codec, register_codec
from .errors import DecodeError

FP16_MAX = 65504.0


class FP16(Codec):
    """Values rounded to float16 (round to nearest even); no seed.

    Values beyond ±65504 do not fit: encoding them raises ``ValueError`` (use ``bf16``).

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.array([0.1, -2.0, 3e-3], dtype=np.float32)
    >>> payload = fedcodec.get_codec({"id": "fp16"}).encode(x)
    >>> np.allclose(fedcodec.decode(payload), x, rtol=1e-3)
    True
    """

    codec_id: ClassVar[str] = "fp16"
    description: ClassVar[str] = "IEEE float16 values (16 bits/param)"

    def __init__(self) -> None:
        pass

    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        if max_abs > FP16_MAX:
            raise ValueError(
                f"max |x| = {max_abs:g} exceeds float16's range (±65504): use the bf16 codec"
            )
        return b"", x.astype("<f2").tobytes()

    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        if params or len(body) != 2 * out.shape[0]:
            raise DecodeError(f"fp16: expected {2 * out.shape[0]} body bytes, got {len(body)}")
        values = np.frombuffer(body, dtype="<f2")
        if not np.isfinite(values).all():
            raise DecodeError("fp16: payload holds NaN or Inf")
        out[:] = values


register_codec(FP16)
