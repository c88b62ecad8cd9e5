"""RDQ's default against the MPEG NNC reference encoder (NNCodec, DeepCABAC) on real updates.

Each saved client update of a run (``--run``: ``updates.npz`` and ``layout.json``, as
``fedcodec train --save-updates N`` writes them) is coded as a mapping of its tensors:

- by NNCodec (``nncodec.nn.encode``: uniform quantization with its dependent quantization
  ``use_dq``, DeepCABAC), over a sweep of ``qp`` up from the update's RMS / 8, in two
  settings: its default, which codes 1-D tensors (biases) at ``nonweight_qp=-75``, and
  with ``nonweight_qp`` equal to ``qp``;
- by RDQ's default, over a sweep of ``nmse`` targets.

Bits are 8 × the bytes each side must send (NNCodec's whole bitstream; RDQ's whole
payload); NMSE is measured on the decoded update. Per update, each codec's bits at NMSE
0.01, 0.05 and 0.2 are read off its sweep (linear in log bits against log NMSE between
the two points around it; none where the sweep does not reach it); the ratio is RDQ's
bits over the better NNCodec setting's.

NNCodec is not a dependency of fedcodec (it builds a C++ extension and pulls torch and
torchvision): install it beside fedcodec in an environment of its own, e.g.::

    python -m venv /tmp/nnc && /tmp/nnc/bin/pip install nncodec==2.1.3 .
    /tmp/nnc/bin/python bench/nncodec_compare.py --run runs/cnn --max-updates 4 \
        --json bench/results/nncodec_cnn.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import fedcodec
from fedcodec.fl.process import update_nmse as nmse

TARGETS = (0.01, 0.05, 0.2)
RDQ_NMSE = (0.003, 0.006, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
#: NNCodec's step is 2**(qp/4) (its default qp_density 2): the sweep starts at a step of
#: the update's RMS / 8 and goes up by 2 qp until the NMSE passes the largest target
#: (heavy-tailed updates need steps of many times their RMS)
QP_START, QP_STOP_NMSE, QP_MAX_STEPS = -12, 0.3, 40


def at_target(points: list[tuple[float, float]], target: float) -> float | None:
    """Bits/param at ``target`` NMSE from (bits/param, NMSE) points, interpolated linearly in
    log bits against log NMSE between the nearest points on either side; None when the
    points do not reach past it on both sides."""
    pts = sorted((e, b) for b, e in points if b > 0 and e > 0)
    for (e0, b0), (e1, b1) in itertools.pairwise(pts):
        if e0 <= target <= e1 and e1 > e0:
            t = (math.log(target) - math.log(e0)) / (math.log(e1) - math.log(e0))
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return None


def rdq_points(x: np.ndarray, layout: fedcodec.Layout) -> list[tuple[float, float]]:
    out = []
    mapping = fedcodec.unflatten(x, layout)
    for t in RDQ_NMSE:
        codec = fedcodec.get_codec({"id": "rdq", "nmse": t})
        payload = codec.encode(mapping, seed=1)
        y = codec.decode(payload, seed=1, layout=layout).reshape(-1)
        out.append((8 * len(payload) / x.size, nmse(x, y)))
    return out


def nncodec_points(
    x: np.ndarray, layout: fedcodec.Layout, same_nonweight: bool, workdir: str
) -> list[tuple[float, float]]:
    from nncodec.nn import decode, encode

    model = {name: np.ascontiguousarray(a, np.float32) for name, a in
             fedcodec.unflatten(x, layout).items()}  # fmt: skip
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    center = round(4 * math.log2(rms))
    out: list[tuple[float, float]] = []
    for qp in range(center + QP_START, center + QP_START + 2 * QP_MAX_STEPS, 2):
        if out and out[-1][1] >= QP_STOP_NMSE:
            break
        args: dict[str, Any] = {"qp": qp, "use_dq": True, "model": "update", "results": workdir,
                                "verbose": False}  # fmt: skip
        if same_nonweight:
            args["nonweight_qp"] = qp
        with contextlib.redirect_stdout(io.StringIO()):
            bitstream = encode(model, args=args)
            rec = decode(bitstream, args=args)
        y = np.concatenate([np.asarray(rec[name], np.float32).reshape(-1) for name in model])
        out.append((8 * len(bitstream) / x.size, nmse(x, y)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a run with updates.npz, layout.json")
    p.add_argument("--max-updates", type=int, default=4)
    p.add_argument("--json", type=Path, help="also write the rows (and the machine) here")
    args = p.parse_args(argv)
    import importlib.metadata as md

    from fedcodec.tools.frontier import machine_info

    layout = fedcodec.Layout.from_json(json.loads((args.run / "layout.json").read_text()))
    rows = []
    with np.load(args.run / "updates.npz") as z, tempfile.TemporaryDirectory() as work:
        for key in sorted(z.files)[: args.max_updates]:
            x = np.ascontiguousarray(z[key], np.float32).reshape(-1)
            series = {
                "rdq": rdq_points(x, layout),
                "nncodec": nncodec_points(x, layout, False, work),
                "nncodec_nonweight_qp_eq_qp": nncodec_points(x, layout, True, work),
            }
            row: dict[str, Any] = {"update": key, "params": int(x.size), "points": series}
            for t in TARGETS:
                bits = {name: at_target(pts, t) for name, pts in series.items()}
                nnc = [b for n, b in bits.items() if n != "rdq" and b is not None]
                best = min(nnc) if nnc else None
                ratio = bits["rdq"] / best if bits["rdq"] is not None and best else None
                row[f"nmse_{t:g}"] = {**bits, "nncodec_best": best, "ratio": ratio}
                print(f"{key} NMSE {t:g}: rdq {bits['rdq']}, nncodec {best}, ratio {ratio}")
            rows.append(row)
    if args.json:
        doc = {
            "command": "python bench/nncodec_compare.py " + " ".join(argv or sys.argv[1:]),
            "run": str(args.run),
            "targets": list(TARGETS),
            "rows": rows,
            "versions": {k: md.version(k) for k in ("nncodec", "fedcodec", "numpy", "torch")},
            "machine": machine_info(),
        }
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
