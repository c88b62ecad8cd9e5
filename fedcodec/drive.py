"""``drive``: one bit per coordinate after a random rotation (Vargaftik et al. 2021)."""

from __future__ import annotations

import struct
from typing import ClassVar

import numpy as np

from . import _rotated
from . import kernels as _kernels
from .codec import FLOAT32_MAX, Codec, register_codec
from .container import Reader
from .errors import DecodeError
from .kernels import rng as _rng

SCALES = ("unbiased", "mse")


class Drive(Codec):
    """DRIVE: y = R x with R the randomized Hadamard rotation of the shared seed, send
    sign(y) as one packed bit per coordinate and one float32 scale S; x̂ = Rᵀ (S · sign(y)).

    Reference: S. Vargaftik, R. Ben-Basat, A. Portnoy, G. Mendelson, Y. Ben-Itzhak,
    M. Mitzenmacher, *DRIVE: One-bit Distributed Mean Estimation*, NeurIPS 2021.

    The rotation splits the vector into power-of-two blocks (2**16 elements, then the binary
    decomposition of the rest; see ``docs/format.md``) instead of padding to a power of two,
    and each block is one DRIVE instance with its own float32 scale: the body is exactly
    ceil(n / 8) bytes, the parameters one float32 per block (⌈n / 2**16⌉ + the popcount
    of the remainder) and a 32-bit seed check.

    Parameters
    ----------
    scale : {"unbiased", "mse"}
        ``"unbiased"``: S = ‖x‖² / ‖Rx‖₁ (unbiased over the rotation); ``"mse"``:
        S = ‖Rx‖₁ / d, the scale of least squared error (both per block).

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    >>> payload = fedcodec.get_codec({"id": "drive"}).encode(x, seed=1)
    >>> len(fedcodec.container.unpack(payload).body)
    125
    """

    codec_id: ClassVar[str] = "drive"
    description: ClassVar[str] = "1 bit/coordinate after a seeded Hadamard rotation (DRIVE)"

    def __init__(self, *, scale: str = "unbiased") -> None:
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.scale = scale

    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        seed = _rotated.require_seed(self.codec_id, seed)
        y = _rotated.rotated(x, seed, max_abs)
        scales = []
        for start, stop in _rotated.blocks(y.size):
            part = y[start:stop].astype(np.float64)
            l1 = float(np.abs(part).sum())
            if l1 == 0.0:
                scales.append(0.0)
            elif self.scale == "unbiased":
                scales.append(_kernels.dot(part, part) / l1)
            else:
                scales.append(l1 / part.size)
        bits = (y >= 0).astype(np.uint8)
        _rotated.check_scales("drive", scales)
        params = np.array(scales, dtype="<f4").tobytes() + struct.pack("<I", _rng.seed_check(seed))
        return params, _rotated.pack(bits, 1)

    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        n = out.shape[0]
        blocks = _rotated.blocks(n)
        r = Reader(params, "drive parameters")
        scales = np.frombuffer(r.take(4 * len(blocks), "block scales"), dtype="<f4")
        (check,) = r.unpack("<I", "seed check")
        r.finish()
        if not (np.isfinite(scales).all() and (scales >= 0).all()):
            raise DecodeError("drive: invalid scale")
        seed = _rotated.check_seed(self.codec_id, seed, check)
        bits = _rotated.unpack(body, 1, n, self.codec_id)
        for (start, stop), s in zip(blocks, scales, strict=True):
            if 2.0 * float(s) <= FLOAT32_MAX:  # the fast path: out = 2s·bit − s
                np.multiply(
                    bits[start:stop], np.float32(2 * s), out=out[start:stop], casting="unsafe"
                )
                out[start:stop] -= np.float32(s)
            else:  # 2s overflows float32 (s near its max): pick ±s
                np.take(np.array([-s, s], dtype=np.float32), bits[start:stop], out=out[start:stop])
        bound = float(scales.max()) if scales.size else 0.0
        _rotated.rotate(out, seed, bound=bound, inverse=True)


register_codec(Drive)
