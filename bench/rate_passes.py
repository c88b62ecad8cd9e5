"""How many times ``bits_per_param`` codes an update with the context coder.

The rate search measures its points on the whole update: with the adaptive context coder
each measurement is a coding pass, the encoder's largest cost. Above 2**19 elements the
first pass is aimed with the coder's own estimate (a grid of rows and columns, scaled by
a control variate: ``fedcodec.rate_control.Solver.context_bits``); ``--without-estimate``
turns that off (the first pass then goes to the memoryless coder's step, as before
2026-12-07). For each update and target: the coding passes, each pass's bits over the
target, and the payload's. The updates: ``bench/ctx_speed.py``'s three structured 10M
updates, and the first ``--max-updates`` saved updates of each run given (coded as
mappings with the run's layout).

    python bench/rate_passes.py runs/cnn --json bench/results/rate_passes.json
    python bench/rate_passes.py runs/cnn --without-estimate --json old.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from ctx_speed import updates
from structure_estimate import layout_of

import fedcodec
from fedcodec import rate_control
from fedcodec.rate_points import CODER_CTX, CODER_CTXB

TARGETS = (0.1, 0.3, 1.0, 2.0)


def count(encode: Any, n: int, target: float) -> dict[str, Any]:
    """Run ``encode()`` and count the context coder's whole-update measurements."""
    passes: list[float] = []
    measure = rate_control.Solver.measure

    def counted(self: rate_control.Solver, p: Any, sse: float | None = None) -> Any:
        f = measure(self, p, sse)
        if p.coder in (CODER_CTX, CODER_CTXB) and not self.step_only:
            passes.append(f.bits / (target * n))
        return f

    rate_control.Solver.measure = counted
    try:
        payload = encode()
    finally:
        rate_control.Solver.measure = measure
    return {
        "passes": len(passes),
        "pass_bits_over_target": [round(b, 4) for b in passes],
        "payload_over_target": round(8 * len(payload) / (target * n), 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", type=Path, help="runs with saved updates (updates.npz)")
    p.add_argument("--max-updates", type=int, default=4)
    p.add_argument("--without-estimate", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.without_estimate:
        rate_control._ESTIMATE_FROM = 1 << 62
    rows = []
    # (name, the update: a mapping, or a vector and its layout, its params)
    sources: list[tuple[str, Any, Any, int]] = []
    for name, update in updates().items():
        if name != "flat":  # no matrix: the context coder does not run
            sources.append((name, update, None, sum(a.size for a in update.values())))
    for run in args.runs:
        layout = layout_of(run)
        with np.load(run / "updates.npz") as z:
            for key in list(z.files)[: args.max_updates]:
                x = z[key].astype(np.float32)
                sources.append((f"{run.name}/{key}", x, layout, x.size))
    for name, update, layout, n in sources:
        for target in TARGETS:
            codec = fedcodec.RDQ(bits_per_param=target)

            def encode(c: Any = codec, u: Any = update, lay: Any = layout) -> bytes:
                return bytes(c.encode(u) if lay is None else c.encode_vector(u, layout=lay))

            row = {
                "update": name,
                "params": n,
                "bits_per_param": target,
                **count(encode, n, target),
            }
            rows.append(row)
            print(
                f"{name:14s} {target:4.1f}  passes {row['passes']}  "
                f"{row['pass_bits_over_target']}  payload {row['payload_over_target']}",
                flush=True,
            )
    mean = float(np.mean([r["passes"] for r in rows]))
    print(f"mean passes: {mean:.2f} over {len(rows)} encodes")
    if args.json:
        doc = {"with_estimate": not args.without_estimate, "mean_passes": mean, "rows": rows}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
