"""Speed of RDQ's coders at 10M params, rate control included.

Four synthetic updates of about 10M float32 values: issue 26's matrix (2,500 × 4,000:
log-normal row scales × log-normal column scales × Laplace × 1e-4, ``default_rng(0)`` in
that order), CNN-shaped (a conv kernel and a wide dense layer with rank-1 row/column scales
and zero columns), LSTM-shaped (four 4096 × 610 gate matrices with row/column scales) and a
flat Laplace vector. Each coder encodes at ``nmse=0.05`` (or ``--rate``) and decodes, on
each of ``--threads``; best of ``--repeat`` runs, next to a memory copy of the update in
the same run (the ratio is what compares across machines). ``--json`` writes the rows.

    python bench/ctx_speed.py
    python bench/ctx_speed.py --coders ans ctx ctx-static --threads 1 2 --json out.json
    python bench/ctx_speed.py --rate bits_per_param=1.0   # another rate mode
    python bench/ctx_speed.py --rdoq   # and levels="rdoq" with the context coder
    python bench/ctx_speed.py --profile   # where one CNN-shaped encode spends its time
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import fedcodec
from fedcodec.tools import frontier


def structured(rows: int, cols: int, rng: np.random.Generator, zero_every: int = 0) -> Any:
    scale = np.outer(np.abs(rng.standard_t(3, rows)), np.abs(rng.standard_t(3, cols)))
    if zero_every:
        scale[:, ::zero_every] = 0.0
    return (scale * rng.laplace(size=(rows, cols)) * 1e-3).astype(np.float32)


def issue_matrix() -> np.ndarray:
    """Issue 26's 10M-param matrix update."""
    rng = np.random.default_rng(0)
    rows = rng.lognormal(0.0, 1.0, 2500)
    cols = rng.lognormal(0.0, 1.0, 4000)
    return (np.outer(rows, cols) * rng.laplace(size=(2500, 4000)) * 1e-4).astype(np.float32)


def updates(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "matrix-10M": {"w": issue_matrix()},
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
    p.add_argument(
        "--coders", nargs="+", default=["ans", "auto", "ctx", "ctx-stream", "ctx-static"]
    )
    p.add_argument("--threads", nargs="+", type=int, default=[1])
    p.add_argument("--only", nargs="+", help="these updates only (names as printed)")
    p.add_argument("--json", type=Path, help="write the rows here")
    p.add_argument("--note", default="", help="said with the machine (e.g. '2 cores, idle')")
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
    machine = frontier.machine_info()["processor"]
    print(f"{machine}, numpy {np.__version__}, {args.rate}")
    print(
        "update        params  coder       threads  bits/param  encode M/s  decode M/s"
        "  enc ×copy  dec ×copy"
    )
    rows = []
    for name, update in updates().items():
        if args.only and name not in args.only:
            continue
        vector, layout = fedcodec.flatten(update)
        n = vector.size
        copy = best(lambda v=vector: v.copy(), args.repeat)
        variants = [(c, {"coder": c}) for c in args.coders]
        if args.rdoq:
            variants.append(("rdoq", {"coder": "ctx", "levels": "rdoq"}))
        for coder, config in variants:
            codec = fedcodec.RDQ(**rate, **config)
            payload = codec.encode_vector(vector, layout=layout)  # compiles the kernels
            for threads in args.threads:
                again = codec.encode_vector(vector, layout=layout, threads=threads)
                assert again == payload, "the bytes depend on the thread count"
                enc = best(
                    lambda c=codec, v=vector, lay=layout, t=threads: c.encode_vector(
                        v, layout=lay, threads=t
                    ),
                    args.repeat,
                )
                dec = best(
                    lambda c=codec, pl=payload, t=threads: c.decode(pl, threads=t), args.repeat
                )
                row = {
                    "update": name, "params": n, "coder": coder, "threads": threads,
                    "bits_per_param": 8 * len(payload) / n, "encode_mps": n / enc / 1e6,
                    "decode_mps": n / dec / 1e6, "copy_s": copy, "encode_s": enc, "decode_s": dec,
                }  # fmt: skip
                rows.append(row)
                print(
                    f"{name:12} {n:8d}  {coder:10}  {threads:7d}  {row['bits_per_param']:10.3f}"
                    f"  {row['encode_mps']:10.1f}  {row['decode_mps']:10.1f}"
                    f"  {enc / copy:9.0f}  {dec / copy:9.0f}"
                )
    if args.json:
        doc = {"machine": machine, "note": args.note, "rate": args.rate, "repeat": args.repeat}
        args.json.write_text(json.dumps({**doc, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
