"""The ``fedcodec`` command.

- ``fedcodec train``: federated training with compression (``fedcodec.fl``).
- ``fedcodec frontier``: bits/param against NMSE of every codec on real updates, with the
  Shannon bound; JSON, CSV, plots.
- ``fedcodec compare``: bits versus accuracy, one harness run per codec; JSON, CSV, plot.
- ``fedcodec speed``: encode/decode throughput next to a memory copy; JSON and a table.
- ``fedcodec plot FILE.json``: redraw the plots of a frontier or compare document.
- ``fedcodec warmup``: compile every codec's kernels into numba's cache (``make install``
  runs it; after ``pip install``, run it once).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _json_config(text: str) -> dict[str, Any] | None:
    if text.lower() in ("", "none", "null"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f'not JSON ({exc}); write a codec config like \'{{"id": "rdq", "bits_per_param": 1}}\''
        ) from None
    if not isinstance(value, dict) or "id" not in value:
        raise argparse.ArgumentTypeError('a codec config is a JSON object with an "id"')
    return value


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()}
            )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help line ends with its default (unless the help says it already)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or "default:" in text or action.default is argparse.SUPPRESS:
            return text
        if action.default is None or action.default == []:
            return f"{text} (default: none)"
        return super()._get_help_string(action) or text


#: ``--out``'s help where it defaults to a new folder.
_OUT_HELP = "output folder (default: a new folder runs/{}-DATE-TIME in the current folder, printed)"


def _out_dir(args: argparse.Namespace) -> Path:
    """``--out``, or a new folder ``runs/<command>-<date>-<time>`` (printed)."""
    if args.out:
        return Path(args.out)
    if getattr(args, "resume", False):
        raise ValueError("--resume continues a run: name its folder with --out")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{args.command}-{stamp}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    print(f"writing to {out}/", flush=True)
    args.out = str(out)
    return out


def _dump(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")


# -- train ----------------------------------------------------------------------------------
def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task",
        default="digits",
        help="digits | synthetic | fashion_mnist | shakespeare, or your own: "
        "package.module:function returning a fedcodec.fl.Task (docs/fl.md)",
    )
    p.add_argument("--model", default=None, help="task model (default: the task's)")
    p.add_argument("--algorithm", default="fedavg", help="fedavg | fedsgd | feddyn | fedpt")
    p.add_argument("--rounds", type=int, default=20, help="federated rounds")
    p.add_argument("--clients-per-round", type=int, default=10, help="clients sampled a round")
    p.add_argument("--local-epochs", type=int, default=1, help="epochs of local training")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="local batch size; 0: whole local data per step (default: the task's)",
    )
    p.add_argument(
        "--client-lr", type=float, default=None, help="local learning rate (default: the task's)"
    )
    p.add_argument(
        "--num-clients", type=int, default=None, help="clients in all (default: the task's)"
    )
    p.add_argument(
        "--partition",
        default=None,
        help="iid | dirichlet | shards | natural (default: the task's)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="Fashion-MNIST IDX folder (default: /usr/share/datasets/fashion-mnist)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of data, sampling and codecs")
    _add_engine_options(p)


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine")
    g.add_argument(
        "--engine",
        choices=("harness", "flower"),
        default="harness",
        help="harness: this process; flower: Flower's simulation engine (Ray), one SuperNode "
        "per client, started with a SuperLink and flwr run (docs/fl.md)",
    )
    g.add_argument(
        "--client-cpus", type=int, default=1, help="flower: CPUs (and torch threads) per client"
    )
    g.add_argument("--client-gpus", type=float, default=0.0, help="flower: GPUs per client")
    g.add_argument(
        "--ray-cpus", type=int, default=None, help="flower: CPUs Ray may use (default: all)"
    )
    g.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="harness: torch threads (1 reproduces a flower run with one CPU per client) "
        "(default: torch's)",
    )


def _engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if args.engine == "harness":
        return {"torch_threads": args.torch_threads}
    from .fl.flower_engine import FlowerOptions

    flower = FlowerOptions(
        client_cpus=args.client_cpus, client_gpus=args.client_gpus, ray_cpus=args.ray_cpus
    )
    return {"engine": "flower", "flower": flower}


_ENGINE_ARGS = ("engine", "client_cpus", "client_gpus", "ray_cpus", "torch_threads")


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        formatter_class=_HelpFormatter,
        help="federated training with compression; writes metrics.jsonl and summary.json",
        description="Federated training (FedAvg, FedSGD, FedDyn, FedPT) on real offline data "
        "with any codec on the uplink and downlink. Results go under --out (docs/fl.md).",
    )
    _add_train_options(p)
    p.add_argument(
        "--codec",
        type=_json_config,
        default=None,
        help='uplink codec config (JSON), e.g. \'{"id": "rdq", "bits_per_param": 1}\' '
        "(default: uncompressed)",
    )
    p.add_argument(
        "--downlink-codec",
        type=_json_config,
        default=None,
        help="downlink codec config (JSON) (default: the model as float32)",
    )
    p.add_argument(
        "--preset",
        default=None,
        help="a measured configuration (codec and server settings; `fedcodec presets` lists "
        "them), instead of --codec; options given explicitly win over its server settings "
        "(default: none)",
    )
    p.add_argument("--error-feedback", action="store_true", help="uplink error feedback")
    p.add_argument(
        "--uplink-rate-by-examples",
        action="store_true",
        help="each client's uplink rate in proportion to its training examples, the average "
        "kept (fedcodec.rate_share; needs a codec with a rate target)",
    )
    p.add_argument(
        "--tolerate-client-errors",
        action="store_true",
        help="drop a client whose training or encoding raises (fault-injection experiments) "
        "instead of stopping the run",
    )
    p.add_argument("--server-optimizer", default="sgd", help="sgd | momentum | adam")
    p.add_argument("--server-lr", type=float, default=1.0, help="server learning rate")
    p.add_argument(
        "--server-momentum", type=float, default=0.9, help="with --server-optimizer momentum"
    )
    p.add_argument(
        "--server-lr-schedule",
        default="constant",
        choices=["constant", "cosine"],
        help="the server learning rate over the rounds: constant, or cosine (from --server-lr "
        "at round 1 to near 0 at the last)",
    )
    p.add_argument("--feddyn-alpha", type=float, default=0.01, help="FedDyn's alpha")
    p.add_argument(
        "--freeze",
        action="append",
        default=[],
        help="FedPT: glob of parameters to freeze (repeatable)",
    )
    p.add_argument(
        "--freeze-fraction",
        type=float,
        default=None,
        help="FedPT: freeze the largest layers up to this share of the parameters "
        "(default: 0.5 with --algorithm fedpt and no --freeze)",
    )
    p.add_argument("--dirichlet-alpha", type=float, default=0.5, help="with --partition dirichlet")
    p.add_argument("--min-size", type=int, default=10, help="fewest training samples a client")
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every N rounds")
    p.add_argument("--checkpoint-every", type=int, default=10, help="checkpoint every N rounds")
    p.add_argument(
        "--target-accuracy",
        type=float,
        default=None,
        help="report the first round that reaches it (default: none)",
    )
    p.add_argument("--save-updates", type=int, default=0, help="rounds whose raw updates to save")
    p.add_argument("--out", default=None, help=_OUT_HELP.format("train"))
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


#: the train options a preset may set, at their command-line defaults
_TRAIN_DEFAULTS = {
    "server_optimizer": "sgd",
    "server_lr": 1.0,
    "server_momentum": 0.9,
    "server_lr_schedule": "constant",
    "uplink_rate_by_examples": False,
}


def _train(args: argparse.Namespace) -> int:
    from .fl import TrainConfig, run

    skip = ("func", "out", "resume", "no_progress", "command", "preset", *_ENGINE_ARGS)
    values = {k: v for k, v in vars(args).items() if k not in skip}
    if args.preset is not None:
        from .presets import get_preset

        preset = get_preset(args.preset)
        if args.codec is not None:
            raise ValueError("--preset sets the codec: give --preset or --codec, not both")
        values["codec"] = dict(preset.codec)
        for key, value in preset.train.items():
            if values.get(key) == _TRAIN_DEFAULTS.get(key):  # not given explicitly
                values[key] = value
    config = TrainConfig(**values)
    out = _out_dir(args)
    summary = run(
        config,
        out,
        resume=args.resume,
        progress=not args.no_progress,
        **_engine_kwargs(args),
    )
    keys = (
        "final_accuracy",
        "best_accuracy",
        "rounds_to_target",
        "uplink_bits_total",
        "mean_bits_per_param",
        "share_sent",
        "clients_dropped",
    )
    print(json.dumps({k: summary[k] for k in keys}))
    print(f"results in {out}/ (metrics.jsonl, summary.json)")
    return 0


# -- frontier -------------------------------------------------------------------------------
def _add_frontier(sub: Any) -> None:
    p = sub.add_parser(
        "frontier",
        formatter_class=_HelpFormatter,
        help="bits/param vs NMSE of every codec on real updates, with the Shannon bound",
        description="Sweep each codec's rate parameter over client updates and compare with "
        "the rate-distortion bound of their values. Input: --from-run, --updates or --task.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--from-run", help="a harness run directory (its updates.npz)")
    src.add_argument("--updates", help="an .npz file of updates (keys r<round>_c<client>)")
    src.add_argument("--task", help="run the harness now to get updates (e.g. digits)")
    p.add_argument(
        "--layout",
        help="with --updates: the model's tensors as JSON ([[name, shape, dtype], ...]); a "
        "run's layout.json is read by itself",
    )
    p.add_argument("--rounds", type=int, default=5, help="with --task: rounds (all saved)")
    p.add_argument("--clients-per-round", type=int, default=5, help="with --task")
    p.add_argument(
        "--codecs",
        default="rdq,topk,qsgd,drive,eden,threelc,fp16",
        help="comma-separated ids (each with its default sweep) or a JSON list of configs "
        "with an optional "
        '"sweep": {"param": [values]}',
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the codecs (and the run)")
    p.add_argument("--name", default=None, help="the document's name (default: frontier-<source>)")
    p.add_argument("--no-bound", action="store_true", help="skip the Blahut-Arimoto bound")
    p.add_argument("--out", default=None, help=_OUT_HELP.format("frontier"))
    _add_engine_options(p)
    p.set_defaults(func=_frontier)


def _frontier(args: argparse.Namespace) -> int:
    from .tools import frontier as fr
    from .tools.plots import plot_frontier

    if args.layout and not args.updates:
        raise SystemExit("--layout goes with --updates (a run's layout.json is read by itself)")
    out = _out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    specs = fr.parse_codecs(args.codecs)
    if args.from_run or args.updates:
        path = args.from_run or args.updates
        updates = fr.load_updates(path)
        layout = fr.load_layout(args.layout or path) if args.layout or args.from_run else None
        source: dict[str, Any] = {"kind": "run" if args.from_run else "file", "path": str(path)}
    else:
        from .fl import TrainConfig, run

        task = args.task or "digits"
        config = TrainConfig(
            task=task,
            rounds=args.rounds,
            clients_per_round=args.clients_per_round,
            seed=args.seed,
            save_updates=args.rounds,
        )
        run(config, out / "run", progress=False, **_engine_kwargs(args))
        updates = fr.load_updates(out / "run")
        layout = fr.load_layout(out / "run")
        source = {"kind": "task", "task": task, "rounds": args.rounds, "run": str(out / "run")}
    name = args.name or f"frontier-{source.get('task') or Path(source['path']).stem}"
    doc = fr.frontier(
        updates,
        specs,
        seed=args.seed,
        name=name,
        source={**source, "layout": layout is not None},
        bound=not args.no_bound,
        layout=layout,
    )
    _dump(out / "frontier.json", doc)
    _write_csv(out / "frontier.csv", doc["points"])
    plots = plot_frontier(doc, out)
    print(fr.markdown_table(doc))
    cons = doc["consistency"]
    if cons:
        within = cons["spread_within_round"]
        print(
            f"\nfrontier spread across {cons['num_updates']} updates ({cons['codec']}): "
            f"{cons['spread']:.4f}" + ("" if within is None else f"; within a round: {within:.4f}")
        )
    print(f"\nwrote {out / 'frontier.json'}, frontier.csv and {', '.join(p.name for p in plots)}")
    return 0


# -- compare --------------------------------------------------------------------------------
def _add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        formatter_class=_HelpFormatter,
        help="bits vs accuracy: one harness run per codec, same seed and data",
        description="Train with each codec config (plus uncompressed) and compare accuracy "
        "against cumulative uplink megabytes.",
    )
    _add_train_options(p)
    p.add_argument(
        "--codecs",
        default=None,
        help="JSON list of configs, null for uncompressed (default: fedcodec.tools.compare's "
        "DEFAULT_CODECS)",
    )
    p.add_argument(
        "--target-accuracy",
        type=float,
        default=None,
        help="accuracy to reach (default: the uncompressed run's mean accuracy over its last "
        "10 %% of rounds − 0.01)",
    )
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every N rounds")
    p.add_argument("--quick", action="store_true", help="CI size: digits, 10 rounds, 5 clients")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep finished runs of the same config under --out, continue checkpointed ones",
    )
    p.add_argument("--out", default=None, help=_OUT_HELP.format("compare"))
    p.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from .tools import compare as cmp
    from .tools.plots import plot_compare

    specs = cmp.parse_specs(args.codecs) if args.codecs else cmp.DEFAULT_CODECS
    keys = ("task", "model", "algorithm", "rounds", "clients_per_round", "local_epochs",
            "batch_size", "client_lr", "num_clients", "partition", "data_dir", "seed",
            "eval_every")  # fmt: skip
    base = {k: getattr(args, k) for k in keys}
    if args.quick:
        base.update(cmp.QUICK)
    out = _out_dir(args)
    doc = cmp.compare(
        specs,
        out,
        base=base,
        target_accuracy=args.target_accuracy,
        name="compare",
        run_kwargs=_engine_kwargs(args),
        resume=args.resume,
    )
    _dump(out / "compare.json", doc)
    _write_csv(out / "compare.csv", doc["table"])
    table = cmp.markdown_table(doc)
    (out / "compare.md").write_text(table + "\n")
    plots = plot_compare(doc, out)
    print(table)
    print(
        f"\nwrote {out / 'compare.json'}, compare.csv, compare.md and "
        + ", ".join(p.name for p in plots)
    )
    return 0


# -- speed ----------------------------------------------------------------------------------
def _add_speed(sub: Any) -> None:
    p = sub.add_parser(
        "speed",
        formatter_class=_HelpFormatter,
        help="encode/decode throughput of every codec vs a memory copy",
    )
    p.add_argument("--sizes", default="1000000,10000000", help="comma-separated update sizes")
    p.add_argument("--codecs", default=None, help="JSON list of codec configs (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timings of each; the best counts")
    p.add_argument("--out", default=None, help=_OUT_HELP.format("speed"))
    p.set_defaults(func=_speed)


def _speed(args: argparse.Namespace) -> int:
    from .tools import speed as sp

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    configs = json.loads(args.codecs) if args.codecs else sp.DEFAULT_CODECS
    out = _out_dir(args)
    doc = sp.speed(sizes, configs, repeats=args.repeats)
    out.mkdir(parents=True, exist_ok=True)
    _dump(out / "speed.json", doc)
    table = sp.markdown_table(doc)
    (out / "speed.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out / 'speed.json'} and speed.md")
    return 0


# -- presets --------------------------------------------------------------------------------
def _add_presets(sub: Any) -> None:
    p = sub.add_parser(
        "presets",
        formatter_class=_HelpFormatter,
        help="list the measured training configurations (fedcodec.presets) as JSON to copy",
    )
    p.set_defaults(func=_presets)


def _presets(args: argparse.Namespace) -> int:
    from .presets import PRESETS

    print(json.dumps([p.as_dict() for p in PRESETS.values()], indent=1))
    return 0


# -- plot -----------------------------------------------------------------------------------
def _add_plot(sub: Any) -> None:
    p = sub.add_parser(
        "plot",
        formatter_class=_HelpFormatter,
        help="redraw the plots of a frontier or compare JSON",
    )
    p.add_argument("file", help="frontier.json or compare.json")
    p.add_argument("--out", default=None, help="directory for the plots (default: the file's)")
    p.set_defaults(func=_plot)


def _plot(args: argparse.Namespace) -> int:
    from .tools.plots import plot_document

    path = Path(args.file)
    doc = json.loads(path.read_text())
    plots = plot_document(doc, Path(args.out) if args.out else path.parent)
    print("wrote " + ", ".join(str(p) for p in plots))
    return 0


# -- warmup ---------------------------------------------------------------------------------
def _add_warmup(sub: Any) -> None:
    p = sub.add_parser(
        "warmup",
        formatter_class=_HelpFormatter,
        help="compile every codec's kernels into numba's on-disk cache (NUMBA_CACHE_DIR sets "
        "where), so that a new process's first encode does not compile",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=_warmup)


def _warmup(args: argparse.Namespace) -> int:
    from .warmup import main as warmup_main

    return warmup_main(["--quiet"] if args.quiet else [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fedcodec", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    adders = (_add_train, _add_frontier, _add_compare, _add_speed, _add_plot, _add_presets)
    for add in (*adders, _add_warmup):
        add(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as exc:  # DatasetMissingError too
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
