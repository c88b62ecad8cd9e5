"""``python -m fedcodec.tools.demo`` (``make demo``): the whole benchmark story on embedded data.

1. A short federated run (FedAvg on scikit-learn's digits, uncompressed) that keeps its
   clients' raw updates;
2. the bitrate–distortion frontier of every codec on those updates, with the Shannon
   bound and the consistency of the frontier across clients and rounds;
3. a quick bits-versus-accuracy comparison of the codecs in federated training;
4. the encode/decode speed of the same codec configurations on a 1M-parameter update.

Everything lands under ``runs/demo/``: ``report.md`` (a summary table first: bits saved,
accuracy cost and speed of each codec) with the plots, and the JSON, CSV and run
directories behind them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# absolute imports: ``python -m fedcodec.tools.demo`` (the old name) runs this file too
from fedcodec.tools import compare as cmp
from fedcodec.tools import frontier as fr
from fedcodec.tools import speed as sp
from fedcodec.tools.plots import plot_compare, plot_frontier


def speed_configs(specs: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The codec configs of a comparison, without the harness's ``error_feedback`` key
    (error feedback adds a subtraction, not a codec), each once."""
    out: list[dict[str, Any]] = []
    for spec in specs:
        if spec is None:
            continue
        config = {k: v for k, v in spec.items() if k != "error_feedback"}
        if config not in out:
            out.append(config)
    return out


