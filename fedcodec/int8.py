"""``int8``: per-tensor affine 8-bit quantization (8 bits/param + 8 bytes)."""

from __future__ import annotations

import math
import struct
from typing import ClassVar

import numpy as np

from .codec import FLOAT32_MAX, Codec, register_codec
from .container import Reader
from .errors import DecodeError

_FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32
_SUBNORMAL_UNIT = 2.0**-149  # smallest positive float32
_CHUNK = 1 << 16


class Int8(Codec):
    """x̂ = lo + q · scale with q ∈ [0, 255], lo = min(x), scale = (max(x) − min(x)) / 255;
    nearest rounding; lo and scale travel as float32. The whole update (a flattened mapping
    too) is one tensor. No seed.

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.linspace(-1, 1, 1000, dtype=np.float32)
    >>> y = fedcodec.decode(fedcodec.get_codec({"id": "int8"}).encode(x))
    >>> float(np.abs(y - x).max()) <= 1 / 255 + 1e-6
    True
    """

    codec_id: ClassVar[str] = "int8"
    description: ClassVar[str] = "per-tensor affine uint8 levels (8 bits/param)"

    def __init__(self) -> None:
        pass

    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        lo = np.float32(x.min()) if x.size else np.float32(0.0)
        hi = np.float32(x.max()) if x.size else np.float32(0.0)
        width = float(hi) - float(lo)
        scale = np.float32(width / 255.0)
        if 0 < width and scale < _FLOAT32_TINY:
            # a subnormal scale loses its precision (or underflows to 0): every float32 is a
            # multiple of 2**-149, so round the scale up to one, which keeps it exact
            scale = np.float32(math.ceil(width / 255.0 / _SUBNORMAL_UNIT) * _SUBNORMAL_UNIT)
        if scale > 0:
            q = np.rint((x.astype(np.float64) - float(lo)) / float(scale))
            q = np.clip(q, 0, 255).astype(np.uint8)
        else:
            q = np.zeros(x.size, dtype=np.uint8)
        return struct.pack("<ff", lo, scale), q.tobytes()

    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        r = Reader(params, "int8 parameters")
        lo, scale = r.unpack("<ff", "offset and scale")
        r.finish()
        if not (np.isfinite(lo) and np.isfinite(scale) and scale >= 0):
            raise DecodeError("int8: invalid offset or scale")
        if len(body) != out.shape[0]:
            raise DecodeError(f"int8: expected {out.shape[0]} body bytes, got {len(body)}")
        q = np.frombuffer(body, dtype=np.uint8)
        if 255.0 * float(scale) <= FLOAT32_MAX:
            np.multiply(q, np.float32(scale), out=out, casting="unsafe")
            out += np.float32(lo)
        else:  # a range wider than float32's (from -3e38 to 3e38): add in float64, in chunks
            for start in range(0, q.size, _CHUNK):
                part = q[start : start + _CHUNK] * float(scale) + float(lo)
                np.copyto(out[start : start + _CHUNK], part, casting="unsafe")


register_codec(Int8)
