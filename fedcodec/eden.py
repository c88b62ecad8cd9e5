"""``eden``: b bits per coordinate after a random rotation (Vargaftik et al. 2022)."""

from __future__ import annotations

import math
import struct
from typing import ClassVar

import numpy as np

from . import _rotated
from . import kernels as _kernels
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


#: The stream of the shared seed that picks which coordinates get ⌈b⌉ bits.
STREAM_MIX = 0x0EDE_4B17
#: Parameter byte of a fractional bit width (then float32 ``bits``); integer widths write
#: the width itself (1..4), as before fractional widths existed.
_FRACTIONAL = 0


def centroid_table(bits: int) -> np.ndarray:
    """All 2**bits centroids in increasing order (float64); one 0 for 0 bits."""
    if bits == 0:
        return np.zeros(1)
    half = np.array(CENTROIDS[bits])
    return np.concatenate([-half[::-1], half])


def split_bits(bits: float) -> tuple[int, int, float]:
    """(⌊b⌋, ⌈b⌉, share of coordinates with ⌈b⌉ bits) of a bit width b."""
    lo = math.floor(bits)
    hi = math.ceil(bits)
    return lo, hi, float(bits) - lo


def high_mask(seed: int, start: int, count: int, share: float) -> np.ndarray:
    """Which of coordinates ``start .. start+count`` get ⌈b⌉ bits: both sides draw them
    from the shared seed (no side information)."""
    if share <= 0:
        return np.zeros(count, dtype=bool)
    return _rng.uniform(seed, STREAM_MIX, count, start) < share


