"""Shared pieces of the rotation-based codecs (DRIVE, EDEN): seeds and bit packing."""

from __future__ import annotations

import itertools
import math

import numpy as np

from . import kernels
from .codec import FLOAT32_MAX
from .errors import DecodeError
from .kernels import bits as _bits
from .kernels import hadamard as _hadamard
from .kernels import rng as _rng


def require_seed(codec_id: str, seed: int | None) -> int:
    if seed is None:
        raise ValueError(
            f"{codec_id} rotates with randomness both sides share: call "
            "encode(update, seed=...) and decode(payload, seed=...) with the same seed"
        )
    return seed


def check_seed(codec_id: str, seed: int | None, stored: int) -> int:
    """Raise DecodeError unless ``seed`` is the one the payload was encoded with."""
    if seed is None:
        raise DecodeError(f"{codec_id}: this payload needs the shared seed it was encoded with")
    if _rng.seed_check(seed) != stored:
        raise DecodeError(
            f"{codec_id}: the seed does not match the one the payload was encoded with"
        )
    return seed


#: Largest |x| that the float32 transform takes as it is: its partial sums reach 2**8 times
#: the inputs (a block of 2**16 scaled by 2**-8), and float32 ends at 2**128.
ROTATE_UNSCALED_MAX = 2.0**100
#: Smallest bound of |x| taken as it is: below, the transform's scaling by 2**-8 would round
#: subnormals away.
ROTATE_UNSCALED_MIN = 2.0**-60


def _scale_pow2(x: np.ndarray, k: int) -> None:
    """``x *= 2**k`` in float32 steps that stay representable (exact barring underflow)."""
    while k:
        part = max(-126, min(126, k))
        x *= np.float32(2.0**part)
        k -= part


def rotate(x: np.ndarray, seed: int, *, bound: float, inverse: bool = False) -> np.ndarray:
    """:func:`kernels.rotate` in place, accurate for values near float32's limits.

    ``bound`` is an upper bound of max |x| that the caller knows (a scale, a step times the
    largest level). Outside [:data:`ROTATE_UNSCALED_MIN`, :data:`ROTATE_UNSCALED_MAX`] the
    vector's real maximum is measured and the vector scaled by a power of two around the
    transform, so that no partial sum overflows and no subnormal rounds away; results are
    bit-identical inside that range, and a result beyond float32's range becomes Inf (which
    decoding reports).
    """
    if ROTATE_UNSCALED_MIN <= bound <= ROTATE_UNSCALED_MAX:
        return kernels.rotate(x, seed, inverse=inverse)
    m = kernels.max_abs_and_sumsq(x)[0]
    if m == 0.0 or ROTATE_UNSCALED_MIN <= m <= ROTATE_UNSCALED_MAX:
        return kernels.rotate(x, seed, inverse=inverse)
    k = math.ceil(math.log2(m))  # max |x| is brought to (1/2, 1]
    _scale_pow2(x, -k)
    kernels.rotate(x, seed, inverse=inverse)
    with np.errstate(over="ignore"):
        _scale_pow2(x, k)
    return x


def rotated(x: np.ndarray, seed: int, max_abs: float) -> np.ndarray:
    """A rotated copy of ``x`` (see kernels.rotate: 2**16 blocks + binary decomposition).

    Raises ``ValueError`` if a rotated value passes float32's range (possible only for
    values near it)."""
    y = rotate(x.copy(), seed, bound=max_abs)
    if max_abs > ROTATE_UNSCALED_MAX and not kernels.max_abs_and_sumsq(y)[2]:  # Inf
        raise ValueError(
            f"the rotation of values up to {max_abs:.4g} passes float32's range: scale the "
            "update down (e.g. by 2**-64) before encoding"
        )
    return y


def check_scales(codec_id: str, scales: list[float]) -> None:
    """Raise ValueError if a block scale does not fit a float32 (values near its limit)."""
    if scales and max(scales) > FLOAT32_MAX:
        raise ValueError(
            f"{codec_id}: a block scale of {max(scales):.3g} exceeds float32's range (values "
            "near ±3.4e38): scale the update down (e.g. by 2**-64) before encoding"
        )


def blocks(n: int) -> list[tuple[int, int]]:
    """The rotation's blocks as (start, stop): 2**16 elements each, then the binary
    decomposition of the rest. Rotation-based codecs scale each block on its own, so that
    blocks of different energy do not share one scale."""
    sizes = _hadamard._block_sizes(n, _hadamard.BLOCK)
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def pack(values: np.ndarray, width: int) -> bytes:
    out = np.empty((values.size * width + 7) // 8 + 8, dtype=np.uint8)
    nbytes = _bits._pack_fixed(values, width, out)
    return out[:nbytes].tobytes()


def unpack(body: memoryview, width: int, n: int, codec_id: str) -> np.ndarray:
    out = np.empty(n, dtype=np.uint8)
    status = _bits._unpack_fixed(np.frombuffer(body, dtype=np.uint8), width, out)
    if status < 0:
        raise DecodeError(f"{codec_id}: body has the wrong length or non-zero padding")
    return out
