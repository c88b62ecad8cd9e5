"""A whole training run: config, rounds, JSON lines, checkpoints, ``--resume``, summary.

Files under the output directory:

- ``config.json``: the :class:`TrainConfig` (a resumed run must match it);
- ``metrics.jsonl``: one JSON line per round (see :func:`run`);
- ``summary.json``: final and best accuracy, bits and rounds to the target accuracy;
- ``checkpoint.npz``: the server state every ``checkpoint_every`` rounds and at the end;
- ``updates.npz``: raw client updates of ``save_updates`` rounds (keys ``r<round>_c<client>``),
  for ``fedcodec frontier``, and ``layout.json``: the model's tensors (names, shapes,
  dtypes) the flat updates are made of (:meth:`fedcodec.Layout.from_json`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..codec import get_codec
from .algorithms import LR_SCHEDULES, FedAvg, FedDyn
from .client import Trainer, frozen_names
from .process import ClientError, FederatedProcess, ServerState, Transport, derive_seed
from .tasks import DEFAULTS, TASK_ENTRY_POINTS, build_model, is_builtin, load_task, load_user_task

ALGORITHMS = ("fedavg", "fedsgd", "feddyn", "fedpt")
CHECKPOINT_VERSION = 2  # 2: the downlink's bookkeeping (what each client holds)


@dataclass
class TrainConfig:
    """Everything that defines a run; ``None`` fields take the task's default.

    ``algorithm``: ``fedavg``; ``fedsgd`` (FedAvg with one full-batch gradient step per
    round); ``feddyn``; ``fedpt`` (FedAvg training only part of the model: ``freeze``
    patterns and/or the largest layers up to ``freeze_fraction``, default 0.5). Freezing
    works with the other algorithms too.
    """

    task: str = "digits"
    model: str | None = None
    algorithm: str = "fedavg"
    rounds: int = 20
    clients_per_round: int = 10
    local_epochs: int = 1
    batch_size: int | None = None
    client_lr: float | None = None
    server_optimizer: str = "sgd"
    server_lr: float = 1.0
    server_momentum: float = 0.9
    server_lr_schedule: str = "constant"
    feddyn_alpha: float = 0.01
    freeze: list[str] = field(default_factory=list)
    freeze_fraction: float | None = None
    codec: dict[str, Any] | None = None
    downlink_codec: dict[str, Any] | None = None
    error_feedback: bool = False
    uplink_rate_by_examples: bool = False
    tolerate_client_errors: bool = False
    num_clients: int | None = None
    partition: str | None = None
    dirichlet_alpha: float = 0.5
    min_size: int = 10
    data_dir: str | None = None
    seed: int = 0
    eval_every: int = 1
    checkpoint_every: int = 10
    target_accuracy: float | None = None
    save_updates: int = 0

    def resolved(self) -> TrainConfig:
        """A copy with the task defaults filled in and values checked."""
        if self.task not in DEFAULTS and ":" not in self.task and not _is_entry_point(self.task):
            raise ValueError(
                f"unknown task {self.task!r}; choose one of {', '.join(DEFAULTS)}, a function "
                "as package.module:function, or an entry point of group 'fedcodec.tasks'"
            )
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"unknown algorithm {self.algorithm!r}; choose one of {', '.join(ALGORITHMS)}"
            )
        if self.server_lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"unknown server lr schedule {self.server_lr_schedule!r}; "
                f"choose {', '.join(LR_SCHEDULES)}"
            )
        if self.algorithm == "feddyn" and self.server_lr_schedule != "constant":
            raise ValueError(
                "FedDyn's server update has no learning rate to schedule: use "
                "server_lr_schedule='constant' with algorithm='feddyn'"
            )
        c = dataclasses.replace(self, freeze=list(self.freeze))
        if self.task in DEFAULTS:  # a user's task gives its defaults when it is loaded
            d = DEFAULTS[self.task]
            c.model = c.model or d.model
            c.batch_size = d.batch_size if c.batch_size is None else c.batch_size
            c.client_lr = d.client_lr if c.client_lr is None else c.client_lr
        if c.algorithm == "fedpt" and c.freeze_fraction is None and not c.freeze:
            c.freeze_fraction = 0.5
        if c.algorithm == "fedsgd":
            c.local_epochs, c.batch_size = 1, 0
        for name in (
            "rounds",
            "clients_per_round",
            "local_epochs",
            "eval_every",
            "checkpoint_every",
        ):
            if getattr(c, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(c, name)}")
        return c

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**d)


def _is_entry_point(name: str) -> bool:
    from importlib.metadata import entry_points

    return any(ep.name == name for ep in entry_points(group=TASK_ENTRY_POINTS))


#: One round: ``apply(state, clients, keep_updates=False) -> (state, diagnostics)``.
RoundFn = Callable[..., tuple[ServerState, dict[str, Any]]]

# keys that may differ between a run and its resumption
_RESUMABLE = {"rounds", "checkpoint_every", "target_accuracy"}


class Experiment:
    """A configured run: data, model, process; :meth:`run` writes the output files."""

    def __init__(self, config: TrainConfig, *, transport: Transport | None = None) -> None:
        self.config = c = config.resolved()
        user = None
        if is_builtin(c.task):
            self.data = load_task(
                c.task,
                num_clients=c.num_clients,
                partition=c.partition,
                alpha=c.dirichlet_alpha,
                min_size=c.min_size,
                seed=c.seed,
                data_dir=c.data_dir,
            )
        else:  # the user's own task: its data and model, its defaults
            user = load_user_task(c.task, seed=c.seed, num_clients=c.num_clients)
            self.data = user.federated_data(c.task)
            self.config = c = dataclasses.replace(
                c,
                model=c.model or "task",
                client_lr=user.client_lr if c.client_lr is None else c.client_lr,
                batch_size=user.batch_size if c.batch_size is None else c.batch_size,
            )
        torch.manual_seed(derive_seed(c.seed, 0, -1, 0))
        if user is not None:
            model = user.model()
            if not isinstance(model, nn.Module):
                raise ValueError(f"task {c.task!r}: model() returned {type(model).__name__}")
        else:
            model = build_model(c.task, c.model, self.data)
        frozen: list[str] = []
        if c.freeze or c.freeze_fraction:
            frozen = frozen_names(
                model, patterns=tuple(c.freeze), fraction=c.freeze_fraction or 0.0
            )
        self.trainer = Trainer(model, frozen)
        self.frozen = frozen
        algorithm: FedAvg
        if c.algorithm == "feddyn":
            algorithm = FedDyn(c.feddyn_alpha, num_clients=len(self.data.clients))
        else:
            algorithm = FedAvg(
                c.server_optimizer,
                c.server_lr,
                momentum=c.server_momentum,
                lr_schedule=c.server_lr_schedule,
                rounds=c.rounds,
            )
        self.process = FederatedProcess(
            self.trainer,
            self.data,
            algorithm,
            seed=c.seed,
            local_epochs=c.local_epochs,
            batch_size=c.batch_size or 0,
            client_lr=float(c.client_lr or 0.0),
            uplink=get_codec(c.codec) if c.codec else None,
            downlink=get_codec(c.downlink_codec) if c.downlink_codec else None,
            error_feedback=c.error_feedback,
            uplink_rate_by_examples=c.uplink_rate_by_examples,
            transport=transport,
            tolerate_client_errors=c.tolerate_client_errors,
            model_init=self.trainer.get_vector(),
        )
        self.test_x, self.test_y = self.data.test_set()

    @property
    def share_sent(self) -> float:
        return self.trainer.num_trainable / self.trainer.num_params

    def evaluate(self, state: ServerState) -> tuple[float, float]:
        return self.trainer.evaluate(state.params, self.test_x, self.test_y)

    # -- the run --------------------------------------------------------------------------
    def run(
        self,
        out: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        apply: RoundFn | None = None,
        engine: str = "harness",
    ) -> dict[str, Any]:
        """Train ``config.rounds`` rounds, writing the files listed in the module docstring.

        ``apply(state, clients, keep_updates=)`` runs one round (default: this process's
        :meth:`FederatedProcess.apply`; Flower's engine passes its own, which sends the
        round to the clients); ``engine`` names it in the summary. A run that stops on a
        client's error (:class:`~fedcodec.fl.process.ClientError`) writes the summary of its
        rounds so far, with ``stopped`` (the error) and ``stopped_round``, then re-raises.

        Each line of ``metrics.jsonl``: ``round``, ``test_accuracy``, ``test_loss`` (global
        held-out set; ``null`` between ``eval_every`` rounds), ``train_loss``, ``clients``,
        ``dropped`` (client, stage, error), ``uplink_bits`` / ``downlink_bits`` this round
        and ``*_cum`` since the start (8 × payload bytes; the downlink counts what each of
        the round's clients receives, :mod:`fedcodec.downlink`), ``bits_per_param`` (mean
        uplink bits per sent parameter),
        ``nmse_mean`` / ``nmse_max`` (‖Δ − Δ̂‖²/‖Δ‖² over the round's clients), ``seconds``.
        """
        c = self.config
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        metrics_path = out / "metrics.jsonl"
        if resume:
            state = self._load_checkpoint(out)
            _truncate_lines(metrics_path, state.round)
        else:
            state = self.process.init()
            metrics_path.write_text("")
            for stale in ("checkpoint.npz", "summary.json", "updates.npz", "layout.json"):
                (out / stale).unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps(c.to_json(), indent=2) + "\n")
        save_rounds = _spread(c.rounds, c.save_updates)
        updates_dir = out / "updates"
        bar = _progress(range(state.round, c.rounds), progress, initial=state.round, total=c.rounds)
        try:
            with metrics_path.open("a") as f:
                for _ in bar:
                    r = state.round + 1
                    clients = self.process.sample_clients(r, c.clients_per_round)
                    state, diag = (apply or self.process.apply)(
                        state, clients, keep_updates=r in save_rounds
                    )
                    if r % c.eval_every == 0 or r == c.rounds:
                        acc, loss = self.evaluate(state)
                    else:
                        acc, loss = None, None
                    updates = diag.pop("updates", None)
                    if updates:
                        updates_dir.mkdir(exist_ok=True)
                        np.savez(
                            updates_dir / f"round{r:05d}.npz",
                            **{f"r{r}_c{k}": v for k, v in updates.items()},
                        )
                    line = {"round": r, "test_accuracy": acc, "test_loss": loss, **diag}
                    f.write(json.dumps(line) + "\n")
                    f.flush()
                    if hasattr(bar, "set_postfix"):
                        bar.set_postfix(acc=f"{acc:.3f}" if acc is not None else "-")
                    if r % c.checkpoint_every == 0 or r == c.rounds:
                        self._save_checkpoint(out, state)
        except ClientError as exc:
            # the rounds so far are a result: their summary says where and why the run stopped
            summary = self.summarize(_read_lines(metrics_path))
            summary.update(engine=engine, stopped=str(exc), stopped_round=exc.round)
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            raise
        if updates_dir.is_dir():
            merged: dict[str, np.ndarray] = {}
            for p in sorted(updates_dir.glob("round*.npz")):
                with np.load(p) as z:
                    merged.update({k: z[k] for k in z.files})
            np.savez(out / "updates.npz", **merged)  # type: ignore[arg-type]
            # the model's tensors, so that analyses see the updates' structure
            layout = self.trainer.layout.to_json()
            (out / "layout.json").write_text(json.dumps(layout) + "\n")
        summary = self.summarize(_read_lines(metrics_path))
        summary["engine"] = engine
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def summarize(self, lines: list[dict[str, Any]]) -> dict[str, Any]:
        c = self.config
        evaluated = [x for x in lines if x["test_accuracy"] is not None]
        best = max(evaluated, key=lambda x: x["test_accuracy"], default=None)
        hit = None
        if c.target_accuracy is not None:
            hit = next((x for x in evaluated if x["test_accuracy"] >= c.target_accuracy), None)
        bpp = [x["bits_per_param"] for x in lines if x["bits_per_param"] is not None]
        last = lines[-1] if lines else {}
        return {
            "task": c.task,
            "algorithm": c.algorithm,
            "codec": c.codec,
            "downlink_codec": c.downlink_codec,
            "rounds": len(lines),
            "final_accuracy": evaluated[-1]["test_accuracy"] if evaluated else None,
            "final_loss": evaluated[-1]["test_loss"] if evaluated else None,
            "best_accuracy": best["test_accuracy"] if best else None,
            "best_round": best["round"] if best else None,
            "target_accuracy": c.target_accuracy,
            "rounds_to_target": hit["round"] if hit else None,
            "uplink_bits_to_target": hit["uplink_bits_cum"] if hit else None,
            "downlink_bits_to_target": hit["downlink_bits_cum"] if hit else None,
            "uplink_bits_total": last.get("uplink_bits_cum", 0),
            "downlink_bits_total": last.get("downlink_bits_cum", 0),
            "mean_bits_per_param": float(np.mean(bpp)) if bpp else None,
            "params_total": self.trainer.num_params,
            "params_sent": self.trainer.num_trainable,
            "share_sent": self.share_sent,
            "frozen": self.frozen,
            "clients_dropped": sum(len(x["dropped"]) for x in lines),
            "seconds": sum(x["seconds"] for x in lines),
            "data": self.data.summary(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "torch": torch.__version__,
        }

    # -- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, out: Path, state: ServerState) -> None:
        meta = {"version": CHECKPOINT_VERSION, "config": self.config.to_json()}
        arrays = state.to_arrays()
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        tmp = out / "checkpoint.tmp.npz"
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, out / "checkpoint.npz")  # a crash mid-write keeps the old one

    def _load_checkpoint(self, out: Path) -> ServerState:
        path = out / "checkpoint.npz"
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from in {out}")
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        if meta.get("version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"{path} has checkpoint version {meta.get('version')}, this fedcodec reads "
                f"version {CHECKPOINT_VERSION}: rerun without --resume (CHANGELOG.md)"
            )
        saved, now = meta["config"], self.config.to_json()
        # a field added after the checkpoint was written has its default there
        defaults = TrainConfig().to_json()
        differ = sorted(
            k for k in now if k not in _RESUMABLE and saved.get(k, defaults[k]) != now[k]
        )
        if differ:
            raise ValueError(f"cannot resume: the config differs from the checkpoint's in {differ}")
        state = ServerState.from_arrays(arrays)
        if state.params.size != self.trainer.num_params:
            raise ValueError(f"{path} holds a model of another size")
        return state


def _spread(rounds: int, count: int) -> set[int]:
    if count <= 0:
        return set()
    return {int(r) for r in np.unique(np.linspace(1, rounds, min(count, rounds)).round())}


def _read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(s) for s in path.read_text().splitlines() if s.strip()]


def _truncate_lines(path: Path, last_round: int) -> None:
    """Drop the lines of rounds after the checkpoint (they are run again)."""
    if path.exists():
        keep = [x for x in _read_lines(path) if x["round"] <= last_round]
        path.write_text("".join(json.dumps(x) + "\n" for x in keep))


def _progress(it: Iterable[int], enabled: bool, *, initial: int, total: int) -> Any:
    if not enabled:
        return it
    try:
        from tqdm import tqdm
    except ImportError:
        return it
    return tqdm(it, initial=initial, total=total, unit="round", dynamic_ncols=True)
