"""A ``fedcodec.compare/1`` document read as if its runs had stopped after fewer rounds.

Run: python bench/tail_view.py bench/results/bits_accuracy_SUITE.json --rounds 1000 1200
     python bench/tail_view.py bench/results/bits_accuracy_SUITE.json --targets 0.7 0.75

A run's first N rounds are the run it would have been with ``rounds = N`` (client sampling,
seeds and learning rates do not depend on the total), so one long suite answers "is the
uncompressed run levelled off, and how far behind is each codec" at several lengths. For
each length it prints the uncompressed run's gain over the last fifth (``levelled_gain``)
and, for every run, the mean accuracy over the last 10 % of the rounds, its gap to the
uncompressed run, the paired gap (each evaluation against the uncompressed run's in the
same round: same clients, same data) with its standard error, and the round and uplink
megabytes to the uncompressed accuracy minus one point. With ``--targets 0.7 0.75`` it
prints every run's rounds to each accuracy (FedDyn against FedAvg).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from fedcodec.tools.compare import first_reaching, levelled_gain, tail_accuracy, tail_window


def _evaluations(metrics: list[dict[str, Any]], start: int) -> dict[int, float]:
    return {
        int(m["round"]): float(m["test_accuracy"])
        for m in metrics[start:]
        if m.get("test_accuracy") is not None
    }


def view(doc: dict[str, Any], rounds: int) -> list[str]:
    """Lines of a Markdown table of ``doc``'s runs cut to their first ``rounds`` rounds."""
    runs = [r for r in doc["runs"] if len(r["metrics"]) >= rounds]
    if not runs or runs[0]["codec"] is not None:
        return [f"{rounds} rounds: the uncompressed run (the first) is not that long"]
    base = runs[0]["metrics"][:rounds]
    base_acc = tail_accuracy(base)
    gain = levelled_gain(base)
    if base_acc is None or gain is None:
        return [f"{rounds} rounds: no evaluation in the last 10 %"]
    target = base_acc - 0.01
    start = tail_window(rounds)[0]
    base_eval = _evaluations(base, start)
    lines = [
        f"{doc['name']}, {rounds} rounds: uncompressed gain over the last fifth "
        f"{100 * gain:.2f} points; target {target:.4f}",
        "",
        "| run | last-10 % acc | vs (points) | paired gap ± s.e. | bits/param "
        "| rounds to target | uplink MB to target |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        metrics = run["metrics"][:rounds]
        acc = tail_accuracy(metrics)
        if acc is None:
            continue
        gaps = [a - base_eval[r] for r, a in _evaluations(metrics, start).items() if r in base_eval]
        paired = "–"
        if run is not runs[0] and len(gaps) > 1:
            mean = sum(gaps) / len(gaps)
            sd = math.sqrt(sum((g - mean) ** 2 for g in gaps) / (len(gaps) - 1))
            paired = f"{100 * mean:+.2f} ± {100 * sd / math.sqrt(len(gaps)):.2f}"
        hit = first_reaching(metrics, target)
        bits = sum(m["bits_per_param"] for m in metrics) / len(metrics)
        to_target = (
            ("–", "–") if hit is None else (hit["round"], f"{hit['uplink_bits_cum'] / 8e6:.2f}")
        )
        lines.append(
            f"| {run['label']} | {acc:.4f} | {100 * (acc - base_acc):+.1f} | {paired} "
            f"| {bits:.3f} | {to_target[0]} | {to_target[1]} |"
        )
    return lines


def rounds_to(doc: dict[str, Any], targets: list[float]) -> list[str]:
    """Lines of a Markdown table: every run's last-10 % and best accuracy and the first
    evaluated round at or above each accuracy in ``targets`` ("–": never reached)."""
    head = " | ".join(f"rounds to {100 * t:g} %" for t in targets)
    lines = [
        f"| run | last-10 % acc | best acc | {head} |",
        "|---|---:|---:|" + "---:|" * len(targets),
    ]
    for run in doc["runs"]:
        metrics = run["metrics"]
        acc = tail_accuracy(metrics)
        evaluated = [m["test_accuracy"] for m in metrics if m["test_accuracy"] is not None]
        best = max(evaluated, default=None)
        if acc is None or best is None:
            continue
        hits = [first_reaching(metrics, t) for t in targets]
        cells = " | ".join("–" if h is None else str(h["round"]) for h in hits)
        lines.append(f"| {run['label']} | {acc:.4f} | {best:.4f} | {cells} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("document", type=Path, help="a fedcodec.compare/1 JSON")
    parser.add_argument("--rounds", type=int, nargs="+", default=[], help="lengths to cut to")
    parser.add_argument(
        "--targets", type=float, nargs="+", default=[], help="accuracies (0-1): rounds to each"
    )
    args = parser.parse_args(argv)
    if not args.rounds and not args.targets:
        parser.error("give --rounds, --targets or both")
    doc = json.loads(args.document.read_text())
    for n in args.rounds:
        print("\n".join(view(doc, n)) + "\n")
    if args.targets:
        print("\n".join(rounds_to(doc, args.targets)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
