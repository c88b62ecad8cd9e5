"""Regression tests of the hardening issue: each input here broke an encoder before.

Encodes run in the child process of ``encode_worker.py`` where an abort was the failure
(a kernel writing out of bounds); ``test_boundscheck.py`` reruns this file with numba's
bounds checking on.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from common import assert_error_bounded, rdq_step
from encode_worker import Worker

import fedcodec
from fedcodec import RDQ
from fedcodec.coders import ans as ans_coder

SEED = 3
FLOAT32_MAX_PAIR = np.array([3.4e38, -3.4e38, 0, 1], np.float32)


def normal_plus_outlier(n: int = 5000) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    return np.concatenate([x, np.float32([3e38])])


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


def round_trip(worker: Worker, config: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The decoded update; fails on a crash, an exception or a payload that does not decode."""
    status, error_type, message, payload, y = worker.run(config, x, SEED)
    assert status == "ok", f"{config}: {status} {error_type}: {message}"
    assert y.shape == x.shape and np.isfinite(y).all()
    assert_error_bounded(config, x, y, payload, str(config))
    return y


@pytest.mark.parametrize("x", [FLOAT32_MAX_PAIR, normal_plus_outlier()], ids=["max", "outlier"])
def test_lmbda_search_stays_in_bounds(worker: Worker, x: np.ndarray) -> None:
    # the golden-section search once probed a NaN step, and the statistics kernel wrote
    # at index int(NaN) (heap corruption, "malloc(): invalid size")
    y = round_trip(worker, {"id": "rdq", "lmbda": 1e-4}, x)
    assert np.sum((y.astype(np.float64) - x) ** 2) <= 1e-3 * np.sum(x.astype(np.float64) ** 2)


def test_rate_search_never_evaluates_a_step_outside_its_range() -> None:
    from fedcodec import rate_control

    seen: list[float] = []
    original = rate_control.Solver.evaluate

    def spy(self: Any, step: float, offset: float, coder: int) -> Any:
        point = original(self, step, offset, coder)
        seen.append(point.step)
        return point

    rate_control.Solver.evaluate = spy  # type: ignore[method-assign]
    try:
        RDQ(lmbda=1e-4).encode(FLOAT32_MAX_PAIR)
    finally:
        rate_control.Solver.evaluate = original  # type: ignore[method-assign]
    assert seen and all(np.isfinite(seen))
    assert max(seen) <= rate_control.max_step(float(np.float32(3.4e38))) * (1 + 2**-23)


@pytest.mark.parametrize(
    "config",
    [
        {"id": "rdq"},
        {"id": "rdq", "bits_per_param": 2.0},
        {"id": "rdq", "bits_per_param": 1.0, "rounding": "dither", "rotate": True},
        {"id": "rdq", "coder": "rleg"},
        {"id": "rdq", "nmse": 0.01},
        {"id": "drive"},
        {"id": "int8"},
        {"id": "threelc", "sparsity": 1.5},
        {"id": "bf16"},
    ],
    ids=str,
)
def test_payloads_of_values_near_float32_max_decode(worker: Worker, config: dict[str, Any]) -> None:
    # these wrote a step of inf, or scales whose reconstruction overflowed float32
    round_trip(worker, config, FLOAT32_MAX_PAIR)


@pytest.mark.parametrize(
    "config", [{"id": "drive"}, {"id": "drive", "scale": "mse"}, {"id": "qsgd"}], ids=str
)
def test_outlier_near_float32_max_decodes(worker: Worker, config: dict[str, Any]) -> None:
    round_trip(worker, config, normal_plus_outlier())


@pytest.mark.parametrize("config", [{"id": "eden"}, {"id": "qsgd"}], ids=str)
def test_what_cannot_be_coded_is_refused_with_advice(config: dict[str, Any]) -> None:
    # EDEN's unbiased scale and QSGD's l2 norm of these pass float32's range
    with pytest.raises(ValueError, match="scale the update down"):
        fedcodec.get_codec(config).encode(FLOAT32_MAX_PAIR, seed=SEED)


