"""The Blahut–Arimoto bound against sources whose R(D) is known."""

from __future__ import annotations

import numpy as np
import pytest

from fedcodec.tools.rd_bound import RDBound


@pytest.fixture(scope="module")
def gaussian() -> RDBound:
    return RDBound.fit(np.random.default_rng(0).standard_normal(400_000) * 3.0)


def test_gaussian_matches_the_closed_form(gaussian: RDBound) -> None:
    # R(D) = 1/2 log2(sigma^2 / D); the scale of the source does not matter (NMSE)
    closed = np.maximum(0.5 * np.log2(1.0 / gaussian.nmse), 0.0)
    assert np.max(np.abs(gaussian.bits_per_param - closed)) < 0.005
    assert gaussian.nmse.min() < 0.003 and gaussian.nmse.max() > 0.95
    assert gaussian.discretization_nmse < 1e-4


def test_curve_is_monotone_and_interpolates(gaussian: RDBound) -> None:
    assert np.all(np.diff(gaussian.nmse) > 0)
    assert np.all(np.diff(gaussian.bits_per_param) <= 0)
    np.testing.assert_allclose(gaussian.bits_at([0.01, 0.25]), [0.5 * np.log2(100), 1.0], atol=0.01)
    assert np.isnan(gaussian.bits_at(1e-6)) and np.isnan(gaussian.bits_at(5.0))


def test_laplace_lies_between_its_known_bounds() -> None:
    b = 2.0
    bound = RDBound.fit(np.random.default_rng(1).laplace(scale=b, size=400_000))
    var = 2 * b * b
    d = bound.nmse * var
    # Shannon lower bound h(X) - 1/2 log2(2 pi e D), h = log2(2 e b); Gaussian upper bound
    slb = np.log2(2 * np.e * b) - 0.5 * np.log2(2 * np.pi * np.e * d)
    gauss = np.maximum(0.5 * np.log2(var / d), 0.0)
    assert np.all(bound.bits_per_param >= np.maximum(slb, 0) - 0.002)
    assert np.all(bound.bits_per_param <= gauss + 0.002)
    # the lower bound is tight at small distortion for the Laplace source
    small = bound.nmse < 0.02
    assert np.max(np.abs(bound.bits_per_param[small] - slb[small])) < 0.005
    # so the gap to the Gaussian bound there is the entropy-power gap, 1/2 log2(pi / e)
    np.testing.assert_allclose(
        (gauss - bound.bits_per_param)[small], 0.5 * np.log2(np.pi / np.e), atol=0.006
    )


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        RDBound.fit(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="all-zero"):
        RDBound.fit(np.zeros(10))
