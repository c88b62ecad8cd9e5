"""Compile every codec's numba kernels once, into numba's on-disk cache.

fedcodec's kernels are compiled on first use and cached on disk (``cache=True``); in a
fresh environment the first ``encode`` of an update therefore spends seconds compiling.
``make install`` runs this module once, so that later processes load the compiled
kernels instead. After ``pip install fedcodec``, run it yourself::

    python -m fedcodec.warmup      # or: fedcodec warmup

Where the cache goes is numba's choice: next to the kernels' source when that folder is
writable, else a per-user cache folder; ``NUMBA_CACHE_DIR`` sets it (for a read-only
install, or a cache shared by a cluster's workers). A process that runs with the same
``NUMBA_CACHE_DIR`` (or none, as here) finds the warmed kernels.

Examples
--------
>>> from fedcodec.warmup import warm_up
>>> calls = warm_up()  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

#: RDQ configurations whose code paths (coders, roundings, level choices, rate modes,
#: rotation) have kernels of their own. Every other codec runs with its defaults too.
RDQ_CONFIGS: tuple[dict[str, Any], ...] = (
    {},
    {"nmse": 0.05},
    {"lmbda": 1e-3},
    {"step_rms": 1.0},
    {"step": 1e-3},
    {"levels": "uniform"},
    {"levels": "rdoq", "nmse": 0.05},
    {"rounding": "stochastic"},
    {"rounding": "dither"},
    {"rounding": "dither", "rotate": True},
    {"coder": "ans"},
    {"coder": "ans", "levels": "uniform"},
    {"coder": "ans", "rounding": "dither", "rotate": True},
    {"coder": "rleg"},
    {"coder": "auto"},
    {"coder": "ctx-static"},
    {"coder": "ctx-blocks"},
    {"coder": "ctx-wide"},
)

#: Other codecs' configurations beyond their defaults that take other kernels.
OTHER_CONFIGS: tuple[dict[str, Any], ...] = (
    {"id": "eden", "bits": 0.5},
    {"id": "eden", "bits": 1.5},
    {"id": "topk", "fraction": 0.3},
)


def _updates(rng: np.random.Generator) -> Iterator[tuple[str, Any]]:
    """Small updates of every input kind the codecs take: flat float32, float16 and
    float64 vectors, and a mapping of a matrix and a vector (the structure-aware path)."""
    flat = rng.laplace(scale=1e-3, size=70_000).astype(np.float32)
    yield "float32", flat
    yield "float16", flat[:5_000].astype(np.float16)
    yield "float64", flat[:5_000].astype(np.float64)
    rows = rng.lognormal(size=(64, 1))
    cols = rng.lognormal(size=(1, 300))
    matrix = (rows * cols * rng.laplace(size=(64, 300)) * 1e-4).astype(np.float32)
    yield "mapping", {"weight": matrix, "bias": flat[:64].copy()}


def _round_trip(codec: Any, update: Any) -> None:
    payload = codec.encode(update, seed=1)
    if isinstance(update, dict):
        from .layout import flatten

        _, layout = flatten(update)
        codec.decode(payload, seed=1, layout=layout)
    else:
        codec.decode(payload, seed=1)


def warm_up(progress: Callable[[str], None] | None = None) -> int:
    """Encode and decode small updates with every codec and every RDQ code path, so that
    numba compiles (and caches) each kernel for the input types it will meet.

    Parameters
    ----------
    progress : callable, optional
        Called with a short label before each configuration.

    Returns
    -------
    int
        The number of encode/decode round trips run.
    """
    from . import ErrorFeedback, available_codecs, get_codec, measure

    configs = [{"id": "rdq", **c} for c in RDQ_CONFIGS]
    configs += [{"id": cid} for cid in sorted(available_codecs()) if cid != "rdq"]
    configs += list(OTHER_CONFIGS)
    updates = list(_updates(np.random.default_rng(0)))
    calls = 0
    for config in configs:
        if progress:
            progress(str(config))
        codec = get_codec(config)
        for _, update in updates:
            _round_trip(codec, update)
            calls += 1
    # the helpers around the codecs: measurement, error feedback, frames
    codec = get_codec({"id": "rdq"})
    flat = updates[0][1]
    measure(codec, flat, seed=1)
    ErrorFeedback(get_codec({"id": "topk"})).encode(flat, seed=1)
    frames = codec.encode(flat, seed=1, frame_elements=30_000, threads=1)
    codec.decode(frames, seed=1, threads=1)
    # a matrix large enough that the static context coder's models pay (its decoder)
    rng = np.random.default_rng(1)
    scales = rng.lognormal(size=(300, 1)) * rng.lognormal(size=(1, 400))
    matrix = (scales * rng.laplace(size=(300, 400)) * 1e-4).astype(np.float32)
    static = get_codec({"id": "rdq", "coder": "ctx-static", "nmse": 0.05})
    static.decode(static.encode(matrix, seed=1), seed=1)
    return calls + 4


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fedcodec.warmup",
        description="Compile every codec's numba kernels into numba's on-disk cache "
        "(NUMBA_CACHE_DIR sets where), so later processes start fast.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    from numba.core import config as numba_config

    cache_dir = str(getattr(numba_config, "CACHE_DIR", "") or "")
    t0 = time.perf_counter()
    show = None if args.quiet else (lambda label: print(f"  {label}", flush=True))
    calls = warm_up(show)
    where = cache_dir or "numba's default (beside the kernels, or a per-user folder)"
    print(f"fedcodec: compiled the kernels of {calls} codec round trips in "
          f"{time.perf_counter() - t0:.0f} s; cache: {where}")  # fmt: skip
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