def test_float16_extremes_saturate_instead_of_failing_to_decode() -> None:
    x = np.float16([65504, -65504, 1, 0])
    for config in ({"id": "bf16"}, {"id": "qsgd"}, {"id": "rdq", "nmse": 0.01}):
        codec = fedcodec.get_codec(config)
        y = codec.decode(codec.encode(x, seed=SEED), seed=SEED)
        assert y.dtype == np.float16 and np.isfinite(y).all(), config
        assert np.abs(y.astype(np.float32) - x).max() <= 65504 * 2**-7, config


# -- zero updates stay zero ------------------------------------------------------------


ZERO_CONFIGS = [
    *({"id": cid} for cid in fedcodec.available_codecs()),
    {"id": "rdq", "bits_per_param": 1.0, "rounding": "dither"},
    {"id": "rdq", "step": 0.01, "rounding": "dither"},
    {"id": "rdq", "bits_per_param": 1.0, "rounding": "dither", "rotate": True},
    {"id": "rdq", "bits_per_param": 1.0, "rounding": "stochastic", "rotate": True},
]


@pytest.mark.parametrize("config", ZERO_CONFIGS, ids=str)
def test_zero_update_decodes_to_exact_zero(config: dict[str, Any]) -> None:
    codec = fedcodec.get_codec(config)
    y = codec.decode(codec.encode(np.zeros(5000, np.float32), seed=SEED), seed=SEED)
    assert not y.any(), f"max |y| = {np.abs(y).max()}"


@pytest.mark.parametrize("config", ZERO_CONFIGS, ids=str)
def test_zero_tensors_of_a_mapping_decode_to_exact_zero(config: dict[str, Any]) -> None:
    rng = np.random.default_rng(1)
    update = {
        "frozen.weight": np.zeros((40, 30), np.float32),
        "fc.weight": rng.standard_normal((50, 20)).astype(np.float32),
        "frozen.bias": np.zeros(30, np.float32),
        "zero.bias": np.zeros(7, np.float32),
        "fc.bias": rng.standard_normal(20).astype(np.float32),
    }
    codec = fedcodec.get_codec(config)
    _, layout = fedcodec.flatten(update)
    flat = codec.decode(codec.encode(update, seed=SEED), seed=SEED, layout=layout)
    restored = fedcodec.unflatten(flat, layout)
    for name in ("frozen.weight", "frozen.bias", "zero.bias"):
        assert not restored[name].any(), name


def test_the_step_asked_for_is_the_step_used() -> None:
    for x in (np.zeros(5000, np.float32), np.ones(5000, np.float32)):
        payload = RDQ(step=0.01, rounding="dither").encode(x, seed=SEED)
        assert rdq_step(payload) == float(np.float32(0.01))
    # levels up to 3.7e8 are within the 2**30 bound: the step is not raised
    payload = RDQ(step=0.01).encode(np.float32([1.9e6, 3.7e6]))
    assert rdq_step(payload) == float(np.float32(0.01))


def test_nonzero_dithered_tensor_keeps_its_dither() -> None:
    x = np.full(5000, 0.3, np.float32)
    y = RDQ(step=0.5, rounding="dither").decode(
        RDQ(step=0.5, rounding="dither").encode(x, seed=SEED), seed=SEED
    )
    assert np.unique(y).size > 100  # subtractive dither: the error is uniform, not constant
    assert abs(float(np.mean(y)) - 0.3) < 0.02


# -- encode errors that say what to do ---------------------------------------------------


def test_sparse_integer_grid_with_a_unit_step() -> None:
    # ~4,000 empty levels inside the ANS range once made the zero-count adjustment underflow
    x = np.repeat(np.arange(-4096, 4097, 2), 2).astype(np.float32)
    y = RDQ(step=1.0).decode(RDQ(step=1.0).encode(x))
    np.testing.assert_array_equal(y, x)


