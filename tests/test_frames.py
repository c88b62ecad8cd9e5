"""Framed payloads (container version 2): an update of more frames than one, small frame
sizes so that the multi-frame logic runs in the default suite."""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedcodec
from fedcodec import RDQ, container
from fedcodec.codec import BUILTIN_CODECS, plan_frames
from fedcodec.tools.sample_updates import structured_matrix

FRAME = 4000


def update() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "w1": structured_matrix(60, 150, seed=1, zero_every=4),  # 9000: cut by rows
        "b1": (rng.laplace(size=60) * 1e-3).astype(np.float32),
        "w2": structured_matrix(30, 40, seed=2),
        "zero": np.zeros(500, np.float32),
        "w3": structured_matrix(5, 9000, seed=3),  # rows longer than a frame
    }


def nmse(x: np.ndarray, y: np.ndarray) -> float:
    x64 = x.astype(np.float64).reshape(-1)
    return float(np.sum((x64 - y.reshape(-1)) ** 2) / np.sum(x64 * x64))


def test_plan_frames_cuts_at_tensors_then_rows() -> None:
    tensors = ((60, 150), (1, 60), (30, 40), (1, 500), (5, 9000))
    n = sum(r * c for r, c in tensors)
    frames = plan_frames(tensors, n, FRAME)
    assert frames[0][0] == 0 and frames[-1][1] == n
    for (_, b, _), (c, _, _) in itertools.pairwise(frames):
        assert b == c  # contiguous
    for a, b, ts in frames:
        assert 0 < b - a <= FRAME and sum(r * c for r, c in ts) == b - a
    # w1 (9000) is cut into blocks of whole rows, the small tensors share frames
    assert [ts for _, _, ts in frames[:3]] == [((26, 150),), ((26, 150),), ((8, 150),)]
    assert ((1, 60), (30, 40), (1, 500)) in [ts for _, _, ts in frames]
    assert all(ts == ((1, 4000),) or ts[0][1] <= 4000 for _, _, ts in frames[4:])


@pytest.mark.parametrize("codec_id", sorted(BUILTIN_CODECS))
def test_every_codec_round_trips_in_frames(codec_id: str) -> None:
    codec = fedcodec.get_codec({"id": codec_id})
    u = update()
    payload = codec.encode(u, seed=9, frame_elements=FRAME)
    assert container.is_framed(payload)
    frames = container.unpack_frames(payload)
    assert len(frames) > 10
    x, layout = fedcodec.flatten(u)
    y = fedcodec.decode(payload, seed=9)
    assert y.shape == x.shape and np.isfinite(y).all()
    assert np.all(y[layout.edges[3] : layout.edges[4]] == 0.0)  # the all-zero tensor
    # the same bytes whatever the thread count; a list of frames decodes the same
    assert codec.encode(u, seed=9, frame_elements=FRAME, threads=1) == payload
    raw = split(payload)
    assert len(raw) == len(frames)
    np.testing.assert_array_equal(codec.decode(raw, seed=9, threads=1), y)


def split(payload: bytes) -> list[bytes]:
    """The frames of a framed payload as separate byte strings."""
    out, pos = [], 0
    data = memoryview(payload)
    while pos < len(data):
        _, size = container._read_frame(data[pos:], container.MAX_FRAMED_ELEMENTS)
        out.append(bytes(data[pos : pos + size]))
        pos += size
    return out


