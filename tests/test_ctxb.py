"""RDQ's adaptive context coder in blocks (coder id 4): each block's levels cost what the
one-stream coder's (id 2) do, round trips across blocks and threads with the same bytes,
hostile bytes, the flag bit that carries the id, and the default's choice between the two."""

from __future__ import annotations

import numpy as np
import pytest
from common import count_refused_bodies, expect_decode_error, with_crc
from fedcodec.kernels import ctx as C
from fedcodec.kernels import ctxb as K
from fedcodec.kernels import quant as Q
from fedcodec.kernels import sctx as S
from test_rdq import structured

import fedcodec
from fedcodec import RDQ, container
from fedcodec.coders import blocks
from fedcodec.coders import ctxb as ctxb_coder
from fedcodec.coders import rleg as rleg_coder
from fedcodec.container import Reader
from fedcodec.errors import DecodeError

_NO_OUT = np.empty(0, np.uint8)
_NO_COUNTS = np.empty(0, np.int64)


def levels(rows: int, cols: int, seed: int, scale: float = 2.0) -> np.ndarray:
    """Levels of a structured update at step ``scale / 2`` times its RMS (mostly within
    +-3 at the default; the update itself is of order 1e-8)."""
    x = structured(rows, cols, seed=seed).reshape(-1).astype(np.float64)
    return np.rint(x / (np.sqrt(np.mean(x * x)) * scale / 2.0)).astype(np.int32)


