"""Bit coding kernels: Elias-gamma and the run-length Elias-gamma code.

Bit order follows TensorFlow Compression's ``BitWriter``: bits are packed least significant
first (the first bit written is bit 0 of byte 0). Elias-gamma of ``v >= 1`` with ``n`` the
bit length of ``v`` is ``n - 1`` zero bits, a one bit, then ``v - 2**(n-1)`` as an
``(n - 1)``-bit field, least significant bit first.

Decoders return a negative status instead of raising (numba), checked by the wrappers:
``-1`` read past the end, ``-2`` gamma code longer than allowed, ``-3`` run past the element
count, ``-4`` non-zero padding or trailing bytes.
"""

from __future__ import annotations

import numpy as np

from ._config import inline_jit, jit
from .prefetch import AHEAD, PAGE_ELEMENTS, _prefetch
from .quant import _bit_length, _bit_length_flat, _dequantize_one

ERR_EXHAUSTED = -1
ERR_GAMMA_TOO_LONG = -2
ERR_RUN_OVERFLOW = -3
ERR_TRAILING = -4
ERR_CAPACITY = -5

MAX_GAMMA_BITS = 32  # values up to 2**32 - 1


@inline_jit
def _put_bits(
    out: np.ndarray, pos: int, buf: np.uint64, nbits: int, value: np.uint64, count: int
) -> tuple[int, np.uint64, int]:
    """Append ``count <= 32`` bits of ``value``; whole 32-bit words are flushed (so fewer
    than 32 bits stay buffered). The caller checks that 4 more bytes fit."""
    buf |= value << np.uint64(nbits)
    nbits += count
    if nbits >= 32:
        out[pos] = np.uint8(buf & np.uint64(0xFF))
        out[pos + 1] = np.uint8((buf >> np.uint64(8)) & np.uint64(0xFF))
        out[pos + 2] = np.uint8((buf >> np.uint64(16)) & np.uint64(0xFF))
        out[pos + 3] = np.uint8((buf >> np.uint64(24)) & np.uint64(0xFF))
        pos += 4
        buf >>= np.uint64(32)
        nbits -= 32
    return pos, buf, nbits


@inline_jit
def _put_gamma(
    out: np.ndarray, pos: int, buf: np.uint64, nbits: int, v: int
) -> tuple[int, np.uint64, int]:
    """Append the Elias-gamma code of ``1 <= v < 2**32``."""
    n = _bit_length(v)
    # n - 1 zeros, a one, then the low n - 1 bits of v: as one number, LSB first,
    # ((v - 2**(n-1)) << n) | (1 << (n-1)), 2n - 1 bits long
    low = np.uint64(v) - (np.uint64(1) << np.uint64(n - 1))
    if n <= 16:
        code = (low << np.uint64(n)) | (np.uint64(1) << np.uint64(n - 1))
        return _put_bits(out, pos, buf, nbits, code, 2 * n - 1)
    pos, buf, nbits = _put_bits(out, pos, buf, nbits, np.uint64(0), n - 1)
    return _put_bits(out, pos, buf, nbits, (low << np.uint64(1)) | np.uint64(1), n)


@inline_jit
def _flush_bytes(out: np.ndarray, pos: int, buf: np.uint64, nbits: int) -> int:
    """Write the buffered bits, zero-padded to a byte; returns the byte count."""
    while nbits > 0:
        out[pos] = np.uint8(buf & np.uint64(0xFF))
        pos += 1
        buf >>= np.uint64(8)
        nbits -= 8
    return pos


@inline_jit
def _refill(data: np.ndarray, pos: int, buf: np.uint64, nbits: int) -> tuple[int, np.uint64, int]:
    while nbits <= 56 and pos < data.shape[0]:
        buf |= np.uint64(data[pos]) << np.uint64(nbits)
        pos += 1
        nbits += 8
    return pos, buf, nbits


