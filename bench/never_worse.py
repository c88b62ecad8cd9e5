"""Is RDQ's default (structure-aware) coder ever larger than ``coder="auto"``?

For every saved client update of the given harness runs (their ``updates.npz`` and
``layout.json``) and every rate target, both coders encode the update as the model's
tensors. For NMSE targets the script prints the payload ratio default / auto, for
bits/param targets the NMSE ratio (at payloads within the 1 % rate tolerance), and the
worst of each.

    python bench/never_worse.py runs/lstm_small runs/demo/run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import fedcodec
from fedcodec.tools import frontier as fr

TARGETS = [{"nmse": 0.01}, {"nmse": 0.05}, {"nmse": 0.2}, {"bits_per_param": 0.5},
           {"bits_per_param": 2.0}]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--max-updates", type=int, default=8)
    args = p.parse_args()
    worst = 0.0
    for run in args.runs:
        updates = fr.load_updates(run)
        layout = fr.load_layout(run)
        for target in TARGETS:
            ratios = []
            for key in sorted(updates)[: args.max_updates]:
                x = updates[key]
                update = fedcodec.unflatten(x, layout) if layout is not None else x
                m = {c: fedcodec.measure(fedcodec.RDQ(**target, coder=c), update, seed=1)
                     for c in ("ctx", "auto")}  # fmt: skip
                what = "bits" if "nmse" in target else "nmse"
                ratios.append(m["ctx"][what] / m["auto"][what])
            worst = max(worst, max(ratios))
            print(f"{run}  {target}  default/auto {what}: mean {np.mean(ratios):.3f}, "
                  f"max {max(ratios):.3f}")  # fmt: skip
    print(f"worst ratio default/auto: {worst:.4f}")


if __name__ == "__main__":
    main()
