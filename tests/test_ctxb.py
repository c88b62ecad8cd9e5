"""RDQ's adaptive context coder in blocks (coder id 4, and id 5: the same decisions on a
64-bit range): each block's levels cost what the one-stream coder's (id 2) do, round trips
across blocks and threads with the same bytes, hostile bytes, the flag bits that carry the
ids, and the default's choice between the coders."""

from __future__ import annotations

import numpy as np
import pytest
from common import count_refused_bodies, expect_decode_error, with_crc
from fedcodec.kernels import ctx as C
from fedcodec.kernels import ctxb as K
from fedcodec.kernels import ctxw as W
from fedcodec.kernels import quant as Q
from fedcodec.kernels import sctx as S
from test_rdq import structured

import fedcodec
from fedcodec import RDQ, container
from fedcodec.coders import blocks
from fedcodec.coders import ctx as ctx_coder
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


def decode_levels(
    params: bytes, body: bytes, n: int, threads: int = 1, wide: bool = False
) -> np.ndarray:
    q, _ = ctxb_coder.decode_levels(Reader(params, "p"), memoryview(body), n, threads, wide)
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
        p.row_off, p.col_off, _NO_OUT, cost, np.zeros(0, np.int64), False,
    )  # fmt: skip
    assert cost[0] == pytest.approx(one[1] - one[2] - 1.0, rel=1e-12)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("wide", [False, True])
def test_round_trip_across_blocks_and_threads(wide: bool) -> None:
    q = np.concatenate([levels(50, 70, seed=1), levels(1, 300, seed=2)[:300], levels(9, 8, 5)])
    q[100] = 1 << 30  # the largest level: the longest Exp-Golomb rest
    q[101] = -17  # past the unary magnitude: an Exp-Golomb rest
    tensors = np.array([[50, 70], [1, 300], [9, 8]], np.int64)
    assert len(blocks.plan(tensors).blocks) == 4
    for use in ([1, 0, 1], [0, 0, 0], None):
        chosen = None if use is None else np.array(use, np.int64)
        params, body = ctxb_coder.encode(q, tensors, 1, chosen, wide=wide)
        assert ctxb_coder.encode(q, tensors, 3, chosen, wide=wide) == (params, body)
        for threads in (1, 3):
            np.testing.assert_array_equal(decode_levels(params, body, q.size, threads, wide), q)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("wide", [False, True])
