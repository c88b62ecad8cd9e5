"""Peak memory of encoding and decoding an update, as a multiple of its size.

Two 1M-param updates: a flat Laplace vector and a 1000 × 1000 matrix with row/column
structure (``fedcodec.tools.sample_updates.structured_matrix``), which RDQ's default coder
codes with side information (in one stream); and with ``--large``, for the default
configurations (``LARGE_CONFIGS``), issue 26's 2,500 × 4,000 matrix
(``bench/ctx_speed.py``), which the default codes in ten blocks. RDOQ (``levels="rdoq"``)
only runs on matrices.

Run: python bench/memory.py   (tracemalloc sees every NumPy allocation)
     python bench/memory.py --large --json bench/results/memory.json   (also the 10M
     matrix; writes the rows)
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from ctx_speed import issue_matrix

from fedcodec import RDQ
from fedcodec.tools.sample_updates import laplace, structured_matrix

CONFIGS: list[dict[str, Any]] = [
    {"bits_per_param": 1.0, "coder": "ans"},
    {"bits_per_param": 4.0, "coder": "ans"},
    {"bits_per_param": 1.0, "coder": "rleg"},
    {"nmse": 0.01, "rotate": True, "rounding": "dither"},
    {"bits_per_param": 1.0, "ans_backend": "constriction", "coder": "ans"},
    {"bits_per_param": 1.0},
    {"nmse": 0.05},
    {"nmse": 0.05, "levels": "rdoq"},
    {"bits_per_param": 1.0, "levels": "rdoq"},
]


#: the configurations also measured on the 10M-param matrix
LARGE_CONFIGS: list[dict[str, Any]] = [{"bits_per_param": 1.0}, {"nmse": 0.05}]


def peaks(config: dict[str, Any], x: np.ndarray) -> tuple[float, float]:
    """Encode and decode peaks (tracemalloc) as multiples of ``x.nbytes``."""
    codec = RDQ(**config)
    codec.decode(codec.encode(x, seed=1), seed=1)  # compile first
    tracemalloc.start()
    payload = codec.encode(x, seed=1)
    enc = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    tracemalloc.start()
    codec.decode(payload, seed=1)
    dec = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return enc / x.nbytes, dec / x.nbytes


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="also write the rows (and the machine) here")
    p.add_argument("--large", action="store_true", help="also issue 26's 10M-param matrix")
    args = p.parse_args(argv)
    updates = {
        "flat": laplace(1_000_000, seed=0),
        "matrix": structured_matrix(1000, 1000, seed=0, zero_every=5),
    }
    if args.large:
        updates["matrix-10M"] = issue_matrix()
    print("| update | config | encode peak / update | decode peak / update |")
    print("|---|---|---:|---:|")
    rows: list[dict[str, Any]] = []
    for config in CONFIGS:
        for name, x in updates.items():
            if config.get("levels") == "rdoq" and x.ndim < 2:
                continue
            if name == "matrix-10M" and config not in LARGE_CONFIGS:
                continue
            enc, dec = peaks(config, x)
            print(f"| {name} | `{json.dumps(config)}` | {enc:.2f} | {dec:.2f} |")
            rows.append({"update": name, "params": int(x.size), "config": config,
                         "encode_peak_x": enc, "decode_peak_x": dec})  # fmt: skip
    if args.json:
        from fedcodec.tools.frontier import machine_info

        doc = {"rows": rows, "machine": machine_info(),
               "command": "python bench/memory.py " + " ".join(argv or sys.argv[1:])}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
