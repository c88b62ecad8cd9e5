"""The self-contained, versioned payload every codec emits (layout in ``docs/format.md``).

::

    magic      4 bytes   b"FEDC"
    version    1 byte    FORMAT_VERSION
    id_len     1 byte    length of the codec id (1..32)
    codec_id   id_len    ASCII
    dtype      1 byte    dtype of the original update (1 float16, 2 float32, 3 float64);
                         bit 7 set: a zero-range list follows the layout fingerprint
    ndim       1 byte    0..32
    shape      ndim varints
    count      varint    element count (= product of shape), at most MAX_ELEMENTS
    layout     4 bytes   layout fingerprint (CRC32 of the mapping's layout; 0 for arrays)
    [zeros]    varint    only with dtype bit 7: the number of ranges, then for each a
                         varint gap (from the previous range's end) and a varint length
                         (>= 1): elements that decode to exactly 0 (all-zero tensors)
    params_len varint    length of the codec's decode parameters
    params     params_len
    body_len   varint    length of the body
    body       body_len
    crc32      4 bytes   CRC32 (zlib) of every byte before it

Integers are little-endian; varints are unsigned LEB128 of at most 10 bytes. Reported bits
are always ``8 * len(payload)``.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .errors import DecodeError

MAGIC = b"FEDC"
FORMAT_VERSION = 1
#: Largest element count a payload may declare (2**28 float32 values = 1 GiB decoded):
#: a payload of a few bytes may legitimately stand for a huge all-zero update, so the
#: decoder refuses counts above this bound instead of allocating them.
MAX_ELEMENTS = 1 << 28
MAX_NDIM = 32
MAX_ID_LEN = 32
#: Bit of the dtype byte that announces the zero-range list.
ZERO_RANGES_FLAG = 0x80

DTYPE_CODES: dict[np.dtype, int] = {
    np.dtype(np.float16): 1,
    np.dtype(np.float32): 2,
    np.dtype(np.float64): 3,
}
CODE_DTYPES: dict[int, np.dtype] = {v: k for k, v in DTYPE_CODES.items()}


@dataclass(frozen=True)
class Envelope:
    """The parsed container around a codec's parameters and body."""

    codec_id: str
    dtype: np.dtype
    shape: tuple[int, ...]
    count: int
    layout_fingerprint: int
    params: bytes
    body: memoryview
    #: (start, stop) element ranges that decode to exactly zero, ascending, disjoint
    zero_ranges: tuple[tuple[int, int], ...] = ()