@pytest.mark.parametrize(
    "config",
    [
        {"nmse": 0.05},
        {"nmse": 0.05, "rounding": "dither"},
        {"step_rms": 0.7, "rounding": "stochastic"},
        {"nmse": 0.02, "rotate": True, "rounding": "dither"},
        {"nmse": 0.05, "coder": "ans"},
        {"lmbda": 0.01, "coder": "rleg"},
    ],
)
def test_rdq_frames_quantize_as_the_whole_update(config: dict) -> None:
    """One rate control for the whole update: with the same tensors, every frame's levels
    are the whole update's (same step, rounding, reconstruction and dither), so the error
    is the single payload's exactly and the rate mode's guarantee holds. With rotation each
    frame is rotated on its own (no rotated copy of the update): other values, the same
    guarantee."""
    x = structured_matrix(120, 100, seed=4, zero_every=3)
    codec = RDQ(**config)
    single = codec.encode(x, seed=3)
    framed = codec.encode(x, seed=3, frame_elements=12_000)  # one frame: the same tensors
    assert not container.is_framed(framed) and framed == single
    framed = codec.encode(x.reshape(-1), seed=3, frame_elements=2_000)
    flat_single = codec.encode(x.reshape(-1), seed=3)
    e_framed = nmse(x, fedcodec.decode(framed, seed=3))
    e_single = nmse(x, fedcodec.decode(flat_single, seed=3))
    if config.get("rotate"):
        assert e_framed == pytest.approx(e_single, rel=0.1)
    else:
        assert e_framed == pytest.approx(e_single, rel=1e-9)
    if "nmse" in config:
        assert e_framed <= config["nmse"]


def test_bits_per_param_holds_over_frames() -> None:
    x = structured_matrix(400, 500, seed=5, zero_every=4)
    payload = RDQ(bits_per_param=1.0).encode(x, frame_elements=40_000)
    assert len(container.unpack_frames(payload)) == 5
    assert abs(8 * len(payload) / x.size - 1.0) < 0.03


def forged(frame: bytes, offset: int, value: bytes) -> bytes:
    """``frame`` with bytes replaced at ``offset`` and its CRC32 made valid again."""
    data = bytearray(frame)
    data[offset : offset + len(value)] = value
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    return bytes(data)


def test_missing_duplicated_reordered_and_foreign_frames_are_refused() -> None:
    codec = RDQ(nmse=0.05)
    u = update()
    frames = split(codec.encode(u, frame_elements=FRAME))
    other = split(codec.encode({k: v * 1.5 for k, v in u.items()}, frame_elements=FRAME))
    cases = {
        "missing": frames[:3] + frames[4:],
        "duplicated": [*frames[:3], frames[2], *frames[3:]],
        "reordered": [frames[1], frames[0], *frames[2:]],
        "foreign": [*frames[:3], other[3], *frames[4:]],
        "truncated": frames[:-1],
        "extra": [*frames, frames[-1]],
    }
    for name, pieces in cases.items():
        with pytest.raises(fedcodec.DecodeError):
            codec.decode(pieces)
        with pytest.raises(fedcodec.DecodeError):
            fedcodec.decode(b"".join(pieces))
        assert name
    with pytest.raises(fedcodec.DecodeError, match="CRC32"):
        bad = bytearray(frames[2])
        bad[-10] ^= 1
        codec.decode([*frames[:2], bytes(bad), *frames[3:]])


def test_forged_headers_with_valid_checksums_are_refused() -> None:
    codec = RDQ(nmse=0.05)
    u = update()
    frames = split(codec.encode(u, frame_elements=FRAME))
    first = container._read_frame(memoryview(frames[0]), container.MAX_FRAMED_ELEMENTS)[0]
    # the update id is tied to the first frame's body: another body is another update
    body_at = len(frames[0]) - 4 - len(first.env.body)
    changed = forged(frames[0], body_at, bytes([frames[0][body_at] ^ 0xFF]))
    with pytest.raises(fedcodec.DecodeError):
        codec.decode([changed, *frames[1:]])
    # a count beyond what the caller allows is refused before anything is allocated
    x, _ = fedcodec.flatten(u)
    with pytest.raises(fedcodec.DecodeError, match="exceeds the bound"):
        codec.decode(frames, max_elements=x.size - 1)
    # another frame's decode parameters (a different step) in an otherwise valid frame
    params_at = frames[1].index(first.env.params[:5]) if first.env.params[:5] in frames[1] else -1
    if params_at > 0:
        step = struct.unpack("<f", frames[1][params_at + 1 : params_at + 5])[0]
        changed = forged(frames[1], params_at + 1, struct.pack("<f", step * 2))
        with pytest.raises(fedcodec.DecodeError):
            codec.decode([frames[0], changed, *frames[2:]])


