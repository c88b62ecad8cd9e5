"""Framed payloads at scale: what frames cost, and what threads buy.

An update of ``--params`` float32 values (a stack of 4096-column matrices with row/column
structure, 1e-3 scale) is coded by RDQ's default at ``nmse=0.05`` (and, with ``--rate``,
another mode) as one frame and in frames of ``--frame`` elements (default 2**24), then
decoded; encode and decode run with 1 thread and with all cores. Prints bits/param, NMSE,
and seconds; one line per run.

    python bench/frames.py --params 100000000
    python bench/frames.py --params 100000000 --json bench/results/frames.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import fedcodec
from fedcodec import container
from fedcodec.codec import default_threads
from fedcodec.tools.sample_updates import structured_matrix

CHUNK = 1 << 22


def build(n: int, seed: int = 0) -> tuple[np.ndarray, fedcodec.Layout]:
    """``n`` values as 4096-column matrices of 2048 rows (the last one shorter)."""
    cols, rows = 4096, 2048
    parts, entries = [], []
    left, k = n, 0
    while left > 0:
        r = min(rows, -(-left // cols))
        m = structured_matrix(r, cols, seed=seed + k, zero_every=7).reshape(-1)[:left]
        parts.append(m)
        shape = (r, cols) if m.size == r * cols else (m.size,)
        entries.append((f"w{k}", shape, "float32"))
        left -= m.size
        k += 1
    return np.concatenate(parts), fedcodec.Layout(tuple(entries))


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    """Best of ``repeat`` runs, and the result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        out = None  # free the last result before the next run
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=int, default=100_000_000)
    p.add_argument("--frame", type=int, default=container.FRAME_ELEMENTS)
    p.add_argument("--rate", default="nmse=0.05", help="rate mode=value")
    p.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    p.add_argument("--json", type=Path, help="also write the rows (and the machine) here")
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    mode, value = args.rate.split("=")
    x, layout = build(args.params)
    energy = float(np.dot(x.astype(np.float64), x.astype(np.float64)))
    codec = fedcodec.RDQ(**{mode: float(value)})
    cores = default_threads()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.rate}")
    print("frames   threads  bits/param  nmse      encode s  decode s")
    codec.encode_vector(x[:100_000], layout=None)  # compile
    for frame in (max(args.params, 1), args.frame):
        for threads in sorted({1, cores}):
            enc, payload = timed(
                lambda f=frame, t=threads: codec.encode_vector(
                    x, layout=layout, frame_elements=f, threads=t
                ),
                args.repeat,
            )
            dec, y = timed(lambda pl=payload, t=threads: codec.decode(pl, threads=t), args.repeat)
            sse = sum(  # in float64, a chunk at a time
                float(np.sum((x[i : i + CHUNK].astype(np.float64) - y[i : i + CHUNK]) ** 2))
                for i in range(0, x.size, CHUNK)
            )
            frames = len(container.unpack_frames(payload)) if container.is_framed(payload) else 1
            print(
                f"{frames:6d}   {threads:7d}  {8 * len(payload) / x.size:10.4f}  "
                f"{sse / energy:.5f}  {enc:8.2f}  {dec:8.2f}"
            )
            rows.append({"params": int(x.size), "frames": frames, "threads": threads,
                         "bits_per_param": 8 * len(payload) / x.size, "nmse": sse / energy,
                         "encode_s": enc, "decode_s": dec})  # fmt: skip
    if args.json:
        from fedcodec.tools.frontier import machine_info

        doc = {"rows": rows, "rate": args.rate, "repeat": args.repeat, "machine": machine_info(),
               "command": "python bench/frames.py " + " ".join(sys.argv[1:])}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