def put_varint(value: int) -> bytes:
    """Unsigned LEB128."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Reader:
    """Bounds-checked cursor over a payload: every read past the end is a DecodeError."""

    def __init__(self, data: bytes | memoryview, what: str = "payload") -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.what = what

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, field: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(
                f"{self.what} truncated: {field} needs {n} bytes at offset {self.pos}, "
                f"{self.remaining()} left"
            )
        view = self.data[self.pos : self.pos + n]
        self.pos += n
        return view

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def unpack(self, fmt: str, field: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), field))

    def varint(self, field: str, maximum: int) -> int:
        value = 0
        for shift in range(0, 70, 7):
            byte = self.u8(field)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value > maximum:
                    raise DecodeError(f"{self.what}: {field} = {value} exceeds the bound {maximum}")
                return value
        raise DecodeError(f"{self.what}: {field} is a varint longer than 10 bytes")

    def finish(self) -> None:
        if self.remaining():
            raise DecodeError(f"{self.what}: {self.remaining()} trailing bytes")


def pack(
    codec_id: str,
    dtype: np.dtype,
    shape: tuple[int, ...],
    layout_fingerprint: int,
    params: bytes,
    body: bytes | bytearray | memoryview,
    zero_ranges: tuple[tuple[int, int], ...] = (),
) -> bytes:
    """Assemble a payload; ``zero_ranges`` are (start, stop) ranges, ascending and
    disjoint, that the decoder sets to exactly zero."""
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count > MAX_ELEMENTS:
        raise ValueError(f"updates are limited to {MAX_ELEMENTS} elements, got {count}")
    if len(shape) > MAX_NDIM:
        raise ValueError(f"at most {MAX_NDIM} dimensions")
    cid = codec_id.encode("ascii")
    zeros = _zero_list(zero_ranges, count)
    dtype_byte = DTYPE_CODES[np.dtype(dtype)] | (ZERO_RANGES_FLAG if zeros else 0)
    parts = [
        MAGIC,
        bytes([FORMAT_VERSION, len(cid)]),
        cid,
        bytes([dtype_byte, len(shape)]),
        *(put_varint(d) for d in shape),
        put_varint(count),
        struct.pack("<I", layout_fingerprint & 0xFFFFFFFF),
        zeros,
        put_varint(len(params)),
        params,
        put_varint(len(body)),
    ]
    head = b"".join(parts)
    crc = zlib.crc32(body, zlib.crc32(head))
    return b"".join([head, bytes(body), struct.pack("<I", crc)])


def envelope_bytes(
    codec_id: str,
    dtype: np.dtype,
    shape: tuple[int, ...],
    layout_fingerprint: int,
    params_len: int,
    body_len: int,
    zero_ranges: tuple[tuple[int, int], ...] = (),
) -> int:
    """The bytes :func:`pack` adds around ``params_len`` bytes of parameters and
    ``body_len`` bytes of body (exactly: ``len(pack(...)) - params_len - body_len``)."""
    empty = pack(codec_id, dtype, shape, layout_fingerprint, b"", b"", zero_ranges)
    return len(empty) - 2 + len(put_varint(params_len)) + len(put_varint(body_len))


def _read_head(r: Reader, max_count: int) -> tuple[str, np.dtype, bool, tuple[int, ...], int]:
    """The fields every payload and frame starts with after its version: codec id, dtype
    (and whether a zero-range list follows), shape and element count (at most
    ``max_count``, refused before anything is allocated)."""
    id_len = r.u8("codec id length")
    if not 1 <= id_len <= MAX_ID_LEN:
        raise DecodeError(f"codec id length {id_len} is out of range")
    try:
        codec_id = bytes(r.take(id_len, "codec id")).decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("codec id is not ASCII") from None
    dtype_code = r.u8("dtype")
    has_zeros = bool(dtype_code & ZERO_RANGES_FLAG)
    dtype_code &= ~ZERO_RANGES_FLAG
    if dtype_code not in CODE_DTYPES:
        raise DecodeError(f"unknown dtype code {dtype_code}")
    ndim = r.u8("ndim")
    if ndim > MAX_NDIM:
        raise DecodeError(f"ndim {ndim} exceeds {MAX_NDIM}")
    shape = tuple(r.varint("shape", max_count) for _ in range(ndim))
    count = r.varint("element count", max_count)
    expected = 1
    for d in shape:
        expected *= d
    if expected != count:
        raise DecodeError(f"element count {count} disagrees with shape {shape}")
    return codec_id, CODE_DTYPES[dtype_code], has_zeros, shape, count


def _read_zero_ranges(r: Reader, count: int) -> tuple[tuple[int, int], ...]:
    """A zero-range list over ``count`` elements (ascending, disjoint, non-empty)."""
    # every range takes at least two bytes, so the count is bounded by the payload
    num = r.varint("zero-range count", r.remaining() // 2)
    if num == 0:
        raise DecodeError("the zero-range flag is set but the list is empty")
    ranges: list[tuple[int, int]] = []
    end = 0
    for _ in range(num):
        start = end + r.varint("zero-range gap", count - end)
        stop = start + r.varint("zero-range length", count - start)
        if stop == start:
            raise DecodeError("a zero range is empty")
        ranges.append((start, stop))
        end = stop
    return tuple(ranges)


def unpack(payload: bytes | bytearray | memoryview) -> Envelope:
    """Parse and verify a payload; any defect raises :class:`DecodeError`."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise DecodeError(f"a payload must be bytes, got {type(payload).__name__}")
    data = memoryview(payload).cast("B")
    if len(data) < len(MAGIC) + 4:
        raise DecodeError(f"payload of {len(data)} bytes is too short to be a fedcodec payload")
    if bytes(data[:4]) != MAGIC:
        raise DecodeError(f"bad magic {bytes(data[:4])!r}: not a fedcodec payload")
    (stored_crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != stored_crc:
        raise DecodeError("CRC32 mismatch: the payload is corrupted or truncated")
    r = Reader(data[:-4])
    r.take(4, "magic")
    version = r.u8("version")
    if version != FORMAT_VERSION:
        raise DecodeError(
            f"format version {version} is not supported (this fedcodec reads "
            f"{FORMAT_VERSION}, and {FRAMED_VERSION} for a framed payload)"
        )
    codec_id, dtype, has_zeros, shape, count = _read_head(r, MAX_ELEMENTS)
    (fingerprint,) = r.unpack("<I", "layout fingerprint")
    zero_ranges = _read_zero_ranges(r, count) if has_zeros else ()
    params = bytes(r.take(r.varint("params length", len(data)), "codec parameters"))
    body = r.take(r.varint("body length", len(data)), "body")
    r.finish()
    return Envelope(codec_id, dtype, shape, count, fingerprint, params, body, zero_ranges)


# -- version 2: an update as a sequence of frames --------------------------------------------
#: Version of a framed payload (an update of more than one frame).
FRAMED_VERSION = 2
#: Default frame size in elements (64 MiB of float32 per frame).
FRAME_ELEMENTS = 1 << 24
#: Largest element count a framed update may declare unless the caller allows more
#: (2**32 float32 values = 16 GiB decoded).
MAX_FRAMED_ELEMENTS = 1 << 32


@dataclass(frozen=True)
class Frame:
    """One parsed frame of a framed payload (``docs/format.md``, version 2)."""

    env: Envelope  # count: the whole update's; zero_ranges: relative to ``start``
    update_id: int
    shared: int  # CRC32 of the decode parameters every frame shares
    frame_elements: int
    frame_count: int
    index: int
    start: int
    length: int


def pack_frame(
    codec_id: str,
    dtype: np.dtype,
    shape: tuple[int, ...],
    layout_fingerprint: int,
    update_id: int,
    shared: int,
    frame_elements: int,
    frame_count: int,
    index: int,
    start: int,
    length: int,
    params: bytes,
    body: bytes | bytearray | memoryview,
    zero_ranges: tuple[tuple[int, int], ...] = (),
) -> bytes:
    """One frame of a framed payload; ``zero_ranges`` relative to the frame's start."""
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    cid = codec_id.encode("ascii")
    zeros = _zero_list(zero_ranges, length)
    dtype_byte = DTYPE_CODES[np.dtype(dtype)] | (ZERO_RANGES_FLAG if zeros else 0)
    head = b"".join(
        [
            MAGIC,
            bytes([FRAMED_VERSION, len(cid)]),
            cid,
            bytes([dtype_byte, len(shape)]),
            *(put_varint(d) for d in shape),
            put_varint(count),
            struct.pack("<IQI", layout_fingerprint & 0xFFFFFFFF, update_id, shared),
            put_varint(frame_elements),
            put_varint(frame_count),
            put_varint(index),
            put_varint(start),
            put_varint(length),
            zeros,
            put_varint(len(params)),
            params,
            put_varint(len(body)),
        ]
    )
    crc = zlib.crc32(body, zlib.crc32(head))
    return b"".join([head, bytes(body), struct.pack("<I", crc)])


def _zero_list(zero_ranges: tuple[tuple[int, int], ...], count: int) -> bytes:
    if not zero_ranges:
        return b""
    pieces = [put_varint(len(zero_ranges))]
    end = 0
    for start, stop in zero_ranges:
        if not end <= start < stop <= count:
            raise ValueError(f"zero ranges must be ascending and disjoint, got {zero_ranges}")
        pieces += [put_varint(start - end), put_varint(stop - start)]
        end = stop
    return b"".join(pieces)


def is_framed(payload: object) -> bool:
    """Whether ``payload`` is a framed payload (version 2) or a list of frames."""
    if isinstance(payload, (list, tuple)):
        return True
    if isinstance(payload, (bytes, bytearray, memoryview)):
        data = memoryview(payload).cast("B")
        return len(data) > 4 and bytes(data[:4]) == MAGIC and data[4] == FRAMED_VERSION
    return False


def _read_frame(data: memoryview, max_elements: int) -> tuple[Frame, int]:
    """Parse the frame at the start of ``data``; returns it and its length in bytes."""
    r = Reader(data, "frame")
    if bytes(r.take(4, "magic")) != MAGIC:
        raise DecodeError("bad magic: not a fedcodec frame")
    version = r.u8("version")
    if version != FRAMED_VERSION:
        raise DecodeError(f"frame version {version}: a framed payload holds version-2 frames")
    # the count is refused above max_elements before anything is allocated
    codec_id, dtype, has_zeros, shape, count = _read_head(r, max_elements)
    fingerprint, update_id, shared = r.unpack("<IQI", "frame identity")
    frame_elements = r.varint("frame size", MAX_ELEMENTS)
    if frame_elements < 1:
        raise DecodeError("frame size 0")
    frame_count = r.varint("frame count", max(count, 1))
    index = r.varint("frame index", max(frame_count - 1, 0))
    start = r.varint("frame start", count)
    length = r.varint("frame length", min(frame_elements, count - start))
    if length < 1:
        raise DecodeError("a frame with no elements")
    zero_ranges = _read_zero_ranges(r, length) if has_zeros else ()
    params = bytes(r.take(r.varint("params length", len(data)), "codec parameters"))
    body = r.take(r.varint("body length", len(data)), "body")
    size = r.pos + 4
    (stored_crc,) = struct.unpack("<I", r.take(4, "CRC32"))
    if zlib.crc32(data[: size - 4]) != stored_crc:
        raise DecodeError(f"CRC32 mismatch in frame {index}: corrupted or truncated")
    env = Envelope(codec_id, dtype, shape, count, fingerprint, params, body, zero_ranges)
    frame = Frame(env, update_id, shared, frame_elements, frame_count, index, start, length)
    return frame, size


class FrameChecker:
    """Checks frames one at a time as they arrive (streaming decode): each must be the
    next of the first frame's update. :meth:`finish` checks that none is missing."""

    def __init__(self) -> None:
        self.first: Frame | None = None
        self.next_index = 0
        self.next_start = 0

    def feed(self, f: Frame) -> None:
        if self.first is None:
            if update_id_of(f) != f.update_id or f.index != 0:
                raise DecodeError(
                    "the first frame is not frame 0 of its update (missing or reordered)"
                )
            self.first = f
        first = self.first
        e, e0 = f.env, first.env
        same = (
            e.codec_id == e0.codec_id
            and e.dtype == e0.dtype
            and e.shape == e0.shape
            and e.count == e0.count
            and e.layout_fingerprint == e0.layout_fingerprint
            and f.update_id == first.update_id
            and f.shared == first.shared
            and f.frame_elements == first.frame_elements
            and f.frame_count == first.frame_count
        )
        if not same:
            raise DecodeError(f"frame {f.index} belongs to another update")
        if f.index != self.next_index:
            raise DecodeError(
                f"frame {f.index} where frame {self.next_index} belongs (missing or reordered)"
            )
        if self.next_index >= first.frame_count:
            raise DecodeError(f"more than the {first.frame_count} frames announced")
        if f.start != self.next_start:
            raise DecodeError(f"frame {f.index} starts at {f.start}, not at {self.next_start}")
        self.next_index += 1
        self.next_start += f.length

    def finish(self) -> None:
        if self.first is None:
            raise DecodeError("no frames")
        if self.next_index != self.first.frame_count:
            raise DecodeError(f"{self.next_index} frames of the {self.first.frame_count} announced")
        if self.next_start != self.first.env.count:
            raise DecodeError(
                f"the frames cover {self.next_start} of the {self.first.env.count} elements"
            )


def iter_frames(
    pieces: Iterable[bytes | bytearray | memoryview], max_elements: int = MAX_FRAMED_ELEMENTS
) -> Iterator[Frame]:
    """Parse frames from byte strings (each one frame or several concatenated), checking
    each as it comes (:class:`FrameChecker`); the last check runs after the last frame."""
    checker = FrameChecker()
    for p in pieces:
        if not isinstance(p, (bytes, bytearray, memoryview)):
            raise DecodeError(f"a frame must be bytes, got {type(p).__name__}")
        data = memoryview(p).cast("B")
        pos = 0
        while pos < len(data):
            frame, size = _read_frame(data[pos:], max_elements)
            checker.feed(frame)
            yield frame
            pos += size
    checker.finish()


def unpack_frames(
    payload: bytes | bytearray | memoryview | list | tuple, max_elements: int = MAX_FRAMED_ELEMENTS
) -> list[Frame]:
    """Parse and check a framed payload (the frames concatenated, or a list of frames):
    every frame verified, in order, all of one update, together covering it exactly. Any
    defect (a missing, duplicated, reordered or foreign frame, a forged header) raises
    :class:`DecodeError`; a count above ``max_elements`` is refused before allocation."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return list(iter_frames([payload], max_elements))
    if not isinstance(payload, (list, tuple)):
        raise DecodeError(f"a payload must be bytes, got {type(payload).__name__}")
    return list(iter_frames(payload, max_elements))


def update_id(
    shared: int, count: int, layout_fingerprint: int, first_body: bytes | memoryview
) -> int:
    """The update id every frame carries: derived from the shared decode parameters, the
    element count, the layout and the first frame's body (reproducible for one encoding)."""
    z = struct.pack("<IQII", shared, count, layout_fingerprint & 0xFFFFFFFF, zlib.crc32(first_body))
    return int.from_bytes(hashlib.blake2b(z, digest_size=8).digest(), "little")


def update_id_of(first: Frame) -> int:
    e = first.env
    return update_id(first.shared, e.count, e.layout_fingerprint, e.body)


def split_frames(payload: bytes | bytearray | memoryview) -> list[bytes]:
    """The frames of a framed payload, each as its own bytes (for a transport that carries
    them one by one); a version-1 payload is one piece. Frames are checked one by one
    (their CRC32); :func:`unpack_frames` checks that they make one update."""
    data = memoryview(payload).cast("B")
    if not is_framed(data):
        return [bytes(data)]
    out, pos = [], 0
    while pos < len(data):
        _, size = _read_frame(data[pos:], MAX_FRAMED_ELEMENTS)
        out.append(bytes(data[pos : pos + size]))
        pos += size
    return out
