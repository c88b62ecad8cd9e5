"""Encode and decode throughput of every codec, next to a memory copy and zstd.

``fedcodec speed`` (or :func:`speed`) times each codec on Laplace-shaped float32 updates
(seeded) of the given sizes: best of ``repeats`` runs, in M params/s, and as a multiple of
the time of one ``np.copyto`` of the same update measured in the same run (compare these
ratios across machines, not the absolute figures). zstd (level 3, on the raw float32
bytes) is included when the ``zstandard`` module is installed.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from ..codec import get_codec
from .frontier import label, machine_info, versions

SCHEMA = "fedcodec.speed/1"
DEFAULT_CODECS: list[dict[str, Any]] = [
    {"id": "rdq", "bits_per_param": 1.0},
    {"id": "rdq", "bits_per_param": 1.0, "coder": "ans"},
    {"id": "rdq", "bits_per_param": 1.0, "coder": "rleg"},
    {"id": "rdq", "bits_per_param": 2.0, "rounding": "dither", "rotate": True},
    {"id": "topk", "fraction": 0.01},
    {"id": "qsgd", "num_levels": 4, "bucket_size": 512},
    {"id": "drive"},
    {"id": "eden", "bits": 2},
    {"id": "threelc"},
    {"id": "int8"},
    {"id": "fp16"},
    {"id": "bf16"},
    {"id": "identity"},
]


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def speed(
    sizes: Sequence[int] = (1_000_000, 10_000_000),
    configs: Sequence[Mapping[str, Any]] = DEFAULT_CODECS,
    *,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for n in sizes:
        rows += _measure(n, configs, repeats, seed)
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sizes": list(sizes),
        "repeats": repeats,
        "rows": rows,
        "machine": machine_info(),
        "versions": versions(),
    }


def _measure(
    n: int, configs: Sequence[Mapping[str, Any]], repeats: int, seed: int
) -> list[dict[str, Any]]:
    x = (np.random.default_rng(seed).laplace(size=n) * 1e-3).astype(np.float32)
    out = np.empty_like(x)
    copy_s, _ = _best(partial(np.copyto, out, x), max(repeats, 5))
    rows = [_row("memory copy (np.copyto)", n, copy_s, copy_s, 32.0, copy_s)]
    try:
        zstandard: Any = importlib.import_module("zstandard")
    except ImportError:
        zstandard = None
    if zstandard is not None:
        raw = x.tobytes()
        enc_s, comp = _best(partial(zstandard.ZstdCompressor(level=3).compress, raw), repeats)
        dec_s, _ = _best(partial(zstandard.ZstdDecompressor().decompress, comp), repeats)
        rows.append(_row("zstd level 3 (raw float32)", n, enc_s, dec_s, 8 * len(comp) / n, copy_s))
    for config in configs:
        codec = get_codec(config)
        codec.decode(codec.encode(x[:4096], seed=1), seed=1)  # compile
        enc_s, payload = _best(partial(codec.encode, x, seed=1), repeats)
        dec_s, _ = _best(partial(codec.decode, payload, seed=1, out=out), repeats)
        rows.append(_row(label(config), n, enc_s, dec_s, 8 * len(payload) / n, copy_s))
    return rows


def _row(
    name: str, n: int, enc_s: float, dec_s: float, bpp: float, copy_s: float
) -> dict[str, Any]:
    return {
        "codec": name,
        "params": n,
        "bits_per_param": bpp,
        "encode_s": enc_s,
        "decode_s": dec_s,
        "encode_mparams_per_s": n / enc_s / 1e6,
        "decode_mparams_per_s": n / dec_s / 1e6,
        "encode_x_copy": enc_s / copy_s,
        "decode_x_copy": dec_s / copy_s,
    }


def markdown_table(doc: Mapping[str, Any]) -> str:
    lines = [
        "| codec | params | bits/param | encode M/s | decode M/s | encode × copy | decode × copy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['codec']} | {r['params']:,} | {r['bits_per_param']:.3f} "
            f"| {r['encode_mparams_per_s']:.1f} | {r['decode_mparams_per_s']:.1f} "
            f"| {r['encode_x_copy']:.1f} | {r['decode_x_copy']:.1f} |"
        )
    return "\n".join(lines)
