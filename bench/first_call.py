"""The first call in a new process: ``get_codec({"id": "rdq"})`` + ``encode`` + ``decode``
of 1M float32 values, timed in fresh Python processes (the import of fedcodec not counted).

Run: ``.venv/bin/python bench/first_call.py [--runs 5] [--cache-dir DIR] [--out FILE.json]``

With a warmed numba cache (``make install`` runs ``python -m fedcodec.warmup``) this is the
time to load the compiled kernels and code once; with an empty one (``--cache-dir`` a new
folder, ``--no-warmup``) it includes compiling them. Target (issue 24): under 1.5 s after
``make install``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from fedcodec.tools.frontier import machine_info

CHILD = r"""
import time
import numpy as np
import fedcodec
x = np.random.default_rng(0).laplace(scale=1e-3, size=1_000_000).astype(np.float32)
t0 = time.perf_counter()
codec = fedcodec.get_codec({"id": "rdq"})
payload = codec.encode(x, seed=1)
t1 = time.perf_counter()
fedcodec.decode(payload, seed=1)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def first_calls(runs: int, env: dict[str, str]) -> list[tuple[float, float]]:
    out = []
    for _ in range(runs):
        line = subprocess.run(
            [sys.executable, "-c", CHILD], env=env, check=True, capture_output=True, text=True
        ).stdout.split()
        out.append((float(line[0]), float(line[1])))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cache-dir", default=None, help="NUMBA_CACHE_DIR for the children")
    p.add_argument("--no-warmup", action="store_true", help="time a cold (empty) cache")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    env = dict(os.environ)
    if args.no_warmup:
        cold = []
        for _ in range(args.runs):  # a new empty cache for each run
            with tempfile.TemporaryDirectory() as d:
                cold += first_calls(1, {**env, "NUMBA_CACHE_DIR": d})
        times = cold
    else:
        if args.cache_dir:
            env["NUMBA_CACHE_DIR"] = args.cache_dir
            subprocess.run([sys.executable, "-m", "fedcodec.warmup", "-q"], env=env, check=True)
        times = first_calls(args.runs, env)
    total = [e + d for e, d in times]
    doc = {
        "cache": "cold" if args.no_warmup else "warm",
        "runs": args.runs,
        "encode_s": [round(e, 4) for e, _ in times],
        "decode_s": [round(d, 4) for _, d in times],
        "total_median_s": round(statistics.median(total), 4),
        "total_max_s": round(max(total), 4),
        "machine": machine_info(),
    }
    text = json.dumps(doc, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
