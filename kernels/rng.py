"""Counter-based randomness shared by encoder and decoder.

Every random number is a pure function of ``(stream_seed, index)`` (SplitMix64's
finalizer applied to ``stream_seed + (index + 1) * golden_gamma``), so both sides derive
the same dither or rotation signs from a shared seed without any state to keep in sync,
and a subsample of indices sees exactly the numbers the full pass sees.
"""

from __future__ import annotations

import numpy as np

from ._config import inline_jit, jit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53

MASK64 = (1 << 64) - 1

# Stream tags: one independent stream per use of the shared seed.
STREAM_DITHER = 0x0D17_4E12
STREAM_ROTATE = 0x0507_A7E5
STREAM_CHECK = 0x0C4E_C0DE


@inline_jit
def _mix64(z: np.uint64) -> np.uint64:
    """SplitMix64 finalizer (a bijection on 64-bit words)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@inline_jit
def _hash64(seed: np.uint64, index: int) -> np.uint64:
    """Random 64-bit word number ``index`` of the stream ``seed``."""
    return _mix64(seed + (np.uint64(index) + np.uint64(1)) * _GOLDEN)


@inline_jit
def _uniform(seed: np.uint64, index: int) -> float:
    """Uniform float64 in [0, 1) with 53 random bits."""
    return float(_hash64(seed, index) >> _S11) * _INV53


@jit
def _uniform_array(seed: np.uint64, start: int, count: int) -> np.ndarray:
    out = np.empty(count, dtype=np.float64)
    for j in range(count):
        out[j] = _uniform(seed, start + j)
    return out


def stream_seed(seed: int, stream: int) -> np.uint64:
    """Derive the 64-bit seed of one random stream from a user seed (any Python int)."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + stream * 0xD1B54A32D192ED03) & MASK64
    z ^= z >> 29
    return np.uint64(z)


def uniform(seed: int, stream: int, count: int, start: int = 0) -> np.ndarray:
    """Public view of the stream: ``count`` uniforms in [0, 1) from index ``start``."""
    if count < 0 or start < 0:
        raise ValueError("count and start must be non-negative")
    return _uniform_array(stream_seed(seed, stream), int(start), int(count))


def seed_check(seed: int) -> int:
    """A 32-bit fingerprint of a seed, stored in payloads so a wrong seed is detected."""
    return int(_hash64(stream_seed(seed, STREAM_CHECK), 0) >> np.uint64(32))


def shifted(stream: np.uint64, start: int) -> np.uint64:
    """The stream whose number ``j`` is number ``start + j`` of ``stream``: a frame that
    starts at element ``start`` draws exactly what the whole update would there."""
    return np.uint64((int(stream) + int(start) * int(_GOLDEN)) & MASK64)