def test_small_updates_stay_single_payloads() -> None:
    x = np.random.default_rng(0).laplace(size=1000).astype(np.float32)
    payload = RDQ().encode(x)
    assert not container.is_framed(payload) and payload[4] == container.FORMAT_VERSION
    with pytest.raises(ValueError, match="frame_elements"):
        RDQ().encode(x, frame_elements=0)
    with pytest.raises(ValueError, match="threads"):
        RDQ().encode(x, frame_elements=100, threads=0)


_FRAMES = None


def framed_payload() -> list[bytes]:
    global _FRAMES
    if _FRAMES is None:
        _FRAMES = split(RDQ(nmse=0.05).encode(update(), frame_elements=FRAME))
    return _FRAMES


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_forged_frames_raise_decode_error_or_decode(data: st.DataObject) -> None:
    """Any byte of any frame changed, its CRC32 made valid again: the decoder refuses
    it with DecodeError or decodes an update of the declared size, nothing else."""
    frames = list(framed_payload())
    i = data.draw(st.integers(0, len(frames) - 1))
    pos = data.draw(st.integers(4, len(frames[i]) - 5))
    value = data.draw(st.integers(0, 255))
    frames[i] = forged(frames[i], pos, bytes([value]))
    try:
        y = fedcodec.decode(frames, max_elements=1 << 20)
    except fedcodec.DecodeError:
        return
    assert y.size == sum(v.size for v in update().values())


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def test_frames_follow_docs_format_byte_for_byte() -> None:
    """A plain reading of docs/format.md's version-2 table, field by field."""
    import hashlib

    x = structured_matrix(60, 150, seed=1)
    frames = split(RDQ(nmse=0.05, rounding="dither").encode(x, seed=4, frame_elements=FRAME))
    starts = []
    for k, f in enumerate(frames):
        assert f[:4] == b"FEDC" and f[4] == 2 and f[5] == 3 and f[6:9] == b"rdq"
        assert f[9] == 2 and f[10] == 2  # float32, 2 dimensions
        pos = 11
        rows, pos = _varint(f, pos)
        cols, pos = _varint(f, pos)
        count, pos = _varint(f, pos)
        assert (rows, cols, count) == (60, 150, 9000)
        layout, uid, shared = struct.unpack("<IQI", f[pos : pos + 16])
        pos += 16
        size, pos = _varint(f, pos)
        total, pos = _varint(f, pos)
        index, pos = _varint(f, pos)
        start, pos = _varint(f, pos)
        length, pos = _varint(f, pos)
        assert (size, total, index) == (FRAME, len(frames), k) and 0 < length <= FRAME
        starts.append((start, length))
        plen, pos = _varint(f, pos)
        params = f[pos : pos + plen]
        pos += plen
        blen, pos = _varint(f, pos)
        body = f[pos : pos + blen]
        pos += blen
        assert pos + 4 == len(f)
        assert struct.unpack("<I", f[-4:])[0] == zlib.crc32(f[:-4])
        # shared: the codec id, then flags without coder bits, step, seed check (dither)
        assert shared == zlib.crc32(bytes([params[0] & ~0x18]) + params[1:9], zlib.crc32(b"rdq"))
        if k == 0:
            z = struct.pack("<IQII", shared, count, layout, zlib.crc32(body))
            assert uid == int.from_bytes(hashlib.blake2b(z, digest_size=8).digest(), "little")
    assert starts[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(starts))
    assert sum(n for _, n in starts) == 9000


