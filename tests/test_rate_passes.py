"""The rate search's passes over a large update: the context coder's size estimated on a
grid of rows and columns (so that ``bits_per_param`` codes the update with it once or
twice, not three times), the run-length code counted before it is coded, the memoryless
and context coders sharing one search, and the threads they run on."""

from __future__ import annotations

import multiprocessing
from dataclasses import replace

import numpy as np
import pytest
from fedcodec.kernels import quant

from fedcodec import RDQ, decode, rate_control, rate_measure
from fedcodec.coders import ctx as ctx_coder
from fedcodec.coders import ctxb as ctxb_coder
from fedcodec.coders import rleg as rleg_coder
from fedcodec.threads import thread_map
from fedcodec.tools.sample_updates import structured_matrix


def test_the_grid_takes_rows_and_a_block_of_columns_of_each_tensor() -> None:
    tensors = np.array([[1000, 3000], [1, 50_000], [64, 800], [10, 10]], np.int64)
    budget = np.array([90_000, 4096, 4096, 4096], np.int64)
    s = ctx_coder.grid_sample(tensors, budget)
    assert s.index is not None and np.all(np.diff(s.index) > 0)  # sorted, no repeats
    (r0, c0), (r1, c1), (r2, c2), (r3, c3) = s.tensors.tolist()
    assert r0 == c0 == 300  # as many rows as columns where the tensor allows
    assert (r1, c1) == (1, 4096)  # a vector: a contiguous stretch of it
    assert (r2, c2) == (64, 64)  # every row of a short tensor, more of its columns
    assert (r3, c3) == (10, 10)  # a small tensor whole
    starts = np.concatenate([[0], np.cumsum(tensors.prod(axis=1))])
    first = s.index[: r0 * c0].reshape(r0, c0)
    rows, cols = np.divmod(first - starts[0], 3000)
    assert np.all(rows == rows[:, :1]) and np.all(np.diff(cols, axis=1) == 1)  # whole runs
    assert rows[-1, 0] >= 990 and 1000 <= cols[0, 0] <= 1500  # spread, centred
    vector = s.index[r0 * c0 : r0 * c0 + 4096] - starts[1]
    assert vector[0] == (50_000 - 4096) // 2 and np.all(np.diff(vector) == 1)
    assert s.index[-100:].tolist() == list(range(starts[3], starts[4]))


@pytest.fixture
def big() -> np.ndarray:
    """A 1,200 × 1,000 structured matrix: above the estimate's 2**19 elements, two blocks."""
    return structured_matrix(1200, 1000, seed=4, zero_every=7)


def count_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    coded = ctxb_coder.encode

    def counted(q: np.ndarray, *args: object, **kwargs: object) -> tuple[bytes, bytes]:
        calls.append(q.size)
        return coded(q, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rate_measure.ctxb_coder, "encode", counted)
    return calls