@inline_jit
def _get_bits(
    data: np.ndarray, pos: int, buf: np.uint64, nbits: int, count: int
) -> tuple[int, int, np.uint64, int]:
    """Read a ``count``-bit field (``count <= 32``, least significant bit first); returns
    (value or ERR_EXHAUSTED, pos, buf, nbits)."""
    if nbits < count:
        pos, buf, nbits = _refill(data, pos, buf, nbits)
        if nbits < count:
            return ERR_EXHAUSTED, pos, buf, nbits
    value = int(np.int64(buf & ((np.uint64(1) << np.uint64(count)) - np.uint64(1))))
    return value, pos, buf >> np.uint64(count), nbits - count


@inline_jit
def _get_gamma(
    data: np.ndarray, pos: int, buf: np.uint64, nbits: int
) -> tuple[np.int64, int, np.uint64, int]:
    """Read one gamma code; returns (value or negative status, pos, buf, nbits)."""
    zeros = 0
    while True:
        if nbits == 0:
            pos, buf, nbits = _refill(data, pos, buf, nbits)
            if nbits == 0:
                return np.int64(ERR_EXHAUSTED), pos, buf, nbits
        if buf & np.uint64(1):
            break
        buf >>= np.uint64(1)
        nbits -= 1
        zeros += 1
        if zeros >= MAX_GAMMA_BITS:
            return np.int64(ERR_GAMMA_TOO_LONG), pos, buf, nbits
    buf >>= np.uint64(1)
    nbits -= 1
    if nbits < zeros:
        pos, buf, nbits = _refill(data, pos, buf, nbits)
        if nbits < zeros:
            return np.int64(ERR_EXHAUSTED), pos, buf, nbits
    low = buf & ((np.uint64(1) << np.uint64(zeros)) - np.uint64(1))
    buf >>= np.uint64(zeros)
    nbits -= zeros
    return np.int64((np.uint64(1) << np.uint64(zeros)) | low), pos, buf, nbits


@jit
def _gamma_encode(values: np.ndarray, out: np.ndarray) -> int:
    """Gamma-code ``values`` (each in [1, 2**32)); returns bytes written (zero-padded)."""
    pos = 0
    buf = np.uint64(0)
    nbits = 0
    for i in range(values.shape[0]):
        pos, buf, nbits = _put_gamma(out, pos, buf, nbits, int(values[i]))
    return _flush_bytes(out, pos, buf, nbits)


@jit
def _gamma_decode(data: np.ndarray, bit_offset: int, out: np.ndarray) -> int:
    """Decode ``len(out)`` gamma codes starting at ``bit_offset``; returns the end offset."""
    pos = bit_offset // 8
    buf = np.uint64(0)
    nbits = 0
    pos, buf, nbits = _refill(data, pos, buf, nbits)
    skip = bit_offset % 8
    if nbits < skip:
        return ERR_EXHAUSTED
    buf >>= np.uint64(skip)
    nbits -= skip
    for i in range(out.shape[0]):
        code, pos, buf, nbits = _get_gamma(data, pos, buf, nbits)
        v = int(code)
        if v < 0:
            return v
        out[i] = v
    return pos * 8 - nbits


@inline_jit
def _gamma_code(v: int, n: int) -> np.uint64:
    """Elias-gamma code of ``v`` (bit length ``n``) as one LSB-first number, 2n - 1 bits."""
    low = np.uint64(v) - (np.uint64(1) << np.uint64(n - 1))
    return (low << np.uint64(n)) | (np.uint64(1) << np.uint64(n - 1))


