"""Encoder fuzzing: every registered codec, on hostile but finite updates.

Property, for each codec and configuration below and any array of 0–5,000 finite float16,
float32 or float64 values (zeros, subnormals, ±max, one huge outlier among small values,
constants, integer grids, heavy tails, arbitrary bit patterns): ``encode`` either raises a
``ValueError`` with a message, where the case allows one (see :func:`value_error_allowed`),
or returns a payload that decodes to finite values of the input's shape and dtype, within
the codec's error bound (:func:`error_bound`); an all-zero update decodes to exactly zero.

Encoding runs in a child process (``encode_worker.py``): an abort is a failed test that
prints the input, not a dead run. The default run draws a few examples per configuration;
``-m slow`` draws many more.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from common import assert_error_bounded, rdq_step
from encode_worker import ABORT, Worker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fedcodec

CONFIGS: list[dict[str, Any]] = [
    *({"id": cid} for cid in fedcodec.available_codecs()),
    {"id": "rdq", "bits_per_param": 0.5},
    {"id": "rdq", "bits_per_param": 4.0, "coder": "auto"},
    {"id": "rdq", "nmse": 0.01},
    {"id": "rdq", "nmse": 0.2, "coder": "rleg"},
    {"id": "rdq", "lmbda": 1e-4},
    {"id": "rdq", "step": 0.01},
    {"id": "rdq", "step": 1.0, "coder": "rleg"},
    {"id": "rdq", "step": 0.01, "rounding": "dither"},
    {"id": "rdq", "step_rms": 0.001},
    {"id": "rdq", "step_rms": 0.5, "rounding": "stochastic", "coder": "auto"},
    {"id": "rdq", "bits_per_param": 1.0, "rounding": "dither", "rotate": True},
    {"id": "rdq", "bits_per_param": 1.0, "rounding": "stochastic", "coder": "rleg"},
    {"id": "rdq", "nmse": 0.05, "rotate": True, "levels": "uniform"},
    {"id": "rdq", "bits_per_param": 2.0, "ans_backend": "constriction"},
    {"id": "rdq", "nmse": 0.05, "coder": "ctx"},
    {"id": "rdq", "bits_per_param": 1.0, "coder": "ctx", "rounding": "dither"},
    {"id": "rdq", "step": 0.01, "coder": "ctx", "rounding": "stochastic"},
    {"id": "rdq", "lmbda": 1e-3, "coder": "ctx", "levels": "uniform"},
    {"id": "rdq", "nmse": 0.05, "coder": "ctx-static"},
    {"id": "rdq", "nmse": 0.05, "coder": "ctx-blocks"},
    {"id": "rdq", "bits_per_param": 1.0, "coder": "ctx-wide"},
    {"id": "rdq", "bits_per_param": 1.0, "coder": "ctx-static", "rounding": "dither"},
    {"id": "rdq", "nmse": 0.05, "levels": "rdoq"},
    {"id": "rdq", "bits_per_param": 1.0, "levels": "rdoq"},
    {"id": "rdq", "step_rms": 0.5, "levels": "rdoq"},
    {"id": "qsgd", "num_levels": 1},
    {"id": "qsgd", "num_levels": 16, "norm": "max", "bucket_size": 256},
    {"id": "topk", "fraction": 0.1},
    {"id": "topk", "k": 5, "value_dtype": "float16"},
    {"id": "drive", "scale": "mse"},
    {"id": "eden", "bits": 2},
    {"id": "eden", "bits": 4},
    {"id": "eden", "bits": 0.1},
    {"id": "eden", "bits": 2.5},
    {"id": "threelc", "sparsity": 1.5},
]
KINDS = ("normal", "zeros", "subnormal", "extremes", "outlier", "constant", "grid", "heavy")
DTYPES = (np.float16, np.float32, np.float64)
SEED = 7


def make_update(kind: str, n: int, dtype: type, exponent: int, rng: np.random.Generator) -> Any:
    """An array of ``n`` finite values of ``dtype`` (see the module docstring)."""
    info = np.finfo(dtype)
    big = float(info.max)
    if kind == "zeros":
        x = np.zeros(n)
    elif kind == "subnormal":
        x = rng.integers(-1000, 1001, n) * float(info.smallest_subnormal)
    elif kind == "extremes":
        pool = [big, -big, 0.0, float(info.smallest_subnormal), float(info.tiny), 1.0, -1.0]
        x = rng.choice(np.array(pool), n)
    elif kind == "outlier":
        x = rng.standard_normal(n) * 1e-3
        if n:
            x[rng.integers(n)] = big * rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0)
    elif kind == "constant":
        x = np.full(n, rng.choice([big, -big, 3.5, float(info.smallest_subnormal), 1e-30]))
    elif kind == "grid":
        x = rng.integers(-4096, 4097, n) * float(rng.choice([1, 2, 1024]))
    elif kind == "heavy":
        x = rng.standard_t(1.5, n) * 10.0**exponent
    else:
        x = rng.standard_normal(n) * 10.0**exponent
    x = np.clip(np.nan_to_num(x), -big, big)
    with np.errstate(over="ignore", under="ignore"):
        return x.astype(dtype)


@st.composite
def updates(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    if draw(st.integers(0, 7)) == 0:  # arbitrary finite bit patterns, short
        width = np.dtype(dtype).itemsize * 8
        elements = st.floats(allow_nan=False, allow_infinity=False, width=width)
        return draw(hnp.arrays(dtype, st.integers(0, 64), elements=elements))
    kind = draw(st.sampled_from(KINDS))
    n = draw(st.one_of(st.integers(0, 16), st.integers(0, 5000)))
    exponent = draw(st.integers(-45, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = make_update(kind, n, dtype, exponent, rng)
    if n and n % 50 == 0 and draw(st.booleans()):
        x = x.reshape(50, -1)
    return x


def value_error_allowed(config: dict[str, Any], x32: np.ndarray, message: str) -> bool:
    """Where a codec may refuse a finite update (its message must say what to do)."""
    max_abs = float(np.abs(x32).max()) if x32.size else 0.0
    if not np.isfinite(x32).all():  # float64 values beyond float32's range
        return "scale" in message
    cid = config["id"]
    if cid == "fp16" and max_abs > 65504:
        return "bf16" in message
    if cid == "topk" and config.get("value_dtype") == "float16" and max_abs > 65504:
        return "float16" in message
    if cid == "rdq" and ("step" in config or "step_rms" in config) and "step" in message:
        return True  # a fixed step must meet the 2**30 level bound and float32's range
    # near float32's limits, reconstructions (or a rotation, a norm) may overflow
    return max_abs > 2.0**100 and "scale" in message


def describe(config: dict[str, Any], x: np.ndarray) -> str:
    flat = x.reshape(-1)
    sample = np.array2string(flat[:8], precision=4)
    return (
        f"config={config} dtype={x.dtype} shape={x.shape} first={sample} "
        f"max|x|={float(np.abs(flat.astype(np.float64)).max()) if flat.size else 0:.4g}"
    )


def check(worker: Worker, config: dict[str, Any], x: np.ndarray) -> None:
    status, error_type, message, payload, y = worker.run(config, x, SEED)
    where = describe(config, x)
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    if status == "died":
        pytest.fail(f"the encoder's process died ({message}) on {where}")
    if status == "encode":
        assert error_type == "ValueError", f"encode raised {error_type}: {message} on {where}"
        assert len(message) >= 20, f"terse ValueError {message!r} on {where}"
        assert value_error_allowed(config, x32, message), f"refused: {message!r} on {where}"
        return
    assert status == "ok", f"its own payload fails to decode: {error_type}: {message} on {where}"
    assert np.isfinite(x32).all(), f"encoded values beyond float32's range on {where}"
    assert y.shape == x.shape and y.dtype == x.dtype, (y.shape, y.dtype, where)
    assert np.isfinite(y).all(), f"decodes to non-finite values on {where}"
    if not x.size:
        return
    x64 = x.astype(np.float64).reshape(-1)
    y64 = y.astype(np.float64).reshape(-1)
    if not x64.any():
        assert not y64.any(), f"an all-zero update decodes to max |y| {np.abs(y64).max()}"
    assert_error_bounded(config, x, y, payload, where)
    if config["id"] == "rdq" and "step" in config:
        assert rdq_step(payload) == float(np.float32(config["step"])), where
    if config["id"] == "rdq" and "nmse" in config and x.dtype != np.float16:
        # the target holds in the quantizer's domain; a rotation adds its float32 rounding
        # (subnormal results round to multiples of 2**-149, in each direction)
        x32d = x32.reshape(-1).astype(np.float64)
        energy = float(np.sum(x32d**2))
        err = float(np.linalg.norm(y.reshape(-1).astype(np.float64) - x32d))
        allowed = math.sqrt(config["nmse"] * energy * 1.001)
        if config.get("rotate"):
            allowed += 2.0**-16 * math.sqrt(energy) + math.sqrt(x.size) * 2.0**-148
        assert err <= allowed + math.sqrt(x.size) * 2.0**-149, where


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


def ids(config: dict[str, Any]) -> str:
    return "-".join(f"{v}" for v in config.values())


@pytest.mark.parametrize("config", CONFIGS, ids=ids)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(x=updates())
def test_encoder_survives_finite_input(worker: Worker, config: dict[str, Any], x: Any) -> None:
    check(worker, config, x)


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=ids)
@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(x=updates())
def test_encoder_survives_finite_input_long(worker: Worker, config: dict[str, Any], x: Any) -> None:
    check(worker, config, x)


@pytest.mark.parametrize("config", CONFIGS, ids=ids)
@pytest.mark.parametrize("kind", KINDS)
def test_encoder_on_each_kind(worker: Worker, config: dict[str, Any], kind: str) -> None:
    """Every kind of input once per codec, whatever hypothesis draws."""
    rng = np.random.default_rng(11)
    for dtype in DTYPES:
        check(worker, config, make_update(kind, 3001, dtype, 0, rng))


def test_worker_reports_a_dead_encoder(worker: Worker) -> None:
    """The harness itself: a process that dies mid-request is reported, then restarted."""
    assert worker.run({"id": "identity"}, np.ones(3, np.float32), SEED)[0] == "ok"
    status, *_ = worker.run({"id": ABORT}, np.ones(3, np.float32), SEED)
    assert status == "died"
    assert worker.run({"id": "identity"}, np.ones(3, np.float32), SEED)[0] == "ok"
