"""What ``levels="rdoq"`` (levels chosen with the context coder's rates) saves on real
updates: bits at matched NMSE against RDQ's default levels, for a few RDOQ multipliers.

For each harness run given (its ``updates.npz`` and ``layout.json``), each target NMSE and
each multiplier, the mean over the first ``--max-updates`` updates of bits(rdoq) /
bits(default), both coded as the model's tensors with the default (context) coder, and
the encode time of each.

    python bench/rdoq_gain.py runs/cnn runs/lstm
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import fedcodec
from fedcodec import rate_control
from fedcodec.tools import frontier as fr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--nmse", type=float, nargs="+", default=[0.01, 0.05, 0.2])
    p.add_argument("--lambdas", type=float, nargs="+", default=[rate_control.RDOQ_LAMBDA])
    p.add_argument("--max-updates", type=int, default=4)
    args = p.parse_args()
    print("run  nmse  lambda  bits rdoq/default  nmse rdoq  encode s default -> rdoq")
    for run in args.runs:
        updates = fr.load_updates(run)
        layout = fr.load_layout(run)
        for target in args.nmse:
            for lam in args.lambdas:
                rate_control.RDOQ_LAMBDA = lam
                rows = []
                for key in sorted(updates)[: args.max_updates]:
                    x = updates[key]
                    update = fedcodec.unflatten(x, layout) if layout is not None else x
                    m = []
                    for levels in ("rdo", "rdoq"):
                        codec = fedcodec.RDQ(nmse=target, levels=levels)
                        t0 = time.perf_counter()
                        payload = codec.encode(update)
                        seconds = time.perf_counter() - t0
                        m.append({**fedcodec.measure(codec, update, payload=payload), "s": seconds})
                    rows.append((m[1]["bits"] / m[0]["bits"], m[1]["nmse"], m[0]["s"], m[1]["s"]))
                r = np.mean(rows, axis=0)
                print(
                    f"{run}  {target:g}  {lam:g}  {r[0]:.3f}  {r[1]:.4f}  {r[2]:.3f} -> {r[3]:.3f}"
                )


if __name__ == "__main__":
    main()