@jit
def _rleg_runs(q: np.ndarray, out: np.ndarray) -> None:
    """What a piece of the levels adds to their run-length Elias-gamma code, for joining
    pieces coded on their own (``fedcodec.coders.rleg.joined_bytes``): ``out = [leading
    zeros, bits, trailing zeros, has a non-zero level]``, where ``bits`` counts every
    non-zero level's code (run, sign and magnitude) except the first one's run, which
    depends on the zeros before the piece."""
    n = q.shape[0]
    i = 0
    while i < n and q[i] == 0:
        i += 1
    if i == n:
        out[0], out[1], out[2], out[3] = n, 0, 0, 0
        return
    lead = i
    bits = 2 * _bit_length(abs(int(q[i])))  # the sign and the magnitude's gamma code
    run = 1
    for j in range(i + 1, n):  # without a branch on the level
        if j % PAGE_ELEMENTS == 0:
            _prefetch(q, j + AHEAD)
        v = int(q[j])
        nonzero = v != 0
        code = 2 * _bit_length_flat(run) + 2 * _bit_length_flat(abs(v)) - 1
        bits += code if nonzero else 0
        run = 1 if nonzero else run + 1
    out[0], out[1], out[2], out[3] = lead, bits, run - 1, 1


@jit
def _rleg_encode(q: np.ndarray, out: np.ndarray) -> int:
    """Run-length Elias-gamma code of int32 ``q`` (TFC's ``run_length_gamma_encode``).

    Returns the number of bytes written, or ``ERR_CAPACITY`` if ``out`` is too small. An
    element whose three codes fit in 32 bits (almost all) is written with one call.
    """
    cap = out.shape[0]
    n = q.shape[0]
    pos = 0
    buf = np.uint64(0)
    nbits = 0
    zero_run = 1
    i = 0
    while True:
        while i < n and q[i] == 0:
            i += 1
            zero_run += 1
        if i >= n:
            break
        v = int(q[i])
        i += 1
        if pos + 20 > cap:  # one element writes at most 63 + 1 + 63 bits
            return ERR_CAPACITY
        mag = abs(v)
        a = _bit_length(zero_run)
        b = _bit_length(mag)
        sign = np.uint64(1 if v > 0 else 0)
        if a + b <= 16:
            first = 2 * a - 1
            code = (
                _gamma_code(zero_run, a)
                | (sign << np.uint64(first))
                | (_gamma_code(mag, b) << np.uint64(first + 1))
            )
            pos, buf, nbits = _put_bits(out, pos, buf, nbits, code, first + 2 * b)
        else:
            pos, buf, nbits = _put_gamma(out, pos, buf, nbits, zero_run)
            pos, buf, nbits = _put_bits(out, pos, buf, nbits, sign, 1)
            pos, buf, nbits = _put_gamma(out, pos, buf, nbits, mag)
        zero_run = 1
    if pos + 20 > cap:
        return ERR_CAPACITY
    if zero_run > 1:
        pos, buf, nbits = _put_gamma(out, pos, buf, nbits, zero_run)
    return _flush_bytes(out, pos, buf, nbits)


@jit
def _rleg_decode(data: np.ndarray, out: np.ndarray, max_abs: int) -> int:
    """Decode ``len(out)`` integers; strict: all bytes used, zero padding. Returns status."""
    n = out.shape[0]
    pos = 0
    buf = np.uint64(0)
    nbits = 0
    i = 0
    while i < n:
        code, pos, buf, nbits = _get_gamma(data, pos, buf, nbits)
        run = int(code)
        if run < 0:
            return run
        if run - 1 > n - i:
            return ERR_RUN_OVERFLOW
        for j in range(i, i + run - 1):
            out[j] = 0
        i += run - 1
        if i == n:
            break
        if nbits == 0:
            pos, buf, nbits = _refill(data, pos, buf, nbits)
            if nbits == 0:
                return ERR_EXHAUSTED
        positive = buf & np.uint64(1)
        buf >>= np.uint64(1)
        nbits -= 1
        code, pos, buf, nbits = _get_gamma(data, pos, buf, nbits)
        mag = int(code)
        if mag < 0:
            return mag
        if mag > max_abs:
            return ERR_GAMMA_TOO_LONG
        out[i] = mag if positive else -mag
        i += 1
    # strict end: fewer than 8 bits left, all zero, and no unread byte
    if pos != data.shape[0] or nbits >= 8 or buf != np.uint64(0):
        return ERR_TRAILING
    return 0