@pytest.mark.parametrize("bits_per_param", [0.3, 1.0, 2.5])
def test_bits_per_param_codes_a_large_update_at_most_twice(
    big: np.ndarray, bits_per_param: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pass goes where the grid's estimate (scaled by the memoryless coder's
    measurement) meets the target, the second where the estimate scaled by the first
    pass's measurement does; before, the first went to the memoryless coder's step
    (about 0.6-0.9x the target's bits) and three passes were common."""
    passes = count_passes(monkeypatch)
    codec = RDQ(bits_per_param=bits_per_param)
    payload = codec.encode(big, threads=2)
    assert abs(8 * len(payload) / big.size - bits_per_param) <= 0.01 * bits_per_param
    assert 1 <= len(passes) <= 2
    assert codec.decode_levels(payload).coder == "ctx-wide"
    assert np.isfinite(decode(payload)).all()
    # the bytes do not depend on the thread count
    assert codec.encode(big, threads=1) == payload


def test_the_estimate_tracks_the_coder_near_the_anchor(big: np.ndarray) -> None:
    """The grid's estimate, scaled by the control variate, within 5 % of the coded size at
    the memoryless coder's point and at steps 0.8x and 1.25x of it."""
    codec = RDQ(bits_per_param=1.0)
    x = big.reshape(-1)
    sumsq = float(np.dot(x.astype(np.float64), x))
    s = rate_control.Solver(codec, x, float(np.abs(x).max()), sumsq, np.uint64(0), ((1200, 1000),))
    ans = s.search_and_refine(rate_control.CODER_ANS, (0.5,))
    s.anchor = (ans.point.step, ans.point.offset, ans.bits - s.extra_bits(ans.point))
    for factor in (0.8, 1.0, 1.25):
        p = s.evaluate(ans.point.step * factor, 0.5, rate_control.CODER_CTXB)
        (coded,) = s.measure_levels(p, (rate_control.CODER_CTXB,))
        assert s.context_bits(p.step, 0.5) == pytest.approx(coded.bits, rel=0.05)


def test_the_run_length_count_decides_as_its_coding_did(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above a chunk, whether run-length gamma is within reach of the context coder is
    answered by its exact size counted on threads: the same payloads as its coding with
    a limit, the same body when it is in reach."""
    x = structured_matrix(1500, 1500, seed=5)
    for codec in (RDQ(nmse=0.05), RDQ(step=0.3 * float(np.std(x))), RDQ(nmse=0.05, coder="auto")):
        counted = codec.encode(x, threads=2)
        with monkeypatch.context() as m:
            m.setattr(rate_measure, "_PAR_CHUNK", 1 << 30)  # one chunk: coded, as before
            assert codec.encode(x, threads=2) == counted
    flat = x.reshape(-1)
    sumsq = float(np.dot(flat.astype(np.float64), flat))
    s = rate_control.Solver(
        RDQ(nmse=0.05),
        flat,
        float(np.abs(flat).max()),
        sumsq,
        np.uint64(0),
        ((1500, 1500),),
        threads=2,
    )
    p = s.evaluate(float(np.std(flat)), 0.5, rate_control.CODER_CTXB)
    (ctx,) = s.measure_levels(p, (rate_control.CODER_CTXB,))
    both = s.measure_levels(p, (rate_control.CODER_CTXB, rate_control.CODER_RLEG), slack=100.0)
    q = np.empty(flat.size, np.int32)
    s.quantize_into(p, q)
    assert [f.point.coder for f in both] == [rate_control.CODER_CTXB, rate_control.CODER_RLEG]
    assert both[1].body == rleg_coder.encode(q, p.bits) and both[1].bits > ctx.bits
    # within the context coder's bits only: left out
    assert len(s.measure_levels(p, (rate_control.CODER_CTXB, rate_control.CODER_RLEG))) == 1


def test_the_context_coder_reuses_the_memoryless_coders_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both search on the memoryless estimate: the context coder's search is the first's
    (the subsample is evaluated for one search, not two)."""
    x = structured_matrix(300, 400, seed=1)
    evaluations: list[float] = []
    evaluate = rate_control.Solver.evaluate

    def counted(self: rate_control.Solver, step: float, offset: float, coder: int) -> object:
        evaluations.append(step)
        return evaluate(self, step, offset, coder)

    monkeypatch.setattr(rate_control.Solver, "evaluate", counted)
    RDQ(bits_per_param=1.0, coder="ans").encode(x)
    alone = len(evaluations)
    evaluations.clear()
    RDQ(bits_per_param=1.0).encode(x)
    assert alone > 20 and len(evaluations) < alone + 15  # the context coder's refinement


def _child_maps() -> None:
    assert thread_map(lambda i: i * i, list(range(8)), 2) == [i * i for i in range(8)]


def test_the_thread_pool_survives_a_fork_and_nests() -> None:
    """The pools are kept for the process: a forked child starts its own, and a task that
    maps again (a frame coding its passes) gets threads of its own, not the busy pool."""
    assert thread_map(lambda i: i + 1, list(range(6)), 2) == list(range(1, 7))
    nested = thread_map(lambda i: thread_map(lambda j: i * 10 + j, [0, 1, 2], 2), [1, 2, 3], 2)
    assert nested == [[10, 11, 12], [20, 21, 22], [30, 31, 32]]
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_maps)
    child.start()
    child.join(60)
    assert child.exitcode == 0


def test_the_run_length_count_stops_past_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a limit, the run-length size is counted a wave of chunks at a time and stops
    once the chunks so far code to more than the limit: the exact size at or under it,
    a prefix's size (over it, and short of the whole's) past it."""
    monkeypatch.setattr(rate_measure, "_PAR_CHUNK", 1 << 16)
    x = structured_matrix(1000, 1000, seed=6).reshape(-1)
    sumsq = float(np.dot(x.astype(np.float64), x))
    for threads in (1, 2):
        s = rate_control.Solver(
            RDQ(nmse=0.05), x, float(np.abs(x).max()), sumsq, np.uint64(0), ((1000, 1000),),
            threads=threads,
        )  # fmt: skip
        p = s.evaluate(0.5 * float(np.std(x)), 0.5, rate_control.CODER_CTXB)
        q = np.empty(x.size, np.int32)
        s.quantize_into(p, q)
        exact = len(rleg_coder.encode(q, p.bits))
        assert s.rleg_bytes(p) == exact
        assert s.rleg_bytes(p, exact) == exact
        assert s.rleg_bytes(p, exact + 1000) == exact
        stopped = s.rleg_bytes(p, exact // 4)
        assert exact // 4 < stopped < exact


def test_the_run_length_count_takes_the_levels_the_context_coder_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run-length size at the point the context coder in blocks was just measured at
    joins the pieces its kernel counted (no pass); without them it counts the levels that
    measurement quantized (no second quantization), once; at another point, or a second
    time, it quantizes."""
    monkeypatch.setattr(rate_measure, "_PAR_CHUNK", 1 << 16)
    x = structured_matrix(1000, 1000, seed=6).reshape(-1)
    sumsq = float(np.dot(x.astype(np.float64), x))
    s = rate_control.Solver(
        RDQ(nmse=0.05), x, float(np.abs(x).max()), sumsq, np.uint64(0), ((1000, 1000),)
    )
    p = s.evaluate(0.5 * float(np.std(x)), 0.5, rate_control.CODER_CTXB)
    s.measure_levels(p, (rate_control.CODER_CTXB,))
    q = np.empty(x.size, np.int32)
    s.quantize_into(p, q)
    exact = len(rleg_coder.encode(q, p.bits))
    chunks = -(-x.size // (1 << 16))
    calls: list[int] = []
    quantize = quant._quantize
    monkeypatch.setattr(quant, "_quantize", lambda *a: calls.append(1) or quantize(*a))
    counted: list[int] = []
    piece_runs = rleg_coder.piece_runs
    monkeypatch.setattr(rleg_coder, "piece_runs", lambda q: counted.append(1) or piece_runs(q))
    # the blocks counted the run-length code as they coded: no pass, not even a count
    assert s.rleg_bytes(p) == exact and not calls and not counted
    assert s.kept_levels is None and s.kept_runs is None
    s.measure_levels(p, (rate_control.CODER_CTXB,))
    s.kept_runs = None  # (a one-stream coder's measurement keeps the levels only)
    calls.clear()
    assert s.rleg_bytes(p) == exact and not calls and len(counted) == chunks
    assert s.rleg_bytes(p) == exact and len(calls) == chunks
    other = replace(p, step=p.step * 1.5)
    s.measure_levels(p, (rate_control.CODER_CTXB,))
    calls.clear()
    s.rleg_bytes(other)
    assert len(calls) == chunks
