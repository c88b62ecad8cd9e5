"""Shared fixtures of the benchmark suite (run with ``make bench``).

``FEDCODEC_BENCH_SHORT=1`` (the CI's short mode, ``make bench-short``) keeps the 1M-param
update only.

Every benchmark also records ``extra_info["yardstick_s"]``: the best time of a fixed,
compute-bound, single-threaded kernel (:func:`yardstick`), measured with the benchmark's own
timer just before and just after it. ``bench/check_regression.py`` divides each benchmark's
time by it, so the check compares a codec with the CPU it ran on at that moment (a slower
CPU, a lower clock on a busy machine), not with a memory copy: the codecs are compute-bound,
a copy is memory-bound.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from numba import njit

from fedcodec.tools.sample_updates import laplace, structured_matrix

SIZES = {"1M": 1_000_000, "10M": 10_000_000}
if os.environ.get("FEDCODEC_BENCH_SHORT"):
    SIZES = {"1M": 1_000_000}

#: Steps of the yardstick's dependent integer/float chain (~3-6 ms on a current core).
YARDSTICK_STEPS = 2_000_000
#: Runs of the yardstick on each side of a benchmark; the best one counts.
YARDSTICK_RUNS = 5


@njit(cache=True, nogil=True)
def _yardstick_kernel(steps: int) -> float:
    # a 64-bit hash chain (each step depends on the last: no vectorizing, no shortcut)
    # feeding a float accumulation: integer multiplies, shifts, conversions and float adds,
    # the mix of a quantizer and an entropy coder, all in registers (no memory traffic)
    h = np.uint64(0x9E3779B97F4A7C15)
    acc = 0.0
    for _ in range(steps):
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(29)
        acc += float(h >> np.uint64(40)) * 1e-6
    return acc + float(h & np.uint64(1))


def yardstick(timer: Callable[[], float], runs: int = YARDSTICK_RUNS) -> float:
    """The best of ``runs`` timings of the yardstick kernel, in ``timer``'s seconds."""
    _yardstick_kernel(10)  # compiled (or loaded) before any timing
    best = float("inf")
    for _ in range(runs):
        t0 = timer()
        _yardstick_kernel(YARDSTICK_STEPS)
        best = min(best, timer() - t0)
    return best


@pytest.fixture(autouse=True)
def _record_yardstick(request: pytest.FixtureRequest) -> Iterator[None]:
    """Measure the yardstick around each benchmark (interleaved with the benchmarks, so a
    neighbour that starts or stops mid-run affects both alike)."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    bench = request.getfixturevalue("benchmark")
    timer = getattr(bench, "_timer", None) or time.perf_counter
    before = yardstick(timer)
    yield
    bench.extra_info["yardstick_s"] = min(before, yardstick(timer))


@pytest.fixture(scope="session", params=list(SIZES))
def update(request: pytest.FixtureRequest) -> np.ndarray:
    """A Laplace-shaped float32 update (the shape of real updates' histograms)."""
    return laplace(SIZES[request.param], seed=0)


@pytest.fixture(scope="session", params=list(SIZES))
def matrix(request: pytest.FixtureRequest) -> np.ndarray:
    """A float32 matrix update with row/column structure and zero columns (1000 rows)."""
    n = SIZES[request.param]
    return structured_matrix(1000, n // 1000, seed=0, zero_every=5)