def test_the_blocks_count_the_run_length_code_as_they_code(wide: bool) -> None:
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
        coded = ctxb_coder.encode(q, tensors, 2, chosen, None, runs, wide)
        # counting changes nothing
        assert coded == ctxb_coder.encode(q, tensors, 1, chosen, wide=wide)
        assert len(runs) == len(blocks.plan(tensors).blocks) == 4
        ends = np.cumsum(blocks.plan(tensors).sizes)
        assert runs[0].tolist() == [ends[0], 0, 0, 0]  # (whole rows: 1,050 elements)
        assert rleg_coder.joined_bytes(runs) == exact
        pieces = [rleg_coder.piece_runs(q[a:b]) for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        np.testing.assert_array_equal(runs, pieces)
    zeros = np.zeros_like(q)
    runs = []
    ctxb_coder.encode(zeros, tensors, 1, None, None, runs, wide)
    assert rleg_coder.joined_bytes(runs) == len(rleg_coder.encode(zeros, 8.0))


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("wide", [False, True])
def test_a_short_size_hint_still_codes_every_block(wide: bool) -> None:
    q = levels(40, 100, seed=6, scale=0.05)  # large levels: many bits a level
    tensors = np.array([[40, 100]], np.int64)
    params, body = ctxb_coder.encode(q, tensors, 2, None, size_hint_bits=1.0, wide=wide)
    assert (params, body) == ctxb_coder.encode(q, tensors, 1, wide=wide)
    np.testing.assert_array_equal(decode_levels(params, body, q.size, 1, wide), q)


@pytest.mark.parametrize("wide", [False, True])
def test_truncated_extended_or_corrupted_bodies_are_refused(
    monkeypatch: pytest.MonkeyPatch, wide: bool
) -> None:
    monkeypatch.setattr(S, "BLOCK_ELEMENTS", 800)
    q = levels(40, 60, seed=4)
    tensors = np.array([[40, 60]], np.int64)
    params, body = ctxb_coder.encode(q, tensors, wide=wide)
    refused = count_refused_bodies(lambda b: decode_levels(params, b, q.size, 2, wide), body)
    assert refused > 30  # a range coder reads most flips as other levels


def test_the_default_writes_blocks_for_an_update_of_several() -> None:
    rng = np.random.default_rng(0)
    x = np.outer(rng.lognormal(0, 1, 1500), rng.lognormal(0, 1, 1500)) * rng.laplace(
        size=(1500, 1500)
    )
    x = x.astype(np.float32)  # 2.25M elements: three blocks
    payloads = {
        c: RDQ(bits_per_param=1.0, coder=c).encode(x) for c in ("ctx", "ctx-stream", "ctx-blocks")
    }
    assert RDQ().decode_levels(payloads["ctx"]).coder == "ctx-wide"
    assert RDQ().decode_levels(payloads["ctx-stream"]).coder == "ctx-stream"
    assert RDQ().decode_levels(payloads["ctx-blocks"]).coder == "ctx-blocks"
    assert len(payloads["ctx"]) <= 1.01 * len(payloads["ctx-stream"])
    assert len(payloads["ctx"]) <= 1.01 * len(payloads["ctx-blocks"])
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


def test_id_5_takes_flag_bits_3_and_6() -> None:
    x = structured(40, 150, seed=5)
    payload = RDQ(step=1e-8, coder="ctx-wide", levels="uniform").encode(x)
    env = container.unpack(payload)
    assert env.params[0] >> 3 & 3 == 1 and env.params[0] >> 6 == 1  # id 5 = 0b101
    for flags in (env.params[0] | 2 << 3, env.params[0] | 1 << 7):  # ids 7, bit 7
        forged = container.pack(
            "rdq", env.dtype, env.shape, 0, bytes([flags]) + env.params[1:], bytes(env.body)
        )
        with pytest.raises(DecodeError):
            RDQ().decode(forged)
    lv = RDQ().decode_levels(payload)
    assert lv.coder == "ctx-wide" and lv.tensors is not None and lv.tensors.tolist() == [[40, 150]]
    np.testing.assert_array_equal(fedcodec.decode(payload), RDQ().decode(payload))


@pytest.mark.usefixtures("small_blocks")
def test_id_5_makes_id_4s_decisions_on_a_wide_range() -> None:
    """The same decisions and probabilities as id 4, so the same ideal cost (the dry run);
    each block's stream is 8 + 4k bytes, within 15 bytes of id 4's block."""
    q = np.concatenate([levels(50, 70, seed=1), levels(1, 300, seed=2)[:300], levels(9, 8, 5)])
    tensors = np.array([[50, 70], [1, 300], [9, 8]], np.int64)
    p = blocks.plan(tensors)
    side, _ = blocks.side_section(q, p, ctx_coder.choose_side(q, tensors, 1), 1)
    for b, segs in enumerate(p.blocks):
        sizes = {}
        for wide in (False, True):
            args = (q, segs, p.starts, tensors, side.use, side.totals, side.row_idx)
            rest = (side.col_part, p.row_off, p.col_off)
            cost = np.zeros(1)
            K._block_encode(*args, *rest, np.empty(0, np.uint8), cost, np.zeros(0, np.int64), wide)
            out = np.empty(1 << 16, np.uint8)
            sizes[wide] = (
                K._block_encode(*args, *rest, out, np.zeros(0), np.zeros(0, np.int64), wide),
                cost[0],
            )
        assert sizes[True][1] == sizes[False][1]
        assert (sizes[True][0] - W.WIDE_HEAD) % 4 == 0
        assert abs(sizes[True][0] - sizes[False][0]) <= 15, b


def test_wide_encoder_matches_a_python_reference() -> None:
    """:func:`kernels.ctx._code_wide` against a slow reference in Python integers (an
    unbounded ``low``, the range split as the format says), over adaptive and direct
    decisions whose probabilities drive the range low (many renormalizations and carries)."""
    rng = np.random.default_rng(7)
    n = 3000
    idx = rng.integers(-1, 4, n)  # -1: a direct bit
    bits = (rng.random(n) < np.where(idx % 2 == 0, 0.97, 0.2)).astype(np.int64)
    dec = (idx + 1) * 2 + bits
    probs = np.full(C.NUM_PROBS, C.PROB_ONE // 2, np.int64)
    es = np.zeros(C.WIDE_STATE, np.int64)
    es[1] = -1
    out = np.zeros(4 * n + 16, np.uint8)
    C._flush(es, probs, dec, n, out, np.zeros(0), np.zeros(0, np.int64), True)
    p_ref = [C.PROB_ONE // 2] * C.NUM_PROBS
    low, width, written, carries = 0, (1 << 64) - 1, 0, 0
    for i, bit in zip(idx.tolist(), bits.tolist(), strict=True):
        before = low % (1 << 64)
        if i < 0:
            width >>= 1
            low += width if bit else 0
        else:
            bound = (width >> C.PROB_BITS) * p_ref[i]
            low, width = (low + bound, width - bound) if bit else (low, bound)
            p = p_ref[i]
            p_ref[i] = p - (p >> C.MOVE_BITS) if bit else p + ((C.PROB_ONE - p) >> C.MOVE_BITS)
        carries += low % (1 << 64) < before
        if width < 1 << 32:
            low, width, written = low << 32, width << 32, written + 4
    # ``low`` unbounded holds every bit written (carries included) above its last 64
    assert int(es[4]) == written + 8 and written > 100 and carries > 10
    assert bytes(out[: written + 8]) == low.to_bytes(written + 8, "big")
    assert probs.tolist() == p_ref


def test_levels_of_a_payload_of_id_4_through_decode_levels() -> None:
    x = structured(40, 150, seed=5)
    codec = RDQ(step=1e-8, levels="uniform", coder="ctx-blocks")
    lv = codec.decode_levels(codec.encode(x))
    assert lv.coder == "ctx-blocks" and lv.tensors is not None
    assert lv.tensors.tolist() == [[40, 150]]
    np.testing.assert_array_equal(fedcodec.decode(codec.encode(x)), codec.decode(codec.encode(x)))


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("mode", [Q.NEAREST, Q.STOCHASTIC, Q.DITHER])
def test_values_decoded_row_by_row_are_the_levels_dequantized(mode: int, wide: bool) -> None:
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
        params, body = ctxb_coder.encode(q, tensors, 1, np.array(use, np.int64), wide=wide)
        for threads in (1, 3):
            out = np.full(q.size, np.nan, np.float32)
            r = Reader(params, "p")
            ctxb_coder.decode(r, memoryview(body), out, mode, step, recon, stream, threads, wide)
            np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("coder", ["ctx-blocks", "ctx-wide"])
def test_a_zeroed_result_takes_only_the_non_zero_values(coder: str) -> None:
    """Where the result is allocated by the decode, nearest rounding's block coders decode
    into a fresh ``np.zeros`` and write only the non-zero values; the values are those
    written into a caller's ``out`` full of NaN (each row zeroed first), with zero rows."""
    x = structured(40, 100, seed=90)
    x[7] = 0.0  # a zero row
    for config, zeroed in (({}, True), ({"rounding": "dither"}, False)):
        codec = RDQ(nmse=0.02, coder=coder, **config)
        payload = codec.encode(x, seed=3)
        env = container.unpack(payload)
        assert codec.decode_levels(payload, seed=3).coder == coder
        assert codec._zeroed_by_params(env.params) is zeroed
        out = np.full(x.shape, np.nan, np.float32)
        np.testing.assert_array_equal(codec.decode(payload, seed=3, out=out), out)
        np.testing.assert_array_equal(codec.decode(payload, seed=3, threads=2), out)
        assert np.isfinite(out).all()
        assert (out[7] == 0).all() == zeroed  # nearest: zero rows and columns stay zero