def decode_levels(params: bytes, body: bytes, n: int, threads: int = 1) -> np.ndarray:
    q, _ = ctxb_coder.decode_levels(Reader(params, "p"), memoryview(body), n, threads)
    return q


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 1,000 elements (the format's 2**20 is a constant of the plan: encoder and
    decoder both read it), so that small updates hold many."""
    monkeypatch.setattr(S, "BLOCK_ELEMENTS", 1000)


@pytest.mark.parametrize("use_side", [0, 1])
def test_a_block_costs_what_the_one_stream_coder_spends_on_the_levels(use_side: int) -> None:
    """One tensor, one block: the same decisions on the same fresh probabilities as coder
    id 2's levels (which also spends a direct bit on the side flag and, with side
    information, the indices)."""
    q = levels(60, 90, seed=3)
    tensors = np.array([[60, 90]], np.int64)
    use = np.array([use_side], np.int64)
    one = np.zeros(3)
    C._ctx_encode(q, tensors, use, _NO_OUT, one, _NO_COUNTS)
    p = blocks.plan(tensors)
    side, _ = blocks.side_section(q, p, use)
    cost = np.zeros(1)
    K._block_encode(
        q, p.blocks[0], p.starts, tensors, side.use, side.totals, side.row_idx, side.col_part,
        p.row_off, p.col_off, _NO_OUT, cost, np.zeros(0, np.int64),
    )  # fmt: skip
    assert cost[0] == pytest.approx(one[1] - one[2] - 1.0, rel=1e-12)


@pytest.mark.usefixtures("small_blocks")
def test_round_trip_across_blocks_and_threads() -> None:
    q = np.concatenate([levels(50, 70, seed=1), levels(1, 300, seed=2)[:300], levels(9, 8, 5)])
    tensors = np.array([[50, 70], [1, 300], [9, 8]], np.int64)
    assert len(blocks.plan(tensors).blocks) == 4
    for use in ([1, 0, 1], [0, 0, 0], None):
        chosen = None if use is None else np.array(use, np.int64)
        params, body = ctxb_coder.encode(q, tensors, 1, chosen)
        assert ctxb_coder.encode(q, tensors, 3, chosen) == (params, body)
        for threads in (1, 3):
            np.testing.assert_array_equal(decode_levels(params, body, q.size, threads), q)


@pytest.mark.usefixtures("small_blocks")
def test_the_blocks_count_the_run_length_code_as_they_code() -> None:
    """Each block's piece of the run-length gamma code, counted by the coding kernel,
    joins to that code's exact length: zero rows and columns (not coded), blocks with no
    non-zero level, runs across blocks and tensors, a large level, side information or
    none."""
    q = np.concatenate([levels(50, 70, seed=1), levels(1, 300, seed=2)[:300], levels(9, 8, 5)])
    q[:1500] = 0  # the first block and a half: nothing
    q[2000:2070] = 0  # a zero row
    q[2500:3500:70] = 0  # part of a zero column
    q[-80:] = 0  # the last tensor's last rows
    q[2600] = 70_000  # past the unary magnitudes: an Exp-Golomb rest
    tensors = np.array([[50, 70], [1, 300], [9, 8]], np.int64)
    exact = len(rleg_coder.encode(q, 8.0 * q.size))
    for use in ([1, 0, 1], [0, 0, 0], None):
        chosen = None if use is None else np.array(use, np.int64)
        runs: list[np.ndarray] = []
        coded = ctxb_coder.encode(q, tensors, 2, chosen, None, runs)
        assert coded == ctxb_coder.encode(q, tensors, 1, chosen)  # counting changes nothing
        assert len(runs) == len(blocks.plan(tensors).blocks) == 4
        ends = np.cumsum(blocks.plan(tensors).sizes)
        assert runs[0].tolist() == [ends[0], 0, 0, 0]  # (whole rows: 1,050 elements)
        assert rleg_coder.joined_bytes(runs) == exact
        pieces = [rleg_coder.piece_runs(q[a:b]) for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        np.testing.assert_array_equal(runs, pieces)
    zeros = np.zeros_like(q)
    runs = []
    ctxb_coder.encode(zeros, tensors, 1, None, None, runs)
    assert rleg_coder.joined_bytes(runs) == len(rleg_coder.encode(zeros, 8.0))


@pytest.mark.usefixtures("small_blocks")
def test_a_short_size_hint_still_codes_every_block() -> None:
    q = levels(40, 100, seed=6, scale=0.05)  # large levels: many bits a level
    tensors = np.array([[40, 100]], np.int64)
    params, body = ctxb_coder.encode(q, tensors, 2, None, size_hint_bits=1.0)
    assert (params, body) == ctxb_coder.encode(q, tensors, 1)
    np.testing.assert_array_equal(decode_levels(params, body, q.size), q)


def test_truncated_extended_or_corrupted_bodies_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(S, "BLOCK_ELEMENTS", 800)
    q = levels(40, 60, seed=4)
    tensors = np.array([[40, 60]], np.int64)
    params, body = ctxb_coder.encode(q, tensors)
    refused = count_refused_bodies(lambda b: decode_levels(params, b, q.size, threads=2), body)
    assert refused > 30  # a range coder reads most flips as other levels


def test_the_default_writes_blocks_for_an_update_of_several() -> None:
    rng = np.random.default_rng(0)
    x = np.outer(rng.lognormal(0, 1, 1500), rng.lognormal(0, 1, 1500)) * rng.laplace(
        size=(1500, 1500)
    )
    x = x.astype(np.float32)  # 2.25M elements: three blocks
    payloads = {c: RDQ(bits_per_param=1.0, coder=c).encode(x) for c in ("ctx", "ctx-stream")}
    assert RDQ().decode_levels(payloads["ctx"]).coder == "ctx-blocks"
    assert RDQ().decode_levels(payloads["ctx-stream"]).coder == "ctx-stream"
    assert len(payloads["ctx"]) <= 1.01 * len(payloads["ctx-stream"])
    assert RDQ(bits_per_param=1.0).encode(x, threads=1) == payloads["ctx"]
    np.testing.assert_array_equal(
        RDQ().decode(payloads["ctx"], threads=1), RDQ().decode(payloads["ctx"], threads=2)
    )
    # an update of one block: one stream, as before
    small = RDQ(nmse=0.05).encode(structured(40, 100, seed=90))
    assert RDQ().decode_levels(small).coder == "ctx-stream"


def test_the_coder_id_takes_flag_bit_6() -> None:
    x = structured(40, 150, seed=5)
    payload = RDQ(step=1e-8, coder="ctx-blocks", levels="uniform").encode(x)
    env = container.unpack(payload)
    assert env.params[0] >> 3 & 3 == 0 and env.params[0] >> 6 == 1  # id 4 = 0b100
    for flags in (env.params[0] | 1 << 3, env.params[0] | 1 << 7, env.params[0] | 3 << 3):
        forged = container.pack(
            "rdq", env.dtype, env.shape, 0, bytes([flags]) + env.params[1:], bytes(env.body)
        )
        expect_decode_error(RDQ(), forged)
        with pytest.raises(DecodeError):
            RDQ().decode(forged)
    expect_decode_error(RDQ(), with_crc(payload[:-9] + b"\xff" + payload[-8:]))
    # frames share everything but the coder: its id's bits are left out of the check
    assert RDQ()._shared_params(env.params)[0] == env.params[0] & ~(3 << 3 | 1 << 6)


def test_levels_of_a_payload_of_id_4_through_decode_levels() -> None:
    x = structured(40, 150, seed=5)
    codec = RDQ(step=1e-8, levels="uniform", coder="ctx-blocks")
    lv = codec.decode_levels(codec.encode(x))
    assert lv.coder == "ctx-blocks" and lv.tensors is not None
    assert lv.tensors.tolist() == [[40, 150]]
    np.testing.assert_array_equal(fedcodec.decode(codec.encode(x)), codec.decode(codec.encode(x)))


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("mode", [Q.NEAREST, Q.STOCHASTIC, Q.DITHER])
def test_values_decoded_row_by_row_are_the_levels_dequantized(mode: int) -> None:
    """``decode`` dequantizes each row as it is decoded (no block's levels held): the same
    float32 numbers as the levels dequantized afterwards, element ``i`` at index ``i`` of
    the random stream, with zero rows (side information), large levels and four blocks."""
    q = np.concatenate(
        [levels(50, 70, seed=1, scale=0.5), levels(1, 300, seed=2)[:300], levels(9, 8, 5)]
    )
    q[:70] = 0  # a zero row
    q[500] = 40  # above the reconstruction table
    tensors = np.array([[50, 70], [1, 300], [9, 8]], np.int64)
    recon = np.array([0.0, 0.9, 1.95, 3.0])
    step, stream = 0.25, np.uint64(12345)
    expected = np.empty(q.size, np.float32)
    Q._dequantize(q, step, mode, recon, stream, expected)
    for use in ([1, 0, 1], [0, 0, 0]):
        params, body = ctxb_coder.encode(q, tensors, 1, np.array(use, np.int64))
        for threads in (1, 3):
            out = np.full(q.size, np.nan, np.float32)
            r = Reader(params, "p")
            ctxb_coder.decode(r, memoryview(body), out, mode, step, recon, stream, threads)
            np.testing.assert_array_equal(out, expected)
