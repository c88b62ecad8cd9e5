"""fedcodec codecs through numcodecs, in the style of numcodecs' own checkers."""

from __future__ import annotations

import json

import numpy as np
import pytest

numcodecs = pytest.importorskip("numcodecs", reason="pip install 'fedcodec[numcodecs]'")
from common import assert_error_bounded  # noqa: E402
from numcodecs.tests.common import check_config  # noqa: E402

import fedcodec  # noqa: E402
from fedcodec import numcodecs as fnc  # noqa: E402

CONFIGS = [
    {"id": "fedcodec.rdq", "bits_per_param": 3.0},
    {"id": "fedcodec.rdq", "bits_per_param": 2.0, "rounding": "dither", "rotate": True, "seed": 7},
    {"id": "fedcodec.identity"},
    {"id": "fedcodec.fp16"},
    {"id": "fedcodec.bf16"},
    {"id": "fedcodec.int8"},
    {"id": "fedcodec.topk", "fraction": 0.5},
    {"id": "fedcodec.qsgd", "num_levels": 16, "bucket_size": 64},
    {"id": "fedcodec.drive", "scale": "mse"},
    {"id": "fedcodec.eden", "bits": 4},
    {"id": "fedcodec.threelc"},
]
ARRAYS = [
    np.linspace(-1, 1, 1000, dtype=np.float32),
    np.random.default_rng(0).standard_normal((20, 30)).astype(np.float32),
    np.random.default_rng(1).laplace(size=(8, 16, 16)).astype(np.float64),
    np.random.default_rng(2).standard_normal(2000).astype(np.float16),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["id"] + str(len(c)))
def test_encode_decode_through_buffers(config: dict[str, object]) -> None:
    codec = numcodecs.get_codec(config)
    assert isinstance(codec, fnc.FedcodecCodec)
    for arr in ARRAYS:
        enc = codec.encode(arr)
        # the encoded buffer is fedcodec's own payload
        assert fedcodec.decode(enc, seed=config.get("seed", 0)).shape == arr.shape
        for buf in (enc, bytearray(enc), memoryview(enc), np.frombuffer(enc, np.uint8)):
            dec = codec.decode(buf)
            assert dec.shape == arr.shape and dec.dtype == arr.dtype
            out = np.empty_like(arr)
            assert codec.decode(buf, out=out) is out
            np.testing.assert_array_equal(out, dec)
        # within the fedcodec codec's own error bound (tests/common.py: error_bound)
        inner = {k: v for k, v in config.items() if k != "seed"}
        inner["id"] = str(inner["id"]).removeprefix("fedcodec.")
        assert_error_bounded(inner, arr, dec, enc, str(config))
        assert codec.decode(codec.encode(arr)).tobytes() == dec.tobytes()  # deterministic


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["id"] + str(len(c)))
def test_config_round_trip_and_repr(config: dict[str, object]) -> None:
    codec = numcodecs.get_codec(config)
    check_config(codec)
    cfg = codec.get_config()
    assert json.loads(json.dumps(cfg)) == cfg and cfg["id"] == config["id"]
    stmt = repr(codec)
    assert eval(stmt, vars(fnc)) == codec
    assert repr(eval(stmt, vars(fnc))) == stmt


def test_lossless_identity_and_errors() -> None:
    codec = numcodecs.get_codec({"id": "fedcodec.identity"})
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(codec.decode(codec.encode(x)), x)
    with pytest.raises(TypeError, match="float arrays"):
        codec.encode(np.arange(5))
    with pytest.raises(fedcodec.DecodeError):
        codec.decode(b"not a payload")
    with pytest.raises(ValueError, match="reshape"):  # numcodecs' ndarray_copy
        codec.decode(codec.encode(x), out=np.empty(5, np.float32))


def test_registered_through_the_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {e.name for e in entry_points(group="numcodecs.codecs")}
    assert {
        f"fedcodec.{cid}" for cid in ("rdq", "topk", "qsgd", "drive", "eden", "threelc")
    } <= names


def test_a_zarr_like_chunk_store() -> None:
    """Chunks of a history of updates, stored and read back as numcodecs would."""
    codec = numcodecs.get_codec({"id": "fedcodec.rdq", "bits_per_param": 2.0})
    history = np.random.default_rng(3).laplace(size=(8, 4096)).astype(np.float32) * 1e-3
    store = {i: codec.encode(np.ascontiguousarray(history[i])) for i in range(8)}
    back = np.stack([codec.decode(store[i]) for i in range(8)])
    assert sum(len(v) for v in store.values()) * 8 < history.size * 2.2
    assert np.mean((back - history) ** 2) / np.mean(history**2) < 0.1