def test_many_rare_levels_keep_the_frequencies_positive() -> None:
    # 3,001 elements over ~8,000 levels: rounding each count up to 1 overshot 2**16 and the
    # top count went negative ("Elias-gamma codes integers in [1, 2**32)")
    x = np.random.default_rng(1).integers(-4096, 4097, 3001).astype(np.float32)
    codec = RDQ(step_rms=0.001)
    y = codec.decode(codec.encode(x))
    assert np.abs(y - x).max() <= 0.002 * float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    counts = np.ones(8000, np.int64)
    counts[1::3] = 0  # absent levels among them stay absent
    c16 = ans_coder.quantize_counts(counts)
    assert c16.sum() == 1 << 16 and (c16[counts > 0] >= 1).all() and not c16[counts == 0].any()


def test_coder_frequencies_with_thousands_of_empty_levels() -> None:
    c16 = np.zeros(8193, np.int64)
    c16[::2] = 16  # 4,097 levels of 16, 4,096 empty ones
    c16[0] += (1 << 16) - int(c16.sum())
    freq = ans_coder.coder_frequencies(c16)
    assert freq.min() >= 1 and int(freq.sum(dtype=np.int64)) == 1 << 24
    # the old rule (the top symbol pays alone) is kept wherever it worked: old streams decode
    ordinary = np.array([60000, 5000, 536, 0], np.int64)
    expected = ordinary << 8
    expected[3] = 1
    expected[0] -= 1
    np.testing.assert_array_equal(ans_coder.coder_frequencies(ordinary), expected)


@pytest.mark.parametrize(
    "x",
    [
        np.random.default_rng(2).standard_t(1.5, 5000).astype(np.float32),
        (np.random.default_rng(3).standard_normal(5000) * 1e-44).astype(np.float32),
    ],
    ids=["student-t", "subnormal"],
)
def test_step_rms_on_heavy_tails_and_subnormals(x: np.ndarray) -> None:
    codec = RDQ(step_rms=0.001)
    payload = codec.encode(x)
    y = codec.decode(payload)
    assert_error_bounded(codec.get_config(), x, y, payload, "step_rms")


def test_fixed_steps_beyond_what_a_payload_holds_are_refused() -> None:
    with pytest.raises(ValueError, match="float32"):
        RDQ(step=1e-50)
    with pytest.raises(ValueError, match="float32"):
        RDQ(step=1e39)
    with pytest.raises(ValueError, match="too small"):
        RDQ(step=1e-3).encode(np.float32([1e9]))
    with pytest.raises(ValueError, match="too large"):
        RDQ(step=3e38).encode(np.float32([3e38]))


def test_int8_on_subnormal_values() -> None:
    x = (np.random.default_rng(4).standard_normal(5000) * 1e-44).astype(np.float32)
    codec = fedcodec.get_codec({"id": "int8"})
    y = codec.decode(codec.encode(x))
    # every float32 is a multiple of 2**-149: the scale rounds up to one, not down to 0
    nmse = np.sum((y.astype(np.float64) - x) ** 2) / np.sum(x.astype(np.float64) ** 2)
    assert nmse < 1e-3


def test_float64_beyond_float32_is_refused_with_advice() -> None:
    with pytest.raises(ValueError, match="scale the update down"):
        RDQ().encode(np.array([1e300, 1.0]))


# -- the suite itself ---------------------------------------------------------------------


@pytest.mark.parametrize("how", [["-m", "pytest"], ["-m", "pytest", "-p", "no:cacheprovider"]])
def test_flower_test_file_alone_exits_zero(how: list[str]) -> None:
    """Flower's objects in pytest's own process, with nothing else collected (Ray's
    leftovers once failed the file run alone). The App tests run Flower in processes of
    their own (and take a minute), so they are left out here."""
    pytest.importorskip("flwr")
    pytest.importorskip("ray")
    root = Path(__file__).parents[1]
    result = subprocess.run(
        [sys.executable, *how, "-q", str(root / "tests" / "test_flower.py"), "-k", "not app"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
