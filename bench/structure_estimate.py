"""Where the bits of a real update are: RDQ's coders against the memoryless bound and
against an ideal context coder that sees the update's row/column structure.

For each saved client update of a harness run (``fedcodec train ... --save-updates N``) and
each target NMSE: the memoryless Shannon bound (``RDBound``); the payload of RDQ with the
memoryless ANS coder and with ``coder="auto"`` (the update as one vector); the "KT
estimate" (no bitstream; the groundwork of the structure-aware coder) of a context coder
on the ANS coder's levels: per matrix (conv kernels as out-channels × rest), per-row and
per-column RMS sent as side information (4 bits each, half-octave steps), each level coded
by an ideal adaptive (Krichevsky–Trofimov) model in the context of its predicted scale
(row RMS × column RMS / tensor RMS, half-octave bins; exact zero for a zero row or column)
and of its left neighbour's significance, signs at 1 bit; vectors and 1-D tensors at their
memoryless entropy plus a table; the ideal static coder with the default coder's own
contexts on its levels (what ``fedcodec frontier`` reports); and the payloads of the
default (structure-aware) coder and of ``levels="rdoq"``, both with the model's layout.
Each payload's bits are divided by the bound read at the NMSE that payload reached (not at
the target: a coder that overshoots its target is not credited for it); the estimates on
the ANS coder's levels are read at the ANS payload's NMSE, the ideal static coder at the
default coder's. Figures are means of those ratios over the updates.

    python bench/structure_estimate.py --run runs/cnn \
        --json bench/results/structure_estimate_cnn.json

See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np
from scipy.special import gammaln

import fedcodec
from fedcodec import container, frontier
from fedcodec.tools.rd_bound import RDBound

_ALPHABET = 18  # |level| 0..16 and an escape (Elias-gamma remainder)
_BINS = 24  # half-octave bins of the predicted scale


def adaptive_bits(symbols: np.ndarray, contexts: np.ndarray, alphabet: int) -> float:
    """Ideal adaptive code length (KT estimator, alpha = 1/2) of ``symbols`` given their
    contexts: order-independent, so computed from the final counts."""
    k = int(contexts.max()) + 1 if contexts.size else 1
    counts = np.zeros((k, alphabet))
    np.add.at(counts, (contexts, symbols), 1)
    total = counts.sum(1)
    used = total > 0
    c, n = counts[used], total[used]
    nats = gammaln(n + alphabet / 2) - gammaln(alphabet / 2)
    nats -= (gammaln(c + 0.5) - gammaln(0.5)).sum(1)
    return float(nats.sum() / np.log(2))


def memoryless_bits(q: np.ndarray) -> float:
    _, n = np.unique(q, return_counts=True)
    p = n / n.sum()
    return float(-(n * np.log2(p)).sum() + 16 * n.size)


def context_bits(x: np.ndarray, q: np.ndarray, step: float, rows: int) -> float:
    cols = x.size // rows
    xm = x.reshape(rows, cols).astype(np.float64)
    mag = np.abs(q.reshape(rows, cols))
    tensor_rms = float(np.sqrt((xm**2).mean()))
    if tensor_rms == 0.0:
        return 0.0

    def log_scale(v: np.ndarray) -> np.ndarray:  # what the decoder sees: half octaves
        out = np.full(v.shape, -np.inf)
        out[v > 0] = np.round(2 * np.log2(v[v > 0] / step)) / 2
        return out

    row, col = log_scale(np.sqrt((xm**2).mean(1))), log_scale(np.sqrt((xm**2).mean(0)))
    predicted = row[:, None] + col[None, :] - np.log2(tensor_rms / step)
    ctx = np.full(mag.shape, _BINS, dtype=np.int64)  # a zero row or column: all zero
    finite = np.isfinite(predicted)
    ctx[finite] = np.clip(np.round(2 * predicted[finite]) + _BINS // 2, 0, _BINS - 1)
    symbols = np.minimum(mag, _ALPHABET - 1).astype(np.int64)
    left = np.zeros_like(symbols)
    left[:, 1:] = symbols[:, :-1] > 0
    bits = adaptive_bits(symbols.ravel(), (2 * ctx + left).ravel(), _ALPHABET)
    escaped = mag[mag >= _ALPHABET - 1] - (_ALPHABET - 2)
    bits += float(np.sum(2 * np.floor(np.log2(escaped)) + 1)) if escaped.size else 0.0
    return bits + np.count_nonzero(mag) + 4.0 * (rows + cols)


def layout_of(run: Path) -> fedcodec.Layout:
    from fedcodec.fl import Experiment, TrainConfig

    config = json.loads((run / "config.json").read_text())
    fields = TrainConfig.__dataclass_fields__
    exp = Experiment(TrainConfig(**{k: v for k, v in config.items() if k in fields}))
    return exp.trainer.layout


def _nmse(x: np.ndarray, y: np.ndarray) -> float:
    x64 = x.astype(np.float64)
    return float(np.sum((y.astype(np.float64) - x64) ** 2) / np.sum(x64 * x64))


def estimate(x: np.ndarray, layout: fedcodec.Layout, nmse: float) -> dict[str, dict[str, float]]:
    """Each coder's bits/param, the NMSE its payload reached and the bound read there."""
    n = x.size
    bound = RDBound.fit(x.astype(np.float64))
    shapes = [shape for _, shape, _ in layout.entries]
    payload = fedcodec.RDQ(nmse=nmse, coder="ans").encode(x)
    step = struct.unpack("<f", container.unpack(payload).params[1:5])[0]
    x_ans = fedcodec.decode(payload)
    q = np.rint(x_ans.astype(np.float64) / step).astype(np.int64)
    total, pos = 0.0, 0
    for shape in shapes:
        size = int(np.prod(shape))
        xs, qs = x[pos : pos + size], q[pos : pos + size]
        pos += size
        rows = shape[0] if len(shape) >= 2 else 1
        bits = memoryless_bits(qs)
        if 1 < rows < size:  # a matrix: its context model, if it pays
            bits = min(bits, context_bits(xs, qs, step, rows))
        total += bits
    ctx = fedcodec.RDQ(nmse=nmse)  # the default coder
    ctx_payload = ctx.encode_vector(x, layout=layout)
    ideal = frontier._context_bits(ctx, ctx_payload, 0, layout, n)
    auto = fedcodec.RDQ(nmse=nmse, coder="auto").encode(x)
    rdoq = fedcodec.RDQ(nmse=nmse, levels="rdoq").encode_vector(x, layout=layout)
    reached = {
        "ans": _nmse(x, x_ans),
        "auto": _nmse(x, fedcodec.decode(auto)),
        "ctx": _nmse(x, fedcodec.decode(ctx_payload)),
        "rdoq": _nmse(x, fedcodec.decode(rdoq)),
    }
    reached["context_estimate"] = reached["ans"]  # on the ANS coder's levels
    reached["ideal_ctx"] = reached["ctx"]  # on the default coder's levels
    bits = {
        "ans": 8 * len(payload) / n,
        "auto": 8 * len(auto) / n,
        "context_estimate": total / n,
        "ideal_ctx": ideal,
        "ctx": 8 * len(ctx_payload) / n,
        "rdoq": 8 * len(rdoq) / n,
    }
    return {
        k: {
            "bits_per_param": b,
            "nmse": reached[k],
            "bound_bits_per_param": float(bound.bits_at(reached[k])),
        }
        for k, b in bits.items()
    } | {"target": {"bound_bits_per_param": float(bound.bits_at(nmse))}}


