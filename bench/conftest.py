"""Shared fixtures of the benchmark suite (run with ``make bench``).

``FEDCODEC_BENCH_SHORT=1`` (the CI's short mode, ``make bench-short``) keeps the 1M-param
update only.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from fedcodec.tools.sample_updates import laplace, structured_matrix

SIZES = {"1M": 1_000_000, "10M": 10_000_000}
if os.environ.get("FEDCODEC_BENCH_SHORT"):
    SIZES = {"1M": 1_000_000}


@pytest.fixture(scope="session", params=list(SIZES))
def update(request: pytest.FixtureRequest) -> np.ndarray:
    """A Laplace-shaped float32 update (the shape of real updates' histograms)."""
    return laplace(SIZES[request.param], seed=0)


@pytest.fixture(scope="session", params=list(SIZES))
def matrix(request: pytest.FixtureRequest) -> np.ndarray:
    """A float32 matrix update with row/column structure and zero columns (1000 rows)."""
    n = SIZES[request.param]
    return structured_matrix(1000, n // 1000, seed=0, zero_every=5)
