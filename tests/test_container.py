"""The container: every defect is a DecodeError with a precise message."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from common import with_crc
from hypothesis import given
from hypothesis import strategies as st

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


# -- zero ranges ----------------------------------------------------------------------------
def test_zero_ranges_round_trip_and_cost_nothing_when_absent() -> None:
    ranges = ((0, 3), (10, 20), (99, 100))
    data = container.pack("identity", np.dtype(np.float32), (100,), 0, b"", b"x", ranges)
    assert container.unpack(data).zero_ranges == ranges
    plain = container.pack("identity", np.dtype(np.float32), (100,), 0, b"", b"x")
    assert container.unpack(plain).zero_ranges == ()
    assert len(data) - len(plain) == 1 + 2 * len(ranges)  # count, then gap and length each
    with pytest.raises(ValueError, match="ascending"):
        container.pack("identity", np.dtype(np.float32), (100,), 0, b"", b"", ((5, 9), (8, 12)))


def zero_range_payload(section: bytes, count: int = 100) -> bytes:
    """A payload whose zero-range section is ``section`` (the dtype byte's flag set)."""
    head = b"FEDC\x01\x08identity" + bytes([2 | container.ZERO_RANGES_FLAG, 1])
    varint = container.put_varint(count)
    body = np.ones(count, "<f4").tobytes()
    tail = b"\x00" + container.put_varint(len(body)) + body
    return with_crc(head + varint + varint + b"\x00" * 4 + section + tail + b"\x00" * 4)


@pytest.mark.parametrize(
    "section, message",
    [
        (b"\x00", "empty"),  # the flag with no range
        (b"\x01\x05\x00", "empty"),  # a range of length 0
        (b"\x01\x05\x60", "exceeds"),  # 5 + 96 > 100
        (b"\x01\x65\x01", "exceeds"),  # a gap past the end
        (b"\x02\x00\x05\x00\x00", "empty"),
        (b"\x7f\x00\x01", "exceeds"),  # more ranges than the payload could hold
    ],
)
def test_forged_zero_ranges_raise_decode_error(section: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        container.unpack(zero_range_payload(section))


@given(st.binary(max_size=12))
def test_random_zero_range_sections(section: bytes) -> None:
    import fedcodec

    try:
        out = fedcodec.decode(zero_range_payload(section))
    except DecodeError:
        return
    env = container.unpack(zero_range_payload(section))
    assert out.shape == (100,)
    zeroed = np.zeros(100, bool)
    for start, stop in env.zero_ranges:
        zeroed[start:stop] = True
    np.testing.assert_array_equal(out, np.where(zeroed, 0.0, 1.0).astype(np.float32))


def test_the_decoder_zeroes_the_ranges() -> None:
    import fedcodec

    out = fedcodec.decode(zero_range_payload(b"\x02\x00\x03\x05\x02"))
    np.testing.assert_array_equal(np.flatnonzero(out == 0), [0, 1, 2, 8, 9])
