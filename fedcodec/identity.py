"""``identity``: the update's float32 values, uncompressed (32 bits/param): the reference."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .codec import Codec, register_codec
from .errors import DecodeError


class Identity(Codec):
    """Float32 values as little-endian bytes; no seed.

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.arange(4, dtype=np.float32)
    >>> payload = fedcodec.get_codec({"id": "identity"}).encode(x)
    >>> fedcodec.decode(payload).tolist()
    [0.0, 1.0, 2.0, 3.0]
    """

    codec_id: ClassVar[str] = "identity"
    description: ClassVar[str] = "float32 values, uncompressed (32 bits/param)"

    def __init__(self) -> None:
        pass

    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        return b"", x.astype("<f4", copy=False).tobytes()

    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        if params or len(body) != 4 * out.shape[0]:
            raise DecodeError(f"identity: expected {4 * out.shape[0]} body bytes, got {len(body)}")
        out[:] = np.frombuffer(body, dtype="<f4")


register_codec(Identity)
