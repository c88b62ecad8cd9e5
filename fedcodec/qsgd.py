"""``qsgd``: stochastic quantization to s levels with Elias coding (Alistarh et al. 2017)."""

from __future__ import annotations

import secrets
from typing import ClassVar

import numpy as np

from .codec import Codec, register_codec
from .container import Reader, put_varint
from .errors import DecodeError
from .kernels import qsgd as _qsgd
from .kernels import rng as _rng

NORMS = ("l2", "max")
MAX_LEVELS = 1 << 24


class QSGD(Codec):
    """QSGD: per bucket, x̂_i = ‖v‖ · sign(x_i) · ℓ_i / s with ℓ_i = ⌊|x_i| / ‖v‖ · s + u⌋
    (stochastic rounding, unbiased), coded as in the paper's Section 3.

    Reference: D. Alistarh, D. Grubic, J. Li, R. Tomioka, M. Vojnovic, *QSGD:
    Communication-Efficient SGD via Gradient Quantization and Encoding*, NeurIPS 2017.

    Wire format: the float32 norm of each bucket, then per bucket the Elias omega code of
    (nonzero count + 1) and, for each nonzero level, omega(gap from the previous nonzero
    position), a sign bit (1 = positive) and omega(level). ``seed`` only makes the
    encoder's rounding reproducible; decoding needs none.

    Parameters
    ----------
    num_levels : int
        s, the number of levels above zero (s = 1 is ternary; the paper's bound uses √n).
    norm : {"l2", "max"}
        Bucket norm: the paper's L2 norm or the max norm (smaller variance).
    bucket_size : int, optional
        Elements per bucket (default: the whole update is one bucket).

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    >>> codec = fedcodec.get_codec({"id": "qsgd", "num_levels": 4, "norm": "max"})
    >>> fedcodec.decode(codec.encode(x, seed=1)).shape
    (1000,)
    """

    codec_id: ClassVar[str] = "qsgd"
    description: ClassVar[str] = "stochastic s-level quantization + Elias omega codes (QSGD)"

    def __init__(
        self, *, num_levels: int = 4, norm: str = "l2", bucket_size: int | None = None
    ) -> None:
        if not 1 <= int(num_levels) <= MAX_LEVELS:
            raise ValueError(f"num_levels must lie in [1, 2**24], got {num_levels}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if bucket_size is not None and int(bucket_size) < 1:
            raise ValueError(f"bucket_size must be positive, got {bucket_size}")
        self.num_levels = int(num_levels)
        self.norm = norm
        self.bucket_size = None if bucket_size is None else int(bucket_size)

    def _bucket(self, n: int) -> int:
        return max(1, n if self.bucket_size is None else min(self.bucket_size, n))

    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        n = x.size
        bucket = self._bucket(n)
        buckets = -(-n // bucket)
        pad = np.zeros(buckets * bucket, dtype=np.float64)
        pad[:n] = x
        shaped = pad.reshape(buckets, bucket)
        if self.norm == "l2":
            with np.errstate(over="ignore"):  # a norm beyond float32's range: reported below
                norms = np.sqrt(np.einsum("ij,ij->i", shaped, shaped)).astype(np.float32)
        else:
            norms = np.abs(shaped).max(axis=1).astype(np.float32) if n else np.zeros(0, np.float32)
        if not np.isfinite(norms).all():
            raise ValueError(
                "qsgd: a bucket's l2 norm exceeds float32's range (3.4e38): use norm='max', a "
                "smaller bucket_size, or scale the update down before encoding"
            )
        # float32 rounding may put a norm a hair below the largest |x|: levels are capped at s
        del pad, shaped
        stream = _rng.stream_seed(
            secrets.randbits(63) if seed is None else seed, _rng.STREAM_DITHER
        )
        cap = n // 2 + 64
        while True:
            out = np.empty(cap, dtype=np.uint8)
            nbytes = _qsgd._qsgd_encode(x, bucket, self.num_levels, norms, stream, out)
            if nbytes >= 0:
                break
            cap = 12 * n + 64  # worst case: every element nonzero with long codes
        params = put_varint(self.num_levels) + put_varint(bucket)
        return params, norms.astype("<f4").tobytes() + out[:nbytes].tobytes()

    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        n = out.shape[0]
        r = Reader(params, "qsgd parameters")
        s = r.varint("levels", MAX_LEVELS)
        bucket = r.varint("bucket size", max(n, 1))
        r.finish()
        if s < 1 or bucket < 1:
            raise DecodeError("qsgd: invalid levels or bucket size")
        buckets = -(-n // bucket)
        if len(body) < 4 * buckets:
            raise DecodeError("qsgd: body shorter than its bucket norms")
        norms = np.frombuffer(body[: 4 * buckets], dtype="<f4").astype(np.float32)
        if not (np.isfinite(norms).all() and (norms >= 0).all()):
            raise DecodeError("qsgd: invalid bucket norm")
        codes = np.frombuffer(body[4 * buckets :], dtype=np.uint8)
        status = _qsgd._qsgd_decode(codes, bucket, s, norms, out)
        if status < 0:
            raise DecodeError(f"qsgd: invalid codes (status {status})")


register_codec(QSGD)