@jit
def _rleg_decode_values(
    data: np.ndarray,
    out: np.ndarray,
    max_abs: int,
    mode: int,
    step: float,
    recon: np.ndarray,
    seed: np.uint64,
) -> int:
    """:func:`_rleg_decode` that writes reconstructed float32 values instead of levels.

    Safety: ``data`` may be any bytes (reads are bounds-checked; runs are checked against
    the element count before any write); the caller (``fedcodec.rdq``) proves ``mode`` in
    {0, 1, 2} and ``step`` finite and positive (the payload's flags and step are checked).
    ``recon`` is read only below its length.
    """
    n = out.shape[0]
    pos = 0
    buf = np.uint64(0)
    nbits = 0
    i = 0
    zero_value = np.float32(0.0)
    while i < n:
        code, pos, buf, nbits = _get_gamma(data, pos, buf, nbits)
        run = int(code)
        if run < 0:
            return run
        if run - 1 > n - i:
            return ERR_RUN_OVERFLOW
        if mode == 2:  # dither: a zero level still reconstructs to (1/2 - u) * step
            for j in range(i, i + run - 1):
                out[j] = _dequantize_one(0, j, mode, step, recon, seed)
        else:
            for j in range(i, i + run - 1):
                out[j] = zero_value
        i += run - 1
        if i == n:
            break
        if nbits == 0:
            pos, buf, nbits = _refill(data, pos, buf, nbits)
            if nbits == 0:
                return ERR_EXHAUSTED
        positive = buf & np.uint64(1)
        buf >>= np.uint64(1)
        nbits -= 1
        code, pos, buf, nbits = _get_gamma(data, pos, buf, nbits)
        mag = int(code)
        if mag < 0:
            return mag
        if mag > max_abs:
            return ERR_GAMMA_TOO_LONG
        out[i] = _dequantize_one(mag if positive else -mag, i, mode, step, recon, seed)
        i += 1
    if pos != data.shape[0] or nbits >= 8 or buf != np.uint64(0):
        return ERR_TRAILING
    return 0


@jit
def _pack_fixed(values: np.ndarray, width: int, out: np.ndarray) -> int:
    """Pack ``values`` (each < 2**width, width <= 8) as ``width``-bit fields, LSB first;
    returns the bytes written (``ceil(len * width / 8)``)."""
    pos = 0
    buf = np.uint64(0)
    nbits = 0
    for i in range(values.shape[0]):
        buf |= np.uint64(values[i]) << np.uint64(nbits)
        nbits += width
        if nbits >= 32:
            out[pos] = np.uint8(buf & np.uint64(0xFF))
            out[pos + 1] = np.uint8((buf >> np.uint64(8)) & np.uint64(0xFF))
            out[pos + 2] = np.uint8((buf >> np.uint64(16)) & np.uint64(0xFF))
            out[pos + 3] = np.uint8((buf >> np.uint64(24)) & np.uint64(0xFF))
            pos += 4
            buf >>= np.uint64(32)
            nbits -= 32
    return _flush_bytes(out, pos, buf, nbits)


