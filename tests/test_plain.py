"""identity, fp16, bf16, int8: the references every user tries first."""

from __future__ import annotations

import numpy as np
import pytest
from common import check_config, check_encode_decode, check_mapping_round_trip, check_repr

import fedcodec
from fedcodec import DecodeError
from fedcodec.bf16 import from_bf16_bits, to_bf16_bits
from fedcodec.tools.sample_updates import student_t

EXPECTED_BITS = {"identity": 32, "fp16": 16, "bf16": 16, "int8": 8}


@pytest.mark.parametrize("cid", list(EXPECTED_BITS))
def test_round_trip_and_exact_size(cid: str) -> None:
    codec = fedcodec.get_codec({"id": cid})
    x = student_t(5000, seed=1).reshape(50, 100)
    out = check_encode_decode(codec, x)
    payload = codec.encode(x)
    env = fedcodec.container.unpack(payload)
    assert len(env.body) * 8 == EXPECTED_BITS[cid] * x.size
    assert len(env.params) == (8 if cid == "int8" else 0)
    check_config(codec)
    check_repr(codec, f"{type(codec).__name__}()")
    check_mapping_round_trip(codec, {"a": x[:10], "b": x[10:]})
    if cid == "identity":
        np.testing.assert_array_equal(out, x)


def test_fp16_is_numpy_half() -> None:
    x = student_t(1000, seed=2)
    out = fedcodec.decode(fedcodec.FP16().encode(x))
    np.testing.assert_array_equal(out, x.astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="bf16"):
        fedcodec.FP16().encode(np.array([1e5], np.float32))


def ref_bf16(x: np.ndarray) -> np.ndarray:
    """Round to nearest even on the upper 16 bits, one value at a time."""
    out = []
    for v in x.astype(np.float32):
        u = int(np.array(v).view(np.uint32))
        low, high = u & 0xFFFF, u >> 16
        if low > 0x8000 or (low == 0x8000 and high & 1):
            high += 1
        out.append(np.array(high << 16, dtype=np.uint32).view(np.float32))
    return np.array(out, dtype=np.float32)


def test_bf16_rounds_to_nearest_even() -> None:
    # ties: 1 + 2**-8 is halfway between bf16 neighbours 1 and 1 + 2**-7
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, -2.5, 1e-30, 3e38, 0.0], np.float32)
    x = np.concatenate([x, student_t(500, seed=3)])
    out = np.empty_like(x)
    from_bf16_bits(to_bf16_bits(x), out)
    np.testing.assert_array_equal(out, ref_bf16(x))
    np.testing.assert_array_equal(fedcodec.decode(fedcodec.BF16().encode(x)), out)


def test_int8_error_is_half_a_step() -> None:
    x = student_t(10_000, seed=4)
    out = fedcodec.decode(fedcodec.Int8().encode(x))
    step = np.float32((float(x.max()) - float(x.min())) / 255)
    assert np.max(np.abs(out - x)) <= step / 2 * 1.001 + 1e-7
    const = np.full(7, 0.25, np.float32)
    np.testing.assert_array_equal(fedcodec.decode(fedcodec.Int8().encode(const)), const)


@pytest.mark.parametrize("cid", list(EXPECTED_BITS))
def test_wrong_body_length_is_a_decode_error(cid: str) -> None:
    from common import with_crc

    codec = fedcodec.get_codec({"id": cid})
    payload = codec.encode(np.ones(10, np.float32))
    env = fedcodec.container.unpack(payload)
    forged = fedcodec.container.pack(cid, env.dtype, env.shape, 0, env.params, bytes(env.body)[:-1])
    with pytest.raises(DecodeError):
        codec.decode(forged)
    with pytest.raises(DecodeError):
        codec.decode(with_crc(payload[:-4] + b"\x00" + payload[-4:]))
