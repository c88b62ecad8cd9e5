"""The static-context coder's rate on real updates, against the adaptive one it replaces.

For each saved client update of a harness run (``fedcodec train ... --save-updates N``) and
each NMSE target: the payload bytes of ``RDQ(nmse=t)`` with ``coder="ctx-static"`` (static
contexts, coder id 3), ``"ctx"`` (the default: the adaptive binary coder, in blocks (id 4)
on updates of more than one block, else in one stream (id 2)), ``"ctx-stream"`` (always
id 2), ``"ans"`` and ``"rleg"``, each coded as a mapping with the model's layout, and the
NMSE each reached; ratios to each update's memoryless bound (``RDBound``), of the static
coder to the adaptive one and of the default to the one-stream coder. Writes
``bench/results/ctx_rate.json``.

    fedcodec train --task fashion_mnist --model cnn --rounds 2 --clients-per-round 4 \\
        --save-updates 2 --out runs/cnn --no-progress
    fedcodec train --task shakespeare --model lstm --rounds 2 --clients-per-round 4 \\
        --save-updates 2 --out runs/lstm --no-progress
    python bench/ctx_rate.py runs/cnn runs/lstm
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from structure_estimate import layout_of

import fedcodec
from fedcodec import container
from fedcodec.rdq import CODER_NAMES
from fedcodec.tools import frontier
from fedcodec.tools.rd_bound import RDBound

CODERS = ("ctx-static", "ctx", "ctx-stream", "ans", "rleg")
TARGETS = (0.01, 0.05, 0.2)
OUT = Path(__file__).parent / "results" / "ctx_rate.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="harness runs with updates.npz")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    rows = []
    for run in args.runs:
        layout = layout_of(run)
        with np.load(run / "updates.npz") as z:
            names = sorted(z.keys())
            updates = [z[k].astype(np.float32) for k in names]
        for name, x in zip(names, updates, strict=True):
            x64 = x.astype(np.float64)
            bound = RDBound.fit(x64)
            for t in TARGETS:
                row = {"run": str(run), "update": name, "params": int(x.size), "nmse": t}
                row["bound_bits_per_param"] = float(bound.bits_at(t))
                for coder in CODERS:
                    payload = fedcodec.RDQ(nmse=t, coder=coder).encode_vector(x, layout=layout)
                    y = fedcodec.decode(payload).astype(np.float64)
                    flags = container.unpack(payload).params[0]
                    row[coder] = {
                        "bits_per_param": 8 * len(payload) / x.size,
                        "nmse": float(((y - x64) ** 2).sum() / (x64**2).sum()),
                        "coder_written": CODER_NAMES[(flags >> 3 & 3) | (flags >> 6 & 1) << 2],
                    }
                rows.append(row)
                bpp = row["ctx"]["bits_per_param"]
                print(
                    f"{run.name:6} {name:12} nmse {t:<5} bound {row['bound_bits_per_param']:.3f}"
                    + "".join(
                        f"  {c} {row[c]['bits_per_param'] / row['bound_bits_per_param']:.3f}x"
                        for c in CODERS
                    )
                    + f"  static/adaptive {row['ctx-static']['bits_per_param'] / bpp:.3f}"
                )
    summary = []
    for run in args.runs:
        for t in TARGETS:
            sel = [r for r in rows if r["run"] == str(run) and r["nmse"] == t]
            ratio = [r["ctx-static"]["bits_per_param"] / r["ctx"]["bits_per_param"] for r in sel]
            best_plain = [
                r["ctx-static"]["bits_per_param"]
                / min(r["ans"]["bits_per_param"], r["rleg"]["bits_per_param"])
                for r in sel
            ]
            summary.append(
                {
                    "run": str(run),
                    "nmse": t,
                    "updates": len(sel),
                    **{
                        f"{c}_over_bound": float(
                            np.mean(
                                [r[c]["bits_per_param"] / r["bound_bits_per_param"] for r in sel]
                            )
                        )
                        for c in CODERS
                    },
                    "static_over_adaptive_mean": float(np.mean(ratio)),
                    "static_over_adaptive_max": float(np.max(ratio)),
                    "static_over_best_plain_max": float(np.max(best_plain)),
                    "default_over_stream_max": float(
                        np.max(
                            [
                                r["ctx"]["bits_per_param"] / r["ctx-stream"]["bits_per_param"]
                                for r in sel
                            ]
                        )
                    ),
                }
            )
            print(json.dumps(summary[-1]))
    args.out.write_text(
        json.dumps(
            {
                "command": "python bench/ctx_rate.py " + " ".join(str(r) for r in args.runs),
                "machine": frontier.machine_info()["processor"],
                "numpy": np.__version__,
                "rows": rows,
                "summary": summary,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