@jit
def _unpack_fixed(data: np.ndarray, width: int, out: np.ndarray) -> int:
    """Inverse of :func:`_pack_fixed` into ``out``; returns 0, or ERR_EXHAUSTED if ``data``
    is too short, ERR_TRAILING if it is too long or its padding bits are not zero.

    Safety: ``data``'s length is checked against ``len(out) * width`` before any read; the
    caller (``fedcodec._rotated.unpack``) proves ``1 <= width <= 8`` (DRIVE's 1, EDEN's
    checked bit width)."""
    n = out.shape[0]
    need = (n * width + 7) // 8
    if data.shape[0] < need:
        return ERR_EXHAUSTED
    if data.shape[0] > need:
        return ERR_TRAILING
    mask = np.uint64((1 << width) - 1)
    pos = 0
    buf = np.uint64(0)
    nbits = 0
    for i in range(n):
        if nbits < width:
            pos, buf, nbits = _refill(data, pos, buf, nbits)
        out[i] = np.uint8(buf & mask)
        buf >>= np.uint64(width)
        nbits -= width
    if buf != np.uint64(0):
        return ERR_TRAILING
    return 0


@inline_jit
def _put_omega(
    out: np.ndarray, pos: int, buf: np.uint64, nbits: int, v: int
) -> tuple[int, np.uint64, int]:
    """Append the Elias omega code of ``1 <= v < 2**32``: the groups of the recursion
    (v, bitlen(v) - 1, ...; at most 5), deepest first, each most significant bit first,
    then a zero bit."""
    depth = 0
    g = v
    while g > 1:
        depth += 1
        g = _bit_length(g) - 1
    for d in range(depth - 1, -1, -1):
        value = v
        for _ in range(d):  # the d-th group of the recursion
            value = _bit_length(value) - 1
        for b in range(_bit_length(value) - 1, -1, -1):
            pos, buf, nbits = _put_bits(out, pos, buf, nbits, np.uint64((value >> b) & 1), 1)
    return _put_bits(out, pos, buf, nbits, np.uint64(0), 1)


@inline_jit
def _get_bit(
    data: np.ndarray, pos: int, buf: np.uint64, nbits: int
) -> tuple[int, int, np.uint64, int]:
    """Read one bit; returns (bit or ERR_EXHAUSTED, pos, buf, nbits)."""
    if nbits == 0:
        pos, buf, nbits = _refill(data, pos, buf, nbits)
        if nbits == 0:
            return ERR_EXHAUSTED, pos, buf, nbits
    bit = int(np.int64(buf & np.uint64(1)))  # int64 for numba (int() of a uint64 stays one)
    return bit, pos, buf >> np.uint64(1), nbits - 1


@inline_jit
def _get_omega(
    data: np.ndarray, pos: int, buf: np.uint64, nbits: int
) -> tuple[int, int, np.uint64, int]:
    """Read one Elias omega code; returns (value or a negative status, pos, buf, nbits)."""
    v = 1
    while True:
        bit, pos, buf, nbits = _get_bit(data, pos, buf, nbits)
        if bit < 0:
            return bit, pos, buf, nbits
        if bit == 0:
            return v, pos, buf, nbits
        if v >= 32:  # the next group would be longer than 32 bits
            return ERR_GAMMA_TOO_LONG, pos, buf, nbits
        value = 1
        for _ in range(v):
            bit, pos, buf, nbits = _get_bit(data, pos, buf, nbits)
            if bit < 0:
                return bit, pos, buf, nbits
            value = (value << 1) | bit
        v = value


@jit
def _omega_encode(values: np.ndarray, out: np.ndarray) -> int:
    """Elias omega codes of ``values`` (each in [1, 2**32)); returns the bytes written."""
    pos = 0
    buf = np.uint64(0)
    nbits = 0
    for i in range(values.shape[0]):
        pos, buf, nbits = _put_omega(out, pos, buf, nbits, int(values[i]))
    return _flush_bytes(out, pos, buf, nbits)


@jit
def _omega_decode(data: np.ndarray, out: np.ndarray) -> int:
    """Decode ``len(out)`` omega codes; returns the bits used or a negative status."""
    pos = 0
    buf = np.uint64(0)
    nbits = 0
    for i in range(out.shape[0]):
        v, pos, buf, nbits = _get_omega(data, pos, buf, nbits)
        if v < 0:
            return v
        out[i] = v
    return pos * 8 - nbits
