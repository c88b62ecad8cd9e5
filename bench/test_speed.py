"""Encode/decode throughput of RDQ at ~1 bit/param, rate control included, and of its
kernels, next to a memory copy of the same update (compare ratios within one run).

Run: ``make bench`` (writes bench/results/latest.json).
"""

from __future__ import annotations

import numpy as np
import pytest
from fedcodec.kernels import ans as _ans
from fedcodec.kernels import rng

import fedcodec
from fedcodec import RDQ, kernels

CONFIGS = {
    "ans-rdo": {"bits_per_param": 1.0, "coder": "ans"},
    "ans-uniform": {"bits_per_param": 1.0, "levels": "uniform", "coder": "ans"},
    "rleg": {"bits_per_param": 1.0, "coder": "rleg"},
    "ans-constriction": {"bits_per_param": 1.0, "ans_backend": "constriction", "coder": "ans"},
    "ans-step": {"step_rms": 1.0, "levels": "uniform", "coder": "ans"},
    "dither-rotate": {"bits_per_param": 1.0, "rounding": "dither", "rotate": True, "coder": "ans"},
    # the default coder on a flat vector: the best of ANS and run-length gamma
    "default-flat": {"bits_per_param": 1.0},
}
#: The default (structure-aware) coder on a matrix with row/column structure.
MATRIX_CONFIGS = {
    "ctx-nmse": {"nmse": 0.05},
    "ctx-bpp": {"bits_per_param": 1.0},
}


BASELINES = {
    "identity": {"id": "identity"},
    "fp16": {"id": "fp16"},
    "bf16": {"id": "bf16"},
    "int8": {"id": "int8"},
    "topk-1%": {"id": "topk", "fraction": 0.01},
    "qsgd-s4-b512": {"id": "qsgd", "num_levels": 4, "bucket_size": 512},
    "drive": {"id": "drive"},
    "eden-2bit": {"id": "eden", "bits": 2},
    "threelc": {"id": "threelc"},
}


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_encode(benchmark, update: np.ndarray, name: str) -> None:  # type: ignore[no-untyped-def]
    codec = fedcodec.get_codec(BASELINES[name])
    codec.encode(update[:1000], seed=1)
    payload = benchmark(codec.encode, update, seed=1)
    benchmark.extra_info.update(params=update.size, bits_per_param=8 * len(payload) / update.size)


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_decode(benchmark, update: np.ndarray, name: str) -> None:  # type: ignore[no-untyped-def]
    codec = fedcodec.get_codec(BASELINES[name])
    payload = codec.encode(update, seed=1)
    codec.decode(payload, seed=1)
    out = np.empty_like(update)
    benchmark(codec.decode, payload, seed=1, out=out)
    benchmark.extra_info.update(params=update.size, bits_per_param=8 * len(payload) / update.size)


def test_memory_copy(benchmark, update: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """The reference: copying the update once."""
    out = np.empty_like(update)
    benchmark(np.copyto, out, update)
    benchmark.extra_info["params"] = update.size


def bench_encode(benchmark, x: np.ndarray, config: dict) -> None:  # type: ignore[no-untyped-def]
    codec = RDQ(**config)
    codec.encode(x[:10], seed=1)  # compile
    payload = benchmark(codec.encode, x, seed=1)
    benchmark.extra_info.update(params=x.size, bits_per_param=8 * len(payload) / x.size)


def bench_decode(benchmark, x: np.ndarray, config: dict) -> None:  # type: ignore[no-untyped-def]
    codec = RDQ(**config)
    payload = codec.encode(x, seed=1)
    codec.decode(payload, seed=1)
    out = np.empty_like(x)
    benchmark(codec.decode, payload, seed=1, out=out)
    benchmark.extra_info.update(params=x.size, bits_per_param=8 * len(payload) / x.size)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_encode(benchmark, update: np.ndarray, name: str) -> None:  # type: ignore[no-untyped-def]
    bench_encode(benchmark, update, CONFIGS[name])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_decode(benchmark, update: np.ndarray, name: str) -> None:  # type: ignore[no-untyped-def]
    bench_decode(benchmark, update, CONFIGS[name])


@pytest.mark.parametrize("name", list(MATRIX_CONFIGS))
def test_ctx_encode(benchmark, matrix: np.ndarray, name: str) -> None:  # type: ignore[no-untyped-def]
    bench_encode(benchmark, matrix, MATRIX_CONFIGS[name])


@pytest.mark.parametrize("name", list(MATRIX_CONFIGS))
def test_ctx_decode(benchmark, matrix: np.ndarray, name: str) -> None:  # type: ignore[no-untyped-def]
    bench_decode(benchmark, matrix, MATRIX_CONFIGS[name])


def test_rate_search(benchmark, update: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """RDQ's rate control alone (the ANS coder's: subsample search and the exact
    full-message pass)."""
    from fedcodec.kernels import max_abs_and_sumsq

    from fedcodec.rate_control import Solver

    codec = RDQ(bits_per_param=1.0, coder="ans")
    max_abs, sumsq, _ = max_abs_and_sumsq(update)
    stream = rng.stream_seed(0, rng.STREAM_DITHER)
    Solver(codec, update, max_abs, sumsq, stream).solve()
    benchmark(lambda: Solver(codec, update, max_abs, sumsq, stream).solve())
    benchmark.extra_info["params"] = update.size


def test_kernel_quantize(benchmark, update: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    benchmark(kernels.quantize, update, 2e-3)


def test_kernel_rotate(benchmark, update: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    work = update.copy()
    benchmark(kernels.rotate, work, 3)


def _symbols(update: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    q = kernels.quantize(update, 2.5e-3)
    q = np.clip(q, -8, 8) + 8
    counts = np.bincount(q, minlength=17)
    from fedcodec.coders.ans import coder_frequencies, quantize_counts

    freq = coder_frequencies(quantize_counts(counts))
    cdf, lut = kernels.build_ans_tables(freq, 12)
    return q.astype(np.uint16), freq, cdf, lut


def test_kernel_ans_encode_4_streams(benchmark, update: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    symbols, freq, cdf, _ = _symbols(update)
    words = np.empty(update.size, np.uint32)
    counts = np.zeros(4, np.int64)
    benchmark(_ans._ans_encode4, symbols, cdf, freq, words, counts)


def test_kernel_ans_decode_4_streams(benchmark, update: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    symbols, freq, cdf, lut = _symbols(update)
    buf = np.empty(update.size, np.uint32)
    counts = np.zeros(4, np.int64)
    _ans._ans_encode4(symbols, cdf, freq, buf, counts)
    cap = buf.size // 4
    words = np.concatenate([buf[k * cap : k * cap + counts[k]] for k in range(4)])
    out = np.empty(update.size, np.uint16)
    benchmark(_ans._ans_decode4, words, counts, cdf, freq, lut, 12, out)


def test_constriction_ans_decode(benchmark, update: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """constriction's own decoder on one stream of the same symbols, for the speed-up."""
    import constriction

    symbols, freq, _, _ = _symbols(update)
    model = constriction.stream.model.Categorical(freq.astype(np.float64) - 1.0, perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols.astype(np.int32), model)
    words = coder.get_compressed()

    def decode() -> np.ndarray:
        return constriction.stream.stack.AnsCoder(words).decode(model, symbols.size)

    benchmark(decode)


def test_kernel_rleg_encode(benchmark, update: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    q = kernels.quantize(update, 2.8e-3, offset=0.32)
    benchmark(kernels.rleg_encode, q)


def test_uniform_stream(benchmark, update: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    benchmark(rng.uniform, 1, rng.STREAM_DITHER, update.size)
