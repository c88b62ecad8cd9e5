"""``eden``: b bits per coordinate after a random rotation (Vargaftik et al. 2022)."""

from __future__ import annotations

import struct
from typing import ClassVar

import numpy as np

from . import _rotated
from .codec import Codec, register_codec
from .container import Reader
from .errors import DecodeError
from .kernels import rng as _rng

#: Lloyd–Max centroids of the standard normal for 1..4 bits (computed once by Lloyd's
#: iteration to 1e-12 and fixed here, so that every machine reconstructs the same values).
CENTROIDS = {
    1: (0.797884560803,),
    2: (0.452780034636, 1.510417608499),
    3: (0.245094178944, 0.756005281206, 1.343909278505, 2.151945704537),
    4: (
        0.128395029851, 0.388048299490, 0.656759118532, 0.942340456487,
        1.256231197347, 1.618046386022, 2.069017226531, 2.732589570995,
    ),
}  # fmt: skip


def centroid_table(bits: int) -> np.ndarray:
    """All 2**bits centroids in increasing order (float64)."""
    half = np.array(CENTROIDS[bits])
    return np.concatenate([-half[::-1], half])


class Eden(Codec):
    """EDEN: y = R x (randomized Hadamard rotation of the shared seed), z = y·√d / ‖y‖,
    each z_i sent as the index of its nearest Lloyd–Max centroid of N(0, 1) in ``bits``
    bits, plus one float32 scale S = ‖x‖² / ⟨c(z), Rx⟩ (unbiased); x̂ = Rᵀ (S · c(z)).

    Reference: S. Vargaftik, R. Ben-Basat, A. Portnoy, G. Mendelson, Y. Ben-Itzhak,
    M. Mitzenmacher, *EDEN: Communication-Efficient and Robust Distributed Mean Estimation
    for Federated Learning*, ICML 2022.

    Body: exactly ceil(n · bits / 8) bytes (packed indices, LSB first); parameters: the
    bit width, one float32 scale per rotation block (blocks as in ``drive``: no padding,
    each block normalized and scaled on its own) and a 32-bit seed check.

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    >>> codec = fedcodec.get_codec({"id": "eden", "bits": 2})
    >>> len(fedcodec.container.unpack(codec.encode(x, seed=1)).body)
    250
    """

    codec_id: ClassVar[str] = "eden"
    description: ClassVar[str] = "b bits/coordinate, Lloyd-Max levels after a rotation (EDEN)"

    def __init__(self, *, bits: int = 1) -> None:
        if bits not in CENTROIDS:
            raise ValueError(f"bits must be one of {sorted(CENTROIDS)}, got {bits!r}")
        self.bits = int(bits)

    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        seed = _rotated.require_seed(self.codec_id, seed)
        y = _rotated.rotated(x, seed, max_abs)
        table = centroid_table(self.bits)
        bounds = (table[1:] + table[:-1]) / 2
        index = np.empty(y.size, dtype=np.uint8)
        scales = []
        for start, stop in _rotated.blocks(y.size):
            part = y[start:stop].astype(np.float64)
            energy = float(np.dot(part, part))
            if energy > 0:
                z = part * (np.sqrt(part.size / energy))
                index[start:stop] = np.searchsorted(bounds, z)
                dot = float(np.dot(table[index[start:stop]], part))
                scales.append(energy / dot if dot > 0 else 0.0)
            else:
                index[start:stop] = 2 ** (self.bits - 1)
                scales.append(0.0)
        _rotated.check_scales("eden", scales)
        params = (
            struct.pack("<B", self.bits)
            + np.array(scales, dtype="<f4").tobytes()
            + struct.pack("<I", _rng.seed_check(seed))
        )
        return params, _rotated.pack(index, self.bits)

    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        n = out.shape[0]
        blocks = _rotated.blocks(n)
        r = Reader(params, "eden parameters")
        bits = r.u8("bits")
        scales = np.frombuffer(r.take(4 * len(blocks), "block scales"), dtype="<f4")
        (check,) = r.unpack("<I", "seed check")
        r.finish()
        if bits not in CENTROIDS or not (np.isfinite(scales).all() and (scales >= 0).all()):
            raise DecodeError("eden: invalid bit width or scale")
        seed = _rotated.check_seed(self.codec_id, seed, check)
        index = _rotated.unpack(body, bits, n, self.codec_id)
        table = centroid_table(bits)
        for (start, stop), s in zip(blocks, scales, strict=True):
            values = (table * float(s)).astype(np.float32)
            np.take(values, index[start:stop], out=out[start:stop])
        bound = float(scales.max()) * float(table[-1]) if scales.size else 0.0
        _rotated.rotate(out, seed, bound=bound, inverse=True)


register_codec(Eden)