class Eden(Codec):
    """EDEN: y = R x (randomized Hadamard rotation of the shared seed), z = y·√d / ‖y‖,
    each z_i sent as the index of its nearest Lloyd–Max centroid of N(0, 1) in ``bits``
    bits, plus one float32 scale S = ‖x‖² / ⟨c(z), Rx⟩ (unbiased); x̂ = Rᵀ (S · c(z)).

    A fractional width b ∈ (0, 4] mixes ⌊b⌋ and ⌈b⌉ bits as the paper does: each
    coordinate gets ⌈b⌉ bits with probability b − ⌊b⌋, drawn from the shared seed (so the
    mix costs no side information and n·b bits on average); with b < 1 the other
    coordinates get 0 bits (they are not sent: c = 0, which the scale S makes up for in
    expectation; a block's ‖x̂‖ is capped at √(d/b)·‖Rx‖, which only blocks of a few
    elements can meet). ``bits=0.1`` sends one coordinate in ten, with 1 bit.

    Reference: S. Vargaftik, R. Ben-Basat, A. Portnoy, G. Mendelson, Y. Ben-Itzhak,
    M. Mitzenmacher, *EDEN: Communication-Efficient and Robust Distributed Mean Estimation
    for Federated Learning*, ICML 2022.

    Body: exactly ceil(n · bits / 8) bytes for an integer width (packed indices, LSB
    first); for a fractional one the ⌈b⌉-bit indices, packed, then the ⌊b⌋-bit ones.
    Parameters: the bit width (a byte; 0 then a float32 for a fractional width), one
    float32 scale per rotation block (blocks as in ``drive``: no padding, each block
    normalized and scaled on its own) and a 32-bit seed check.

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    >>> codec = fedcodec.get_codec({"id": "eden", "bits": 2})
    >>> len(fedcodec.container.unpack(codec.encode(x, seed=1)).body)
    250
    >>> tenth = fedcodec.get_codec({"id": "eden", "bits": 0.1})
    >>> len(fedcodec.container.unpack(tenth.encode(x, seed=1)).body)  # ~100 bits
    12
    """

    codec_id: ClassVar[str] = "eden"
    description: ClassVar[str] = "b bits/coordinate, Lloyd-Max levels after a rotation (EDEN)"

    def __init__(self, *, bits: float = 1) -> None:
        try:
            value = float(bits)
        except (TypeError, ValueError):
            value = math.nan
        if not 0 < value <= 4:
            raise ValueError(f"bits must be in (0, 4] (fractions mix two widths), got {bits!r}")
        # an integer width stays an int (its payloads are as before fractional widths)
        self.bits: float = int(value) if value == int(value) else float(np.float32(value))

    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        seed = _rotated.require_seed(self.codec_id, seed)
        y = _rotated.rotated(x, seed, max_abs)
        lo, hi, share = split_bits(self.bits)
        tables = {w: centroid_table(w) for w in {lo, hi}}
        bounds = {w: (t[1:] + t[:-1]) / 2 for w, t in tables.items()}
        parts: dict[int, list[np.ndarray]] = {lo: [], hi: []}
        scales = []
        for start, stop in _rotated.blocks(y.size):
            part = y[start:stop].astype(np.float64)
            energy = _kernels.dot(part, part)
            high = high_mask(seed, start, stop - start, share)
            c = np.zeros(part.size)
            z = part * np.sqrt(part.size / energy) if energy > 0 else np.zeros(part.size)
            for width, where in ((hi, high), (lo, ~high)):
                index = np.searchsorted(bounds[width], z[where]).astype(np.uint8)
                if energy == 0:
                    index[:] = 2 ** (width - 1) if width else 0
                c[where] = tables[width][index]
                if width:
                    parts[width].append(index)
            dot = _kernels.dot(c, part)
            scale = energy / dot if energy > 0 and dot > 0 else 0.0
            if lo == 0 and scale > 0:
                # b < 1: a block whose few sent coordinates are all tiny would get a huge
                # scale; cap ‖x̂‖ at √(d/b)·‖Rx‖ (typical draws are ~1.25/√b: unaffected;
                # only blocks of a few elements can meet the cap)
                cap = math.sqrt(part.size / self.bits * energy) / math.sqrt(_kernels.dot(c, c))
                scale = min(scale, cap)
            scales.append(scale)
        _rotated.check_scales("eden", scales)
        head = (
            struct.pack("<B", self.bits)
            if isinstance(self.bits, int)
            else struct.pack("<Bf", _FRACTIONAL, self.bits)
        )
        params = (
            head
            + np.array(scales, dtype="<f4").tobytes()
            + struct.pack("<I", _rng.seed_check(seed))
        )
        body = b""
        for width in sorted({hi, lo}, reverse=True):
            if width:
                idx = np.concatenate(parts[width]) if parts[width] else np.zeros(0, np.uint8)
                body += _rotated.pack(idx, width)
        return params, body

    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        n = out.shape[0]
        blocks = _rotated.blocks(n)
        r = Reader(params, "eden parameters")
        bits: float = r.u8("bits")
        if bits == _FRACTIONAL:
            (bits,) = r.unpack("<f", "fractional bit width")
            if not (0 < bits < 4 and bits != int(bits)):
                raise DecodeError("eden: invalid fractional bit width")
        elif bits not in CENTROIDS:
            raise DecodeError("eden: invalid bit width")
        scales = np.frombuffer(r.take(4 * len(blocks), "block scales"), dtype="<f4")
        (check,) = r.unpack("<I", "seed check")
        r.finish()
        if not (np.isfinite(scales).all() and (scales >= 0).all()):
            raise DecodeError("eden: invalid scale")
        seed = _rotated.check_seed(self.codec_id, seed, check)
        lo, hi, share = split_bits(bits)
        masks = [high_mask(seed, a, b - a, share) for a, b in blocks] if share else None
        count_hi = int(sum(int(m.sum()) for m in masks)) if masks is not None else n
        split = (count_hi * hi + 7) // 8
        index = {hi: _rotated.unpack(body[:split], hi, count_hi, self.codec_id)}
        if lo and share:
            index[lo] = _rotated.unpack(body[split:], lo, n - count_hi, self.codec_id)
        elif len(body) != split:
            raise DecodeError("eden: body has the wrong length")
        tables = {w: centroid_table(w) for w in {lo, hi}}
        pos = {lo: 0, hi: 0}
        for i, ((start, stop), s) in enumerate(zip(blocks, scales, strict=True)):
            block = out[start:stop]
            full = np.ones(stop - start, dtype=bool)
            where = [(hi, full)] if masks is None else [(hi, masks[i]), (lo, ~masks[i])]
            for width, sel in where:
                values = (tables[width] * float(s)).astype(np.float32)
                if width == 0:
                    block[sel] = 0
                    continue
                count = int(np.count_nonzero(sel))
                block[sel] = values[index[width][pos[width] : pos[width] + count]]
                pos[width] += count
        bound = float(scales.max()) * float(tables[hi][-1]) if scales.size else 0.0
        _rotated.rotate(out, seed, bound=bound, inverse=True)


register_codec(Eden)