@pytest.mark.parametrize("rounding", ["nearest", "dither"])
def test_chunked_passes_give_the_same_bytes_for_any_thread_count(
    monkeypatch: pytest.MonkeyPatch, rounding: str
) -> None:
    """The whole update's error passes run in fixed chunks on threads and are summed in
    order: the payload does not depend on the thread count."""
    from fedcodec import rate_measure  # the whole-message passes (rate_control's Solver)

    monkeypatch.setattr(rate_measure, "_PAR_CHUNK", 1500)
    x = structured_matrix(100, 120, seed=6, zero_every=5)
    codec = RDQ(nmse=0.03, rounding=rounding)
    payloads = {t: codec.encode(x, seed=2, frame_elements=FRAME, threads=t) for t in (1, 2, 3)}
    assert payloads[1] == payloads[2] == payloads[3]
    assert nmse(x, fedcodec.decode(payloads[2], seed=2, threads=2)) <= 0.03


def test_flower_records_carry_one_array_per_frame() -> None:
    pytest.importorskip("flwr", reason="pip install 'fedcodec[flower]'")
    from flwr.app import Array, ArrayRecord

    from fedcodec.flower import pack_payload, unpack_payload

    u = update()
    framed = RDQ(nmse=0.05).encode(u, seed=1, frame_elements=FRAME)
    record = pack_payload(framed)
    assert list(record.keys()) == [f"fedcodec-{i}" for i in range(len(split(framed)))]
    pieces = unpack_payload(record)
    assert isinstance(pieces, list) and b"".join(pieces) == framed
    np.testing.assert_array_equal(fedcodec.decode(pieces, seed=1), fedcodec.decode(framed, seed=1))
    single = RDQ(nmse=0.05).encode(u, seed=1)
    assert unpack_payload(pack_payload(single)) == single
    with pytest.raises(fedcodec.DecodeError):
        unpack_payload(ArrayRecord({"weights": Array(np.zeros(3, np.float32))}))
    shuffled = ArrayRecord({"fedcodec-1": record["fedcodec-1"], "fedcodec-0": record["fedcodec-0"]})
    with pytest.raises(fedcodec.DecodeError):
        unpack_payload(shuffled)


def test_frames_stream_one_at_a_time() -> None:
    codec = RDQ(nmse=0.05)
    u = update()
    x, layout = fedcodec.flatten(u)
    frames = list(codec.encode_frames(u, frame_elements=FRAME))
    assert b"".join(frames) == codec.encode(u, frame_elements=FRAME)
    seen: list[int] = []

    def arriving() -> Iterator[bytes]:
        for i, f in enumerate(frames):
            seen.append(i)
            yield f

    out = np.empty(x.size, np.float32)
    y = codec.decode_frames(arriving(), out=out, layout=layout)
    assert y is out and seen == list(range(len(frames)))
    np.testing.assert_array_equal(y, codec.decode(frames))
    for broken in (frames[:-1], [frames[0], *frames[2:]], [frames[1], frames[0], *frames[2:]]):
        with pytest.raises(fedcodec.DecodeError):
            codec.decode_frames(iter(broken))
    # a small update is one version-1 payload, and nothing may follow it
    small = np.ones(100, np.float32)
    (one,) = codec.encode_frames(small)
    np.testing.assert_array_equal(codec.decode_frames([one]), codec.decode(one))
    with pytest.raises(fedcodec.DecodeError):
        codec.decode_frames([one, one])
    with pytest.raises(fedcodec.DecodeError):
        codec.decode_frames([])


def test_rotated_frames_are_rotated_one_at_a_time() -> None:
    """With rotate=True each frame is rotated on its own as it is read: the rate target
    holds for the whole payload, the bytes do not depend on the thread count, and the
    wrong seed is refused."""
    x = structured_matrix(200, 150, seed=8, zero_every=4).reshape(-1)
    codec = RDQ(bits_per_param=2.0, rotate=True)
    payloads = [codec.encode(x, seed=5, frame_elements=7000, threads=t) for t in (1, 2)]
    assert payloads[0] == payloads[1]
    assert abs(8 * len(payloads[0]) / x.size - 2.0) < 0.04
    y = codec.decode_frames(split(payloads[0]), seed=5)
    assert nmse(x, y) < 0.1
    with pytest.raises(fedcodec.DecodeError):
        codec.decode(payloads[0], seed=6)
