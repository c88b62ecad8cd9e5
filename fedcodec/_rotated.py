"""Shared pieces of the rotation-based codecs (DRIVE, EDEN): seeds and bit packing."""

from __future__ import annotations

import itertools

import numpy as np

from . import kernels
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


def rotated(x: np.ndarray, seed: int) -> np.ndarray:
    """A rotated copy of ``x`` (see kernels.rotate: 2**16 blocks + binary decomposition)."""
    y = x.copy()
    kernels.rotate(y, seed)
    return y


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
