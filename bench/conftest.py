"""Shared fixtures of the benchmark suite (run with ``make bench``).

``FEDCODEC_BENCH_SHORT=1`` (the CI's short mode, ``make bench-short``) keeps the 1M-param
update only.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from fedcodec.sample_updates import laplace

SIZES = {"1M": 1_000_000, "10M": 10_000_000}
if os.environ.get("FEDCODEC_BENCH_SHORT"):
    SIZES = {"1M": 1_000_000}


@pytest.fixture(scope="session", params=list(SIZES))
def update(request: pytest.FixtureRequest) -> np.ndarray:
    """A Laplace-shaped float32 update (the shape of real updates' histograms)."""
    return laplace(SIZES[request.param], seed=0)
