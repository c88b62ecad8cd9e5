"""The ``fedcodec`` command: ``fedcodec train ...`` (more subcommands to come)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
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


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="federated training with compression; writes metrics.jsonl and summary.json",
        description="Federated training (FedAvg, FedSGD, FedDyn, FedPT) on real offline data "
        "with any codec on the uplink and downlink. Results go under --out.",
    )
    p.add_argument(
        "--task", default="digits", help="digits | synthetic | fashion_mnist | shakespeare"
    )
    p.add_argument("--model", default=None, help="task model (default: the task's)")
    p.add_argument("--algorithm", default="fedavg", help="fedavg | fedsgd | feddyn | fedpt")
    p.add_argument("--codec", type=_json_config, default=None, help="uplink codec config (JSON)")
    p.add_argument(
        "--downlink-codec", type=_json_config, default=None, help="downlink codec (JSON)"
    )
    p.add_argument("--error-feedback", action="store_true", help="uplink error feedback")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--clients-per-round", type=int, default=10)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=None, help="0: whole local data per step")
    p.add_argument("--client-lr", type=float, default=None)
    p.add_argument("--server-optimizer", default="sgd", help="sgd | momentum | adam")
    p.add_argument("--server-lr", type=float, default=1.0)
    p.add_argument("--server-momentum", type=float, default=0.9)
    p.add_argument("--feddyn-alpha", type=float, default=0.01)
    p.add_argument("--freeze", action="append", default=[], help="glob of parameters to freeze")
    p.add_argument("--freeze-fraction", type=float, default=None)
    p.add_argument("--num-clients", type=int, default=None)
    p.add_argument("--partition", default=None, help="iid | dirichlet | shards | natural")
    p.add_argument("--dirichlet-alpha", type=float, default=0.5)
    p.add_argument("--min-size", type=int, default=10)
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--target-accuracy", type=float, default=None)
    p.add_argument("--save-updates", type=int, default=0, help="rounds whose raw updates to save")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    try:
        from .fl import DatasetMissingError, TrainConfig, run
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fields = {
        k: v
        for k, v in vars(args).items()
        if k not in ("func", "out", "resume", "no_progress", "command")
    }
    config = TrainConfig(**fields)
    try:
        summary = run(config, args.out, resume=args.resume, progress=not args.no_progress)
    except (DatasetMissingError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    print(f"results in {args.out}/ (metrics.jsonl, summary.json)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fedcodec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
