"""``threelc``: ternary levels, quartic and zero-run encoding (Lim et al. 2019)."""

from __future__ import annotations

import struct
from typing import ClassVar

import numpy as np

from .codec import FLOAT32_MAX, Codec, register_codec
from .container import Reader
from .errors import DecodeError
from .kernels import threelc as _threelc


class ThreeLC(Codec):
    """3LC: M = max|x| · sparsity; t_i = round(x_i / M) ∈ {−1, 0, 1}; x̂ = t · M.

    Reference: H. Lim, D. G. Andersen, M. Kaminsky, *3LC: Lightweight and Effective Traffic
    Compression for Distributed Machine Learning*, MLSys 2019. A larger sparsity multiplier
    (1 ≤ s < 2) zeroes more values; the paper uses it with error feedback
    (:class:`fedcodec.ErrorFeedback`), which carries the rounding error to the next round.

    Wire format: M as float32; the body is the quartic encoding (five trits per byte,
    0–242, first element least significant) with zero-run encoding (bytes 243–255 stand
    for runs of 2–14 all-zero bytes); see ``fedcodec.kernels.threelc``. No seed.

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.array([1.0, -0.2, 0.6, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
    >>> fedcodec.decode(fedcodec.get_codec({"id": "threelc"}).encode(x)).tolist()[:3]
    [1.0, 0.0, 1.0]
    """

    codec_id: ClassVar[str] = "threelc"
    description: ClassVar[str] = "ternary levels, quartic + zero-run encoding (3LC)"

    def __init__(self, *, sparsity: float = 1.0) -> None:
        if not 1.0 <= float(sparsity) < 2.0:
            raise ValueError(f"sparsity must lie in [1, 2), got {sparsity}")
        self.sparsity = float(sparsity)

    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        # M may pass float32's range for values near it: M = max |x| still ternarizes them
        m = np.float32(min(max_abs * self.sparsity, FLOAT32_MAX))
        inv = 1.0 / float(m) if m > 0 else 0.0
        out = np.empty((x.size + 4) // 5, dtype=np.uint8)
        nbytes = _threelc._threelc_encode(x, inv, out)
        return struct.pack("<f", m), out[:nbytes].tobytes()

    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        r = Reader(params, "threelc parameters")
        (m,) = r.unpack("<f", "M")
        r.finish()
        if not (np.isfinite(m) and m >= 0):
            raise DecodeError("threelc: invalid M")
        status = _threelc._threelc_decode(np.frombuffer(body, dtype=np.uint8), float(m), out)
        if status < 0:
            raise DecodeError("threelc: groups and zero runs do not match the element count")


register_codec(ThreeLC)
