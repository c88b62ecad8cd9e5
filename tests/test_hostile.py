"""Hostile payloads: whatever the bytes, decoding returns an array or raises DecodeError.

Nothing else may escape (no IndexError, no crash in a kernel, no hang, no huge
allocation). Mutations that keep the CRC valid reach the codec's own parsers and kernels.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from common import body_offset, expect_decode_error, with_crc
from hypothesis import given
from hypothesis import strategies as st

import fedcodec
from fedcodec import RDQ, DecodeError, container, kernels
from fedcodec.coders import ans as ans_coder
from fedcodec.tools.sample_updates import student_t

CONFIGS = {
    "ans": {"bits_per_param": 2.0},
    "ans-uniform": {"bits_per_param": 2.0, "levels": "uniform"},
    "rleg": {"nmse": 0.05, "coder": "rleg"},
    "dither-rotate": {"bits_per_param": 1.0, "rounding": "dither", "rotate": True},
    "ans-escapes": {"step": 1e-4},
    "ctx": {"step": 2e-4, "coder": "ctx", "_shape": (20, 30)},
    "ctx-dither": {"step": 1e-3, "coder": "ctx", "rounding": "dither", "_shape": (30, 20)},
    "ctx-static": {"step": 2e-4, "coder": "ctx-static", "_shape": (20, 30)},
    "ctx-blocks": {"step": 2e-4, "coder": "ctx-blocks", "_shape": (20, 30)},
    "ctx-wide": {"step": 2e-4, "coder": "ctx-wide", "_shape": (20, 30)},
    # >= 65,536 elements: four interleaved ANS streams, each with its word count
    "ans-4-segments": {"bits_per_param": 1.0, "_n": 70_000},
    "ans-4-segments-dither": {"step": 0.5, "rounding": "dither", "_n": 65_536},
}
SEED = 3


def payload_for(name: str) -> bytes:
    config = dict(CONFIGS[name])
    shape = config.pop("_shape", None)
    x = student_t(config.pop("_n", 600), seed=1)
    x[17] = 0.5  # an escaped level
    if shape is not None:  # a matrix with zero columns: the context coder's side information
        x = x.reshape(shape)
        x[:, ::4] = 0.0
    payload = RDQ(**config).encode(x, seed=SEED)
    if x.size >= 65_536:  # the forged payloads below must reach the 4-segment path
        assert ans_coder.num_segments(x.size) == 4
    return payload


PAYLOADS = {name: payload_for(name) for name in CONFIGS}


def mutated(payload: bytes, data: st.DataObject) -> bytes:
    """Flip, overwrite, insert or delete bytes from the codec parameters on, fix the CRC."""
    start = max(body_offset(payload) - 12, 0)  # reach into the codec parameters too
    raw = bytearray(payload[:-4])
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = data.draw(st.integers(start, len(raw) - 1))
        if kind == "flip":
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set":
            raw[pos] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            raw.insert(pos, data.draw(st.integers(0, 255)))
        elif len(raw) > start + 1:
            del raw[pos]
    return with_crc(bytes(raw) + b"\x00\x00\x00\x00")


@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    with pytest.raises(DecodeError):
        RDQ().decode(data)
    with pytest.raises(DecodeError):
        fedcodec.decode(data)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_truncation(name: str) -> None:
    payload = PAYLOADS[name]
    for cut in range(len(payload)):
        with pytest.raises(DecodeError):
            RDQ().decode(payload[:cut], seed=SEED)


@pytest.mark.parametrize("name", list(CONFIGS))
@given(data=st.data())
def test_bit_flips_fail_the_checksum(name: str, data: st.DataObject) -> None:
    payload = bytearray(PAYLOADS[name])
    pos = data.draw(st.integers(0, len(payload) - 1))
    bit = data.draw(st.integers(0, 7))
    payload[pos] ^= 1 << bit
    with pytest.raises(DecodeError):
        RDQ().decode(bytes(payload), seed=SEED)


@pytest.mark.parametrize("name", list(CONFIGS))
@given(data=st.data())
def test_mutations_behind_a_valid_checksum(name: str, data: st.DataObject) -> None:
    """Flip, overwrite, insert or delete bytes after the container header, fix the CRC."""
    expect_decode_error(RDQ(), mutated(PAYLOADS[name], data), seed=SEED)


@pytest.mark.parametrize("name", list(CONFIGS))
@given(body=st.binary(max_size=300))
def test_random_bodies_behind_a_valid_checksum(name: str, body: bytes) -> None:
    env = container.unpack(PAYLOADS[name])
    forged = container.pack("rdq", env.dtype, env.shape, 0, env.params, body)
    expect_decode_error(RDQ(), forged, seed=SEED)


@pytest.mark.parametrize("name", list(CONFIGS))
@given(params=st.binary(max_size=24))
def test_random_parameters_behind_a_valid_checksum(name: str, params: bytes) -> None:
    env = container.unpack(PAYLOADS[name])
    forged = container.pack("rdq", env.dtype, env.shape, 0, params, bytes(env.body))
    expect_decode_error(RDQ(), forged, seed=SEED)


def test_huge_element_count_is_refused() -> None:
    env = container.unpack(PAYLOADS["rleg"])
    with pytest.raises(ValueError, match="limited"):
        container.pack("rdq", env.dtype, (container.MAX_ELEMENTS + 1,), 0, env.params, b"")
    # forge the count by hand: the decoder refuses it before allocating anything
    head = container.MAGIC + bytes([1, 3]) + b"rdq" + bytes([2, 1])
    big = container.put_varint(container.MAX_ELEMENTS + 1)
    forged = with_crc(head + big + big + b"\x00" * 4 + b"\x00\x00" + b"\x00" * 4)
    with pytest.raises(DecodeError, match="exceeds"):
        RDQ().decode(forged)


def test_out_pins_the_size_before_decoding() -> None:
    # a valid 2**20-element all-zero payload is tiny; a caller expecting 600 elements
    # learns the mismatch before anything is allocated
    tiny = RDQ(coder="rleg").encode(np.zeros(1 << 20, np.float32))
    assert len(tiny) < 48  # 43: the container with its zero range, a step, an empty body
    with pytest.raises(DecodeError, match="shape"):
        RDQ().decode(tiny, out=np.empty(600, np.float32))


@given(st.binary(max_size=64), st.integers(0, 300))
def test_rleg_kernel_on_random_bytes(data: bytes, n: int) -> None:
    try:
        out = kernels.rleg_decode(data, n)
    except ValueError:
        return
    assert out.shape == (n,)
    assert kernels.rleg_encode(out) == data  # whatever decodes must be the canonical code


@given(st.binary(max_size=64), st.integers(0, 100), st.integers(0, 600))
def test_gamma_kernel_on_random_bytes(data: bytes, count: int, offset: int) -> None:
    try:
        values, end = kernels.gamma_decode(data, count, offset)
    except ValueError:
        return
    assert values.shape == (count,) and end <= 8 * len(data)
    assert (values >= 1).all()


@given(st.lists(st.integers(0, 2**32 - 1), max_size=40), st.integers(0, 200))
def test_ans_kernel_on_random_words(words: list[int], n: int) -> None:
    freq = np.array([2**23, 2**22, 2**21, 2**21 - 1, 1], np.uint32)
    try:
        out = kernels.ans_decode(np.array(words, np.uint32), n, freq)
    except ValueError:
        return
    assert out.shape == (n,) and out.min(initial=0) >= 0 and out.max(initial=0) < 5


# -- every other codec: the same attacks --------------------------------------------------
BASELINES = {
    "identity": fedcodec.get_codec({"id": "identity"}),
    "fp16": fedcodec.get_codec({"id": "fp16"}),
    "bf16": fedcodec.get_codec({"id": "bf16"}),
    "int8": fedcodec.get_codec({"id": "int8"}),
    "topk-gaps": fedcodec.get_codec({"id": "topk", "fraction": 0.05}),
    "topk-bitmap": fedcodec.get_codec({"id": "topk", "fraction": 0.5, "value_dtype": "float16"}),
    "qsgd": fedcodec.get_codec({"id": "qsgd", "num_levels": 8, "bucket_size": 64}),
    "drive": fedcodec.get_codec({"id": "drive"}),
    "eden": fedcodec.get_codec({"id": "eden", "bits": 3}),
    "threelc": fedcodec.get_codec({"id": "threelc"}),
}
BASELINE_PAYLOADS = {
    name: codec.encode(student_t(600, seed=2), seed=SEED) for name, codec in BASELINES.items()
}


@pytest.mark.parametrize("name", list(BASELINES))
def test_baselines_every_truncation(name: str) -> None:
    payload = BASELINE_PAYLOADS[name]
    for cut in range(len(payload)):
        with pytest.raises(DecodeError):
            BASELINES[name].decode(payload[:cut], seed=SEED)


@pytest.mark.parametrize("name", list(BASELINES))
@given(data=st.data())
def test_baselines_mutations_behind_a_valid_checksum(name: str, data: st.DataObject) -> None:
    expect_decode_error(BASELINES[name], mutated(BASELINE_PAYLOADS[name], data), seed=SEED)


@pytest.mark.parametrize("name", list(BASELINES))
@given(params=st.binary(max_size=16), body=st.binary(max_size=200))
def test_baselines_random_parts_behind_a_valid_checksum(
    name: str, params: bytes, body: bytes
) -> None:
    codec = BASELINES[name]
    env = container.unpack(BASELINE_PAYLOADS[name])
    for p, b in ((params, bytes(env.body)), (env.params, body), (params, body)):
        forged = container.pack(codec.codec_id, env.dtype, env.shape, 0, p, b)
        expect_decode_error(codec, forged, seed=SEED)


@pytest.mark.parametrize(
    "name", ["ans", "ctx", "ctx-dither", "ctx-static", "ctx-blocks", "ctx-wide"]
)
def test_a_forged_step_that_overflows_is_found(name: str) -> None:
    # at a step near float32's largest value the header proves nothing: the decode scans
    # its values, finds the levels' reconstructions beyond float32 and refuses them
    assert np.abs(RDQ().decode_levels(PAYLOADS[name], seed=SEED).levels).max() >= 2
    env = container.unpack(PAYLOADS[name])
    params = bytearray(env.params)
    params[1:5] = struct.pack("<f", 3e38)
    forged = container.pack("rdq", env.dtype, env.shape, 0, bytes(params), bytes(env.body))
    with pytest.raises(DecodeError, match="NaN or Inf"):
        RDQ().decode(forged, seed=SEED)


def test_the_scan_for_nan_runs_unless_the_header_proves_it(monkeypatch: pytest.MonkeyPatch) -> None:
    scanned: list[int] = []
    scan = fedcodec.codec.all_finite

    def counting(x: np.ndarray) -> bool:
        scanned.append(x.size)
        return scan(x)

    monkeypatch.setattr(fedcodec.codec, "all_finite", counting)
    for name in ("ans", "rleg", "ctx", "ctx-dither", "ctx-static", "ctx-blocks", "ctx-wide"):
        assert np.isfinite(RDQ().decode(PAYLOADS[name], seed=SEED)).all()
    assert scanned == []  # a small step, no rotation: every value finite by construction
    RDQ().decode(PAYLOADS["dither-rotate"], seed=SEED)  # a rotation proves nothing
    x = student_t(5_000, seed=2)
    framed = RDQ().encode(x, seed=SEED, frame_elements=2_000)
    RDQ().decode(framed, seed=SEED)  # frames: each has its own step
    fedcodec.Int8().decode(fedcodec.Int8().encode(x))  # codecs that prove nothing
    assert len(scanned) == 3