def summary_table(comp: dict[str, Any], speed: dict[str, Any]) -> str:
    """One row per compressed run: bits, bytes saved, accuracy cost, speed."""
    rows = comp["table"]
    base = next((r for r in rows if r["label"].startswith("uncompressed")), None)
    by_codec = {r["codec"]: r for r in speed["rows"]}
    lines = [
        "| codec | bits/param | uplink × fewer bytes | last-10% accuracy | Δ points "
        "| encode M params/s | decode M params/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r is base:
            continue
        fewer = base["uplink_bits_total"] / r["uplink_bits_total"] if base else None
        tail, ref = r.get("tail_accuracy"), base.get("tail_accuracy") if base else None
        delta = None if tail is None or ref is None else 100 * (tail - ref)
        s = by_codec.get(r["label"].removesuffix(" + EF"))
        lines.append(
            f"| {r['label']} | {_fmt(r['mean_bits_per_param'], '.3f')} | {_fmt(fewer, '.0f')}× "
            f"| {_fmt(tail, '.4f')} | {_fmt(delta, '+.1f')} "
            f"| {_fmt(s and s['encode_mparams_per_s'], '.0f')} "
            f"| {_fmt(s and s['decode_mparams_per_s'], '.0f')} |"
        )
    return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def run(out_dir: Path, quick: bool = False) -> Path:
    from fedcodec.fl import TrainConfig
    from fedcodec.fl import run as train

    out_dir.mkdir(parents=True, exist_ok=True)
    rounds = 3 if quick else 20
    base = {"task": "digits", "partition": "iid", "clients_per_round": 5 if quick else 10}
    print(f"1/4 federated run: digits, {rounds} rounds, updates saved ...", flush=True)
    summary = train(
        TrainConfig(**base, rounds=rounds, save_updates=2 if quick else 5),  # type: ignore[arg-type]
        out_dir / "run",
        progress=False,
    )
    print("2/4 frontier of every codec on the saved updates, with the bound ...", flush=True)
    updates = fr.load_updates(out_dir / "run")
    # RDQ's default (structure-aware) coder next to its memoryless ANS coder
    ans = {"id": "rdq", "coder": "ans", **fr.DEFAULT_SWEEPS["rdq"]}
    ids = ["rdq", "topk", "qsgd", "eden"] if quick else list(fr.DEFAULT_CODECS)
    specs: list[str | dict[str, object]] = [ids[0], ans, *ids[1:]]
    layout = fr.load_layout(out_dir / "run")
    doc = fr.frontier(
        updates,
        specs,
        name="demo: digits MLP updates",
        source={"kind": "run", "path": "run", "layout": layout is not None},
        layout=layout,
    )
    (out_dir / "frontier.json").write_text(json.dumps(doc, indent=1) + "\n")
    plots = [p.name for p in plot_frontier(doc, out_dir) if p.suffix == ".png"]
    print("3/4 bits versus accuracy, one run per codec ...", flush=True)
    codecs = cmp.DEFAULT_CODECS[:3] if quick else cmp.DEFAULT_CODECS
    compare_rounds = 3 if quick else 15
    comp = cmp.compare(
        codecs, out_dir / "compare", base={**base, "rounds": compare_rounds}, name="demo"
    )
    (out_dir / "compare.json").write_text(json.dumps(comp, indent=1) + "\n")
    plots += [p.name for p in plot_compare(comp, out_dir) if p.suffix == ".png"]
    speed_params = 100_000 if quick else 1_000_000
    print(f"4/4 encode/decode speed on {speed_params:,} params ...", flush=True)
    speed = sp.speed([speed_params], speed_configs(list(codecs)), repeats=3)
    (out_dir / "speed.json").write_text(json.dumps(speed, indent=1) + "\n")
    base_row = next(r for r in comp["table"] if r["label"].startswith("uncompressed"))
    cons = doc["consistency"]
    spread = f"{cons['spread']:.3f}" if cons else "n/a"
    machine = doc["machine"]
    report = f"""# fedcodec demo

Machine: {machine["processor"]}, {machine["cpu_count"]} cores, Python {machine["python"]}.
Data: scikit-learn's digits (embedded), {summary["data"]["num_clients"]} clients (IID),
an MLP of {summary["params_total"]:,} parameters. Reproduce: `make demo`.

## In a minute

Each codec in federated training (section 3: FedAvg, {compare_rounds} rounds,
{base["clients_per_round"]} clients a round, one seed) against the uncompressed run
(last-10% accuracy {_fmt(base_row.get("tail_accuracy"), ".4f")}, uplink
{base_row["uplink_bits_total"] / 8e6:.2f} MB): bits per parameter sent (8 × payload bytes),
how many times fewer uplink bytes, the accuracy over the last 10 % of rounds and its
difference in points, and the codec's speed on a {speed_params:,}-parameter update on this
machine, one thread (section 4). This is one seed of a short run: docs/benchmarks.md has
the long, multi-seed ones.

{summary_table(comp, speed)}

## 1. Federated run

FedAvg, {rounds} rounds, {base["clients_per_round"]} clients a round, uncompressed: final
test accuracy {summary["final_accuracy"]:.4f} (best {summary["best_accuracy"]:.4f});
{len(updates)} client updates saved to `run/updates.npz` for section 2. (Section 3's runs
have {compare_rounds} rounds, so their accuracies differ from this one's.)

## 2. Bits per parameter against NMSE, with the Shannon bound

Every codec's rate parameter swept over the saved updates (coded as the model's tensors,
from `run/layout.json`); bits are 8 × payload bytes. The bound is the rate–distortion
function of the updates' pooled value distribution (memoryless source, Blahut–Arimoto):
coders that see the updates' structure can go below it. `rdq` is RDQ with its default,
structure-aware coder (per-tensor row/column scale contexts), `rdq(coder=ans)` the same
quantizer with the memoryless ANS coder; "ideal coder, its contexts" is the empirical
conditional entropy of RDQ's levels given the structure-aware coder's contexts (an ideal
static code with those contexts). Cells: bits/param (ratio to the bound); "-" where the
codec's sweep does not reach that NMSE.

{fr.markdown_table(doc)}

![frontier](frontier.png)

Consistency across clients and rounds (the coefficient of variation of RDQ's bits/param
at matched NMSE, averaged over the NMSE range): **{spread}**.

![consistency](consistency.png)

## 3. Bits versus accuracy in federated training

FedAvg, {compare_rounds} rounds, {base["clients_per_round"]} clients a round; the same seed
and data for every codec; target = the uncompressed run's mean accuracy over its last 10 %
of rounds minus 1 point. "+ EF": with error feedback (RDQ's nearest rounding goes with it
in training; dithered rounding without).

{cmp.markdown_table(comp)}

![accuracy vs uplink](accuracy_vs_uplink.png)

Each run's accuracy against the mean NMSE of its client updates (does less distortion per
update mean a better model?):

![accuracy vs NMSE](accuracy_vs_nmse.png)

## 4. Speed

Encode and decode of a {speed_params:,}-parameter Laplace update by each configuration of
section 3 (rate control included), best of 3, one thread, next to a memory copy; the same
table as `fedcodec speed --sizes {speed_params}`.

{sp.markdown_table(speed)}

Files: `frontier.json` (schema `fedcodec.frontier/1`), `compare.json`
(`fedcodec.compare/1`), `speed.json` (`fedcodec.speed/1`), `run/` and `compare/runs/`
(metrics.jsonl per run).
"""
    path = out_dir / "report.md"
    path.write_text(report)
    print(fr.markdown_table(doc))
    print()
    print(cmp.markdown_table(comp))
    print()
    print(sp.markdown_table(speed))
    print(f"\nreport: {path.resolve()} (plots: {', '.join(plots)})")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--quick", action="store_true", help="a few rounds and codecs, for tests")
    args = parser.parse_args(argv)
    run(args.out, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
