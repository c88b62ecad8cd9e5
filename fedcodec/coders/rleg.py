"""The run-length Elias-gamma code of Mitchell et al. (byte-identical with TensorFlow
Compression's ``run_length_gamma_encode``): the stream framing of RDQ's ``coder="rleg"``.

The body is the code itself; it carries no parameters (layout in ``docs/format.md``).
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import DecodeError
from ..kernels import bits as _bits


def encode(q: np.ndarray, size_hint_bits: float, limit_bytes: int | None = None) -> bytes | None:
    """Code int32 levels (``|q| <= 2**30``, which the quantizer guarantees); the buffer is
    sized from ``size_hint_bits`` (an estimate) and grown to the worst case if needed.
    With ``limit_bytes``, gives up (returns None) as soon as the body would be longer."""
    if limit_bytes is not None:
        out = np.empty(limit_bytes + 20, dtype=np.uint8)  # the kernel's per-element margin
        nbytes = _bits._rleg_encode(q, out)
        return out[:nbytes].tobytes() if 0 <= nbytes <= limit_bytes else None
    cap = int(size_hint_bits * 2.0 / 8) + 1024
    while True:
        out = np.empty(cap, dtype=np.uint8)
        nbytes = _bits._rleg_encode(q, out)
        if nbytes >= 0:
            return out[:nbytes].tobytes()
        cap = 17 * q.shape[0] + 64  # worst case: 127 bits per element


def piece_runs(q: np.ndarray) -> np.ndarray:
    """A piece of the levels' part of their code, for :func:`joined_bytes`."""
    out = np.zeros(4, dtype=np.int64)
    _bits._rleg_runs(q, out)
    return out


def joined_bytes(pieces: list[np.ndarray]) -> int:
    """The body's bytes of levels coded as consecutive pieces (each :func:`piece_runs`,
    in order), without coding them: exactly ``len(encode(levels))``."""
    bits = 0
    zeros = 0  # the zeros since the last non-zero level
    for lead, piece_bits, trail, any_nonzero in (p.tolist() for p in pieces):
        if any_nonzero:
            bits += 2 * (zeros + lead + 1).bit_length() - 1 + piece_bits
            zeros = trail
        else:
            zeros += lead
    if zeros:
        bits += 2 * (zeros + 1).bit_length() - 1
    return (bits + 7) // 8


def lower_bound_bits(lo: int, counts: np.ndarray) -> float:
    """A lower bound on the body's bits from a histogram of the levels ``lo, lo + 1, ...``
    (levels outside it left out): every non-zero level costs its magnitude's gamma code, a
    sign bit and at least one bit of run length."""
    levels = np.abs(np.arange(lo, lo + counts.shape[0], dtype=np.int64))
    nonzero = levels > 0
    return float((counts[nonzero] * (2.0 * np.floor(np.log2(levels[nonzero])) + 3.0)).sum())


def decode(
    body: memoryview,
    out: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    stream: np.uint64,
) -> None:
    """Decode the reconstructed values into float32 ``out``; ``DecodeError`` on any defect.

    The caller proves ``mode`` valid and ``step`` finite and positive (RDQ's parameters)."""
    status = _bits._rleg_decode_values(
        np.frombuffer(body, dtype=np.uint8), out, kernels.MAX_ABS_LEVEL, mode, step, recon, stream
    )
    if status < 0:
        raise DecodeError(f"rdq/rleg: invalid run-length gamma body (status {status})")


def decode_levels(body: memoryview, n: int) -> np.ndarray:
    """The body's ``n`` levels (int32), for analysis: :func:`decode` without the values."""
    q = np.empty(n, dtype=np.int32)
    status = _bits._rleg_decode(np.frombuffer(body, dtype=np.uint8), q, kernels.MAX_ABS_LEVEL)
    if status < 0:
        raise DecodeError(f"rdq/rleg: invalid run-length gamma body (status {status})")
    return q
