"""The container: every defect is a DecodeError with a precise message."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from common import with_crc

from fedcodec import DecodeError, container


def make(**kw: object) -> bytes:
    args: dict[str, object] = {
        "codec_id": "rdq",
        "dtype": np.dtype(np.float32),
        "shape": (2, 3),
        "layout_fingerprint": 0,
        "params": b"\x01\x02",
        "body": b"hello",
    }
    args.update(kw)
    return container.pack(**args)  # type: ignore[arg-type]


def test_round_trip() -> None:
    env = container.unpack(make())
    assert env.codec_id == "rdq" and env.shape == (2, 3) and env.count == 6
    assert env.params == b"\x01\x02" and bytes(env.body) == b"hello"
    assert env.dtype == np.float32 and env.layout_fingerprint == 0


def test_scalar_shape() -> None:
    assert container.unpack(make(shape=())).count == 1


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda p: b"XXXX" + p[4:], "magic"),
        (lambda p: p[:-1], "CRC32"),
        (lambda p: p[:10], "CRC32"),
        (lambda p: p + b"\x00", "CRC32"),
        (lambda p: b"", "too short"),
        (lambda p: with_crc(p[:4] + b"\x09" + p[5:]), "version"),
        (lambda p: with_crc(p[:5] + b"\x00" + p[6:]), "codec id length"),
        (lambda p: with_crc(p[:9] + b"\x09" + p[10:]), "dtype"),
        (lambda p: with_crc(p[:-4] + b"\x00" + p[-4:]), "trailing"),
        (lambda p: with_crc(p[:-9]), "truncated"),
    ],
)
def test_defects_raise_decode_error(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DecodeError, match=message):
        container.unpack(mutate(make()))


def test_count_must_match_shape() -> None:
    p = bytearray(make())
    # shape (2, 3) is at bytes 11, 12; count at 13
    assert p[11:14] == b"\x02\x03\x06"
    p[13] = 7
    with pytest.raises(DecodeError, match="disagrees"):
        container.unpack(with_crc(bytes(p)))


def test_huge_element_count_is_refused_before_allocating() -> None:
    head = container.MAGIC + bytes([1, 3]) + b"rdq" + bytes([2, 1])
    huge = container.put_varint(1 << 40)
    p = head + huge + huge + struct.pack("<I", 0) + b"\x00\x00"
    with pytest.raises(DecodeError, match="exceeds"):
        container.unpack(with_crc(p + b"\x00\x00\x00\x00"))


def test_overlong_varint() -> None:
    head = container.MAGIC + bytes([1, 3]) + b"rdq" + bytes([2, 1])
    p = head + b"\xff" * 11 + b"\x00" * 8
    with pytest.raises(DecodeError):
        container.unpack(with_crc(p + b"\x00\x00\x00\x00"))


def test_non_bytes_payload() -> None:
    with pytest.raises(DecodeError, match="bytes"):
        container.unpack("FEDC")  # type: ignore[arg-type]


def test_decode_error_is_value_error() -> None:
    assert issubclass(DecodeError, ValueError)
