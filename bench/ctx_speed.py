"""Speed of RDQ's coders at 10M params, one core, rate control included.

Three synthetic updates of about 10M float32 values: CNN-shaped (a conv kernel and a wide
dense layer with rank-1 row/column scales and zero columns), LSTM-shaped (four 4096 × 610
gate matrices with row/column scales) and a flat Laplace vector. Each coder encodes at
``nmse=0.05`` and decodes; best of ``--repeat`` runs, next to a memory copy of the update
in the same run (the ratio is what compares across machines).

    python bench/ctx_speed.py
    python bench/ctx_speed.py --rate bits_per_param=1.0   # another rate mode
    python bench/ctx_speed.py --rdoq   # and levels="rdoq" with the context coder
    python bench/ctx_speed.py --profile   # where one CNN-shaped encode spends its time
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

import numpy as np

import fedcodec


def structured(rows: int, cols: int, rng: np.random.Generator, zero_every: int = 0) -> Any:
    scale = np.outer(np.abs(rng.standard_t(3, rows)), np.abs(rng.standard_t(3, cols)))
    if zero_every:
        scale[:, ::zero_every] = 0.0
    return (scale * rng.laplace(size=(rows, cols)) * 1e-3).astype(np.float32)


def updates(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "cnn-shaped": {
            "conv.weight": structured(64, 800, rng).reshape(64, 32, 5, 5),
            "fc.weight": structured(1024, 9700, rng, zero_every=5),
            "fc.bias": rng.laplace(size=1024).astype(np.float32) * 1e-3,
        },
        "lstm-shaped": {f"w{k}": structured(4096, 610, rng) for k in range(4)},
        "flat": {"x": (rng.laplace(size=10_000_000) * 1e-3).astype(np.float32)},
    }


def best(f: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--coders", nargs="+", default=["ans", "auto", "ctx"])
    p.add_argument("--rate", default="nmse=0.05", help="rate mode=value (default nmse=0.05)")
    p.add_argument("--rdoq", action="store_true", help='also coder=ctx with levels="rdoq"')
    p.add_argument(
        "--profile", action="store_true", help="cProfile one CNN-shaped encode with coder=ctx"
    )
    args = p.parse_args()
    mode, value = args.rate.split("=")
    rate = {mode: float(value)}
    if args.profile:
        import cProfile
        import pstats

        vector, layout = fedcodec.flatten(updates()["cnn-shaped"])
        codec = fedcodec.RDQ(**rate, coder="ctx")
        codec.encode_vector(vector, layout=layout)  # compiles the kernels
        with cProfile.Profile() as prof:
            codec.encode_vector(vector, layout=layout)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(20)
        return
    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}, {args.rate}")
    print("update        params  coder  bits/param  encode M/s  decode M/s  enc ×copy  dec ×copy")
    for name, update in updates().items():
        vector, layout = fedcodec.flatten(update)
        n = vector.size
        copy = best(lambda v=vector: v.copy(), args.repeat)
        variants = [(c, {"coder": c}) for c in args.coders]
        if args.rdoq:
            variants.append(("rdoq", {"coder": "ctx", "levels": "rdoq"}))
        for coder, config in variants:
            codec = fedcodec.RDQ(**rate, **config)
            payload = codec.encode_vector(vector, layout=layout)  # compiles the kernels
            enc = best(
                lambda c=codec, v=vector, lay=layout: c.encode_vector(v, layout=lay), args.repeat
            )
            dec = best(lambda c=codec, pl=payload: c.decode(pl), args.repeat)
            print(
                f"{name:12} {n:8d}  {coder:5}  {8 * len(payload) / n:10.3f}  {n / enc / 1e6:10.1f}"
                f"  {n / dec / 1e6:10.1f}  {enc / copy:9.0f}  {dec / copy:9.0f}"
            )


if __name__ == "__main__":
    main()
