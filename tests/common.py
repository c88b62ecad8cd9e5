"""Shared checkers, in the spirit of numcodecs' ``tests/common.py``: each codec's test
file is a short spec that calls these."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

import fedcodec
from fedcodec import DecodeError
from fedcodec.container import unpack

FIXTURES = Path(__file__).parent / "fixtures"


def check_encode_decode(
    codec: fedcodec.Codec, x: np.ndarray, *, seed: int | None = 0
) -> np.ndarray:
    """Round trip an array: shape and dtype kept, bits = 8·len(payload), error bounded."""
    payload = codec.encode(x, seed=seed)
    assert isinstance(payload, bytes)
    out = codec.decode(payload, seed=seed)
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert np.all(np.isfinite(out))
    m = fedcodec.measure(codec, x, seed=seed)
    assert m["bits"] == 8 * len(codec.encode(x, seed=seed)) or codec_is_random(codec, seed)
    # decoding into a caller's buffer gives the same values
    buf = np.empty(x.shape, dtype=np.float32)
    codec.decode(payload, seed=seed, out=buf)
    np.testing.assert_array_equal(buf, out.astype(np.float32))
    return out


def codec_is_random(codec: fedcodec.Codec, seed: int | None) -> bool:
    return seed is None and getattr(codec, "rounding", None) == "stochastic"


def check_mapping_round_trip(
    codec: fedcodec.Codec, update: dict[str, np.ndarray], seed: int = 0
) -> None:
    payload = codec.encode(update, seed=seed)
    _, layout = fedcodec.flatten(update)
    flat = codec.decode(payload, seed=seed, layout=layout)
    restored = fedcodec.unflatten(flat, layout)
    assert list(restored) == list(update)
    for name, value in update.items():
        assert restored[name].shape == value.shape and restored[name].dtype == value.dtype
    other = dict(update)
    first = next(iter(other))
    other[first + "_renamed"] = other.pop(first)
    _, wrong = fedcodec.flatten(other)
    try:
        codec.decode(payload, seed=seed, layout=wrong)
    except DecodeError as exc:
        assert "layout" in str(exc)
    else:
        raise AssertionError("decoding against another layout must raise DecodeError")


def check_torch_round_trip(codec: fedcodec.Codec, x: np.ndarray, seed: int = 0) -> None:
    import torch

    t = torch.from_numpy(x.copy())
    payload = codec.encode(t, seed=seed)
    assert payload == codec.encode(x, seed=seed)


def check_config(codec: fedcodec.Codec) -> None:
    config = codec.get_config()
    text = json.dumps(config)
    again = fedcodec.get_codec(json.loads(text))
    assert again == codec
    assert again.get_config() == config
    assert type(codec).from_config(config) == codec


def check_repr(codec: fedcodec.Codec, expected: str) -> None:
    assert repr(codec) == expected


def check_backwards_compatibility(
    name: str, codec: fedcodec.Codec, x: np.ndarray, seed: int, *, exact_encode: bool
) -> None:
    """Decode the stored payload and compare with the stored decoded values (a format
    change fails). With ``exact_encode`` (configurations without a rate search, whose
    bitstream is fully determined), re-encoding must reproduce the payload byte for byte."""
    payload = (FIXTURES / f"{name}.bin").read_bytes()
    expected = np.load(FIXTURES / f"{name}.decoded.npy")
    stored_input = np.load(FIXTURES / f"{name}.input.npy")
    np.testing.assert_array_equal(stored_input, x)
    np.testing.assert_array_equal(codec.decode(payload, seed=seed), expected)
    np.testing.assert_array_equal(fedcodec.decode(payload, seed=seed), expected)
    again = codec.encode(x, seed=seed)
    if exact_encode:
        assert again == payload, f"{name}: the bitstream changed"
    else:  # an improved rate search may choose other parameters, never worse ones
        err_old = float(np.sum((expected.astype(np.float64) - x) ** 2))
        err_new = float(np.sum((codec.decode(again, seed=seed).astype(np.float64) - x) ** 2))
        assert len(again) * max(err_new, 1e-30) <= 1.1 * len(payload) * max(err_old, 1e-30)


def with_crc(data: bytes) -> bytes:
    """Replace the trailing CRC so that a mutated payload passes the checksum."""
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def body_offset(payload: bytes) -> int:
    env = unpack(payload)
    return len(payload) - 4 - len(env.body)


def expect_decode_error(codec: fedcodec.Codec, data: bytes, seed: Any = 0) -> None:
    """Decoding hostile bytes may only succeed or raise DecodeError; nothing else."""
    try:
        out = codec.decode(data, seed=seed)
    except DecodeError:
        return
    assert isinstance(out, np.ndarray)