COLUMNS = ("ans", "auto", "context_estimate", "ideal_ctx", "ctx", "rdoq")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="harness run with updates.npz")
    p.add_argument("--nmse", type=float, nargs="+", default=[0.01, 0.05, 0.2])
    p.add_argument("--max-updates", type=int, default=6)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args()
    layout = layout_of(args.run)
    with np.load(args.run / "updates.npz") as z:
        updates = [z[k].astype(np.float32) for k in sorted(z.keys())[: args.max_updates]]
    print(f"{args.run}: {len(updates)} updates of {updates[0].size} params")
    print("nmse   bound b/p   " + "   ".join(f"{c}/bound" for c in COLUMNS))
    summary = []
    for t in args.nmse:
        rows = [estimate(x, layout, t) for x in updates]
        row = {
            "nmse_target": t,
            "bound_at_target": float(np.mean([r["target"]["bound_bits_per_param"] for r in rows])),
        }
        for c in COLUMNS:
            row[c] = {
                "ratio_to_bound": float(
                    np.mean([r[c]["bits_per_param"] / r[c]["bound_bits_per_param"] for r in rows])
                ),
                "bits_per_param": float(np.mean([r[c]["bits_per_param"] for r in rows])),
                "nmse_reached_max": float(max(r[c]["nmse"] for r in rows)),
                "nmse_reached_mean": float(np.mean([r[c]["nmse"] for r in rows])),
            }
        summary.append(row)
        print(
            f"{t:<6} {row['bound_at_target']:9.3f}   "
            + "   ".join(f"{row[c]['ratio_to_bound']:8.2f}x" for c in COLUMNS)
        )
    if args.json is not None:
        doc = {
            "command": "python bench/structure_estimate.py --run "
            f"{args.run} --max-updates {args.max_updates}",
            "run": str(args.run),
            "params": int(updates[0].size),
            "updates": len(updates),
            "machine": frontier.machine_info(),
            "rows": summary,
        }
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
