"""Harness benchmarks of docs/benchmarks.md: federated runs on real data, one table each.

Run: python bench/fl_runs.py SUITE [--quick]   (SUITE: fedsgd, bits, feddyn, fedpt, dither, all)

Each suite runs `fedcodec.fl.run` for several configs with the same seed and data and
writes `bench/results/fl_<suite>.json` (every run's summary and metric lines) and prints a
Markdown table. `--quick` cuts the rounds (for a smoke test, not for figures).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from fedcodec.fl import TrainConfig, run

RESULTS = Path(__file__).parent / "results"

FMNIST = {"task": "fashion_mnist", "partition": "shards", "clients_per_round": 10}
SHAKESPEARE = {"task": "shakespeare", "clients_per_round": 10}

BASELINES: list[dict[str, Any] | None] = [
    None,
    {"id": "rdq", "bits_per_param": 2.0},
    {"id": "rdq", "bits_per_param": 1.0},
    {"id": "rdq", "bits_per_param": 0.5},
    {"id": "rdq", "bits_per_param": 0.25},
    {"id": "fp16"},
    {"id": "topk", "fraction": 0.02},
    {"id": "qsgd", "num_levels": 4, "bucket_size": 512},
    {"id": "drive"},
    {"id": "eden", "bits": 1},
    {"id": "threelc"},
]


def suites(quick: bool) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    def r(n: int) -> int:
        return max(2, n // 10) if quick else n

    fedsgd = []
    for name, base, rounds_avg, rounds_sgd, target, sgd_lr in (
        ("fmnist-cnn", FMNIST, 40, 200, 0.70, 0.2),
        ("shakespeare", SHAKESPEARE, 200, 400, 0.40, 4.0),
    ):
        ev = {"eval_every": 5, "target_accuracy": target}
        fedsgd += [
            (f"{name} fedavg E=1 B=10", {**base, **ev, "rounds": r(rounds_avg)}),
            (
                f"{name} fedsgd",
                {**base, **ev, "algorithm": "fedsgd", "client_lr": sgd_lr, "rounds": r(rounds_sgd)},
            ),
        ]
    bits = []
    for name, base, rounds, extra in (
        ("fmnist-cnn", FMNIST, 30, {"clients_per_round": 5, "partition": "iid"}),
        ("shakespeare", SHAKESPEARE, 80, {}),
    ):
        for codec in BASELINES:
            label = json.dumps(codec) if codec else "uncompressed (float32)"
            ef = codec is not None and codec["id"] == "topk"
            cfg = {**base, **extra, "rounds": r(rounds), "eval_every": 5, "codec": codec}
            bits.append((f"{name} {label}{' +EF' if ef else ''}", {**cfg, "error_feedback": ef}))
    feddyn = []
    for name, base, rounds, target in (
        ("shakespeare", SHAKESPEARE, 80, 0.40),
        ("fmnist-cnn", {**FMNIST, "clients_per_round": 5}, 20, 0.60),
    ):
        for algo in ("fedavg", "feddyn"):
            cfg = {**base, "rounds": r(rounds), "eval_every": 5, "target_accuracy": target}
            feddyn.append((f"{name} {algo}", {**cfg, "algorithm": algo}))
    fedpt = []
    for frac in (0.0, 0.5, 0.8):
        cfg = {**SHAKESPEARE, "rounds": r(80), "eval_every": 5}
        if frac:
            cfg.update(algorithm="fedpt", freeze_fraction=frac)
        fedpt.append((f"shakespeare freeze_fraction={frac}", cfg))
    # unbiased (dithered) RDQ next to the biased default, where the bits suite showed a gap
    dither = [
        (
            f"shakespeare rdq {b} bits/param dither",
            {
                **SHAKESPEARE,
                "rounds": r(80),
                "eval_every": 5,
                "codec": {"id": "rdq", "bits_per_param": b, "rounding": "dither"},
            },
        )
        for b in (0.5, 1.0)
    ]
    dither.append(
        (
            "fmnist-cnn rdq 0.5 bits/param dither",
            {
                **FMNIST,
                "clients_per_round": 5,
                "partition": "iid",
                "rounds": r(30),
                "eval_every": 5,
                "codec": {"id": "rdq", "bits_per_param": 0.5, "rounding": "dither"},
            },
        )
    )
    return {"fedsgd": fedsgd, "bits": bits, "feddyn": feddyn, "fedpt": fedpt, "dither": dither}


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| run | rounds | final acc | best acc | rounds to target | uplink MB to target "
        "| uplink MB total | bits/param | share sent | s/round |\n|---|" + "---:|" * 9
    )
    out = [head]
    for row in rows:
        s = row["summary"]

        def mb(bits: int | None) -> str:
            return "-" if bits is None else f"{bits / 8e6:.2f}"

        out.append(
            f"| {row['name']} | {s['rounds']} | {s['final_accuracy']:.4f} "
            f"| {s['best_accuracy']:.4f} "
            f"| {s['rounds_to_target'] if s['rounds_to_target'] else '-'} "
            f"| {mb(s['uplink_bits_to_target'])} | {mb(s['uplink_bits_total'])} "
            f"| {s['mean_bits_per_param']:.3f} | {s['share_sent']:.3f} "
            f"| {s['seconds'] / max(s['rounds'], 1):.2f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("suite", choices=["fedsgd", "bits", "feddyn", "fedpt", "dither", "all"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="runs/bench")
    args = p.parse_args(argv)
    all_suites = suites(args.quick)
    names = list(all_suites) if args.suite == "all" else [args.suite]
    for suite in names:
        rows = []
        for name, cfg in all_suites[suite]:
            t0 = time.perf_counter()
            slug = name.replace(" ", "_").replace('"', "").replace("/", "-")[:80]
            summary = run(TrainConfig(**cfg), Path(args.out) / suite / slug, progress=False)
            print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            rows.append({"name": name, "config": cfg, "summary": summary})
        doc = {
            "suite": suite,
            "command": f"python bench/fl_runs.py {suite}" + (" --quick" if args.quick else ""),
            "machine": f"{platform.machine()}, {platform.node()}",
            "date": time.strftime("%Y-%m-%d"),
            "runs": rows,
        }
        if not args.quick:
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"fl_{suite}.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(f"\n### {suite}\n\n{table(rows)}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
