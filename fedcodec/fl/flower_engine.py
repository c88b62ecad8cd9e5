"""``--engine flower``: the harness's experiment on Flower's simulation engine (Ray).

:func:`run_flower` starts a SuperLink in simulation mode (its own ``FLWR_HOME`` under the
run's directory, a free loopback port), submits a generated Flower App with ``flwr run``
and stops the SuperLink when the run ends. The app's components are the two objects of
this module:

- :data:`server_app` builds the same :class:`~fedcodec.fl.Experiment` as the harness
  (data, model, algorithm, seeds), asks every SuperNode for its ``partition-id`` (the
  client key the seeds derive from; never Flower's random node ids), samples the round's
  clients with the harness's seeded sampler, sends each one its downlink message
  (:mod:`fedcodec.downlink`), decodes the replies' payloads in ascending client order and
  applies the harness's server update, then writes the harness's ``metrics.jsonl`` and
  ``summary.json``.
- :data:`client_app` trains on its partition with the harness's trainer
  (:meth:`~fedcodec.fl.process.FederatedProcess.local_update`: same seeds, same vector),
  keeps the model it holds, its error-feedback residual and FedDyn's ``g`` in the node's
  state, and replies with the payload, its loss and the NMSE it measured (only the client
  knows its true update).

Bits are the payloads' bytes on both links. With one torch thread per client the two
engines agree bit for bit (``tests/test_flower_engine.py``).

Ray: each client takes ``client_cpus`` CPUs (and ``client_gpus`` GPUs); with
``RAY_ADDRESS`` set (``ray start --head`` on one node, ``ray start --address=HEAD:6379`` on
the others) the simulation runs on that cluster (docs/fl.md).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    from flwr.app import (
        Array,
        ArrayRecord,
        ConfigRecord,
        Context,
        Message,
        MessageType,
        MetricRecord,
        RecordDict,
    )
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("--engine flower needs Flower: pip install 'fedcodec[flower]'") from exc

from ..downlink import apply_downlink
from ..error_feedback import ErrorFeedback
from ..errors import DecodeError
from ..flower import pack_downlink, pack_payload, unpack_downlink, unpack_payload
from .process import Accepted, ClientError, ServerState, StageError, update_nmse

log = logging.getLogger("fedcodec.fl.flower")

FLWR_VERSION = "1.42.0"  # the version this engine was written and tested against
_CONFIG_KEY = "fedcodec-config"
_OUT_KEY = "fedcodec-out"
_THREADS_KEY = "fedcodec-torch-threads"
_STATE_MODEL = "fedcodec.held-model"
_STATE_CLIENT = "fedcodec.client"
_STATE_RESIDUAL = "fedcodec.residual"
_STATE_G = "fedcodec.feddyn-g"
_ERROR_FILE = "flower-error.txt"


@dataclass
class FlowerOptions:
    """How the Flower engine runs: Ray resources per client (``client_cpus`` CPUs, also the
    torch threads of a client; ``client_gpus``, fractions allowed), the CPUs Ray may use
    on this machine (``ray_cpus``, default all), seconds a round may take
    (``round_timeout_s``) and the whole run (``timeout_s``)."""

    client_cpus: int = 1
    client_gpus: float = 0.0
    ray_cpus: int | None = None
    round_timeout_s: float = 3600.0
    timeout_s: float | None = None
    verbose: bool = False


# -- the apps (loaded by Flower's simulation process) ---------------------------------------
_EXPERIMENTS: dict[str, Any] = {}


def _experiment(config_json: str) -> Any:
    """The run's Experiment, built once per process (a Ray actor serves many clients)."""
    from .runner import Experiment, TrainConfig

    exp = _EXPERIMENTS.get(config_json)
    if exp is None:
        _EXPERIMENTS.clear()
        exp = Experiment(TrainConfig.from_json(json.loads(config_json)))
        _EXPERIMENTS[config_json] = exp
    return exp


client_app = ClientApp()


@client_app.query()
def _query(msg: Message, context: Context) -> Message:
    key = int(context.node_config["partition-id"])
    return Message(RecordDict({"fedcodec": MetricRecord({"client": key})}), reply_to=msg)


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    import torch

    torch.set_num_threads(int(context.run_config.get(_THREADS_KEY, 1)))
    exp = _experiment(str(context.run_config[_CONFIG_KEY]))
    process = exp.process
    k = int(context.node_config["partition-id"])
    cfg = msg.content.config_records["config"]
    round_ = int(cfg["server-round"])  # type: ignore[arg-type]
    state = context.state
    # the model this client holds: the initial one (both sides derive it from the seed)
    # until its first broadcast
    if _STATE_MODEL in state.array_records:
        held = state.array_records[_STATE_MODEL]["m"].numpy()
        held_round = int(state.config_records[_STATE_CLIENT]["round"])  # type: ignore[arg-type]
    else:
        held, held_round = process.model_init.astype(np.float32, copy=True), 0
    try:
        down, layout = unpack_downlink(
            msg.content.array_records["downlink"], msg.content.config_records["downlink-config"]
        )
        if layout != process.layout:
            raise ValueError("the downlink message is for another model")
        start = held.copy()
        start[process.idx] = apply_downlink(
            held[process.idx],
            held_round,
            down,
            process.down.codec,
            seed=process.seed,
            layout=process.layout,
        )
    except (ValueError, KeyError) as exc:
        return _error_reply(msg, "downlink", exc)
    algo: dict[str, np.ndarray] = {}
    if _STATE_G in state.array_records:
        algo[f"g/{k}"] = state.array_records[_STATE_G]["g"].numpy()
    feedback = None
    if process.error_feedback is not None:
        feedback = ErrorFeedback(process.uplink)
        if _STATE_RESIDUAL in state.array_records:
            feedback.residuals[k] = state.array_records[_STATE_RESIDUAL]["r"].numpy()
    # the client holds the broadcast it received, whatever happens next
    state[_STATE_MODEL] = ArrayRecord({"m": Array(start)})
    state[_STATE_CLIENT] = ConfigRecord({"round": round_})
    try:
        payload, delta, loss = process.local_update(
            k,
            round_,
            start,
            prox=process.algorithm.prox(algo, k, start[process.idx]),
            feedback=feedback,
        )
    except StageError as err:
        return _error_reply(msg, err.stage, err.__cause__ or err)
    decoded = process.decode_update(k, round_, payload, delta.size)
    process.algorithm.after_client(algo, k, decoded)  # FedDyn's g, with the server's Δ̂
    if f"g/{k}" in algo:
        state[_STATE_G] = ArrayRecord({"g": Array(algo[f"g/{k}"])})
    if feedback is not None:
        state[_STATE_RESIDUAL] = ArrayRecord({"r": Array(feedback.residuals.pop(k))})
    content = RecordDict(
        {
            "fedcodec": pack_payload(payload),
            "metrics": MetricRecord(
                {
                    "client": k,
                    "loss": float(loss),
                    "nmse": update_nmse(delta, decoded),
                    "num-examples": int(exp.data.clients[k].num_train),
                    "payload-bytes": len(payload),
                }
            ),
        }
    )
    if bool(cfg.get("keep-update", False)):  # raw update for frontier analyses, not counted
        content["update"] = ArrayRecord({"u": Array(delta)})
    return Message(content, reply_to=msg)


def _error_reply(msg: Message, stage: str, exc: BaseException) -> Message:
    error = f"{type(exc).__name__}: {exc}"
    record = ConfigRecord({"stage": stage, "error": error})
    return Message(RecordDict({"fedcodec-error": record}), reply_to=msg)


server_app = ServerApp()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    out = Path(str(context.run_config[_OUT_KEY]))
    try:
        _serve(grid, context, out)
    except BaseException:
        (out / _ERROR_FILE).write_text(traceback.format_exc())
        raise


def _serve(grid: Grid, context: Context, out: Path) -> None:
    exp = _experiment(str(context.run_config[_CONFIG_KEY]))
    num_clients = len(exp.data.clients)
    round_timeout = float(context.run_config.get("fedcodec-round-timeout", 3600.0))
    nodes = _wait_for_nodes(grid, num_clients, timeout=round_timeout)
    query = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY) for n in nodes]
    node_of: dict[int, int] = {}
    for reply in grid.send_and_receive(query, timeout=round_timeout):
        if reply.has_error():
            raise RuntimeError(f"a SuperNode did not report its partition id: {reply.error}")
        node_of[int(reply.content["fedcodec"]["client"])] = int(reply.metadata.src_node_id)  # type: ignore[arg-type]
    if sorted(node_of) != list(range(num_clients)):
        raise RuntimeError(
            f"the SuperNodes' partition ids are {sorted(node_of)}; the task has "
            f"{num_clients} clients (one SuperNode per client: num-supernodes={num_clients})"
        )
    apply = _FlowerRound(exp, grid, node_of, round_timeout)
    exp.run(out, progress=False, apply=apply, engine="flower")


def _wait_for_nodes(grid: Grid, count: int, *, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if len(nodes) < count:
        raise RuntimeError(f"{len(nodes)} SuperNodes connected; the task has {count} clients")
    return nodes


class _FlowerRound:
    """One round sent through Flower's grid, with the harness's arithmetic on both ends."""

    def __init__(self, exp: Any, grid: Grid, node_of: dict[int, int], timeout: float) -> None:
        self.exp, self.grid, self.node_of, self.timeout = exp, grid, node_of, timeout
        self.client_of = {n: k for k, n in node_of.items()}

    def __call__(
        self, state: ServerState, clients: Sequence[int], *, keep_updates: bool = False
    ) -> tuple[ServerState, dict[str, Any]]:
        t0 = time.perf_counter()
        process = self.exp.process
        round_ = state.round + 1
        down_bits = process.broadcast(state, round_, clients)
        messages = []
        for k in clients:
            record, down_config = pack_downlink(process.down.message(k, round_), process.layout)
            config = ConfigRecord({"server-round": round_, "keep-update": keep_updates})
            content = RecordDict(
                {"downlink": record, "downlink-config": down_config, "config": config}
            )
            messages.append(
                Message(content, dst_node_id=self.node_of[k], message_type=MessageType.TRAIN)
            )
        replies: dict[int, Message] = {}
        for r in self.grid.send_and_receive(messages, timeout=self.timeout):
            sender = self.client_of.get(int(r.metadata.src_node_id))
            if sender is not None and sender in clients:  # a node not asked is ignored
                replies[sender] = r
        accepted: list[Accepted] = []
        dropped: list[dict[str, Any]] = []
        updates: dict[int, np.ndarray] = {}
        up_bits = 0
        tolerate = process.tolerate_client_errors
        for k in sorted(clients):  # the harness's order: the server update sums in it
            reply = replies.get(k)
            stage, error = "transport", "no reply"
            if reply is not None and reply.has_error():
                stage, error = "train", f"the ClientApp failed: {reply.error.reason}"
            elif reply is not None and "fedcodec-error" in reply.content.config_records:
                rec = reply.content.config_records["fedcodec-error"]
                stage, error = str(rec["stage"]), str(rec["error"])
            elif reply is not None:
                try:
                    data = unpack_payload(reply.content.array_records["fedcodec"])
                    payload = b"".join(data) if isinstance(data, list) else data
                    metrics = reply.content.metric_records["metrics"]
                    up_bits += 8 * len(payload)
                    stage = "decode"
                    decoded = process.decode_update(k, round_, payload, process.idx.size)
                except (DecodeError, ValueError, KeyError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                else:
                    accepted.append(
                        Accepted(
                            k,
                            decoded,
                            weight=float(metrics["num-examples"]),  # type: ignore[arg-type]
                            loss=float(metrics["loss"]),  # type: ignore[arg-type]
                            nmse=float(metrics["nmse"]),  # type: ignore[arg-type]
                            payload_bytes=len(payload),
                        )
                    )
                    if keep_updates and "update" in reply.content.array_records:
                        updates[k] = reply.content.array_records["update"]["u"].numpy()
                    continue
            if stage in ("train", "encode") and not tolerate:
                raise ClientError(round_, k, stage, RuntimeError(error))
            log.warning("round %d: client %d dropped at %s: %s", round_, k, stage, error)
            dropped.append({"client": k, "stage": stage, "error": error})
        diag = process.finish_round(
            state, round_, clients, accepted, dropped, up_bits=up_bits, down_bits=down_bits
        )
        diag["seconds"] = time.perf_counter() - t0
        if keep_updates:
            diag["updates"] = updates
        return state, diag


# -- the launcher ---------------------------------------------------------------------------
_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fedcodec-engine"
version = "1.0.0"
description = "fedcodec's harness on Flower's simulation engine (generated by fedcodec)"
license = "MIT"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "fedcodec"

[tool.flwr.app.components]
serverapp = "fedcodec.fl.flower_engine:server_app"
clientapp = "fedcodec.fl.flower_engine:client_app"

[tool.flwr.app.config]
{config_key} = ""
{out_key} = ""
{threads_key} = 1
fedcodec-round-timeout = 3600.0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string (same escapes)


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: pip install 'fedcodec[flower]'")
    return found


def run_flower(
    config: Any, out: str | Path, *, options: FlowerOptions | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run ``config`` (a :class:`~fedcodec.fl.TrainConfig`) on Flower's simulation engine:
    one SuperNode per client of the task; writes the harness's files under ``out`` and
    returns the summary."""
    from .runner import Experiment

    opts = options or FlowerOptions()
    if opts.client_cpus < 1:
        raise ValueError(f"client_cpus must be at least 1, got {opts.client_cpus}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    exp = Experiment(config)  # checks the config and tells the number of clients here
    resolved = exp.config.to_json()
    num_clients = len(exp.data.clients)
    del exp
    for stale in ("summary.json", _ERROR_FILE):
        (out / stale).unlink(missing_ok=True)
    home = out / "flower"
    app = home / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "pyproject.toml").write_text(
        _PYPROJECT.format(config_key=_CONFIG_KEY, out_key=_OUT_KEY, threads_key=_THREADS_KEY)
    )
    (app / "README.md").write_text("Generated by fedcodec train --engine flower.\n")
    (home / "run-config.toml").write_text(
        f"{_CONFIG_KEY} = {_toml_string(json.dumps(resolved))}\n"
        f"{_OUT_KEY} = {_toml_string(str(out))}\n"
        f"{_THREADS_KEY} = {opts.client_cpus}\n"
        f"fedcodec-round-timeout = {float(opts.round_timeout_s)}\n"
    )
    federation = [
        f"num-supernodes={num_clients}",
        f"client-resources-num-cpus={opts.client_cpus}",
        f"client-resources-num-gpus={float(opts.client_gpus)}",
        f"verbose={'true' if opts.verbose else 'false'}",
    ]
    if opts.ray_cpus is not None:
        federation.append(f"init-args-num-cpus={opts.ray_cpus}")
    with LocalSuperLink(home, simulation=True) as link:
        returncode = link.run(
            app,
            run_config=home / "run-config.toml",
            federation=federation,
            echo=progress,
            timeout_s=opts.timeout_s,
        )
    summary_path = out / "summary.json"
    if (out / _ERROR_FILE).exists() or not summary_path.exists() or returncode:
        detail = (out / _ERROR_FILE).read_text() if (out / _ERROR_FILE).exists() else ""
        tail = "".join((home / "run.log").read_text().splitlines(True)[-30:])
        raise RuntimeError(
            f"the Flower run did not finish (flwr run exit {returncode}); logs in "
            f"{home}:\n{detail or tail}"
        )
    result: dict[str, Any] = json.loads(summary_path.read_text())
    return result


class LocalSuperLink:
    """A SuperLink on a free loopback port with its own ``FLWR_HOME`` (``home``), whose
    ``config.toml`` names it as connection ``fedcodec``; in simulation mode (``simulation``)
    or for SuperNodes to connect to (:attr:`address`). Leaving the ``with`` block stops it
    and every process it started. :attr:`env` is the environment its helpers (and
    SuperNodes started next to it) need: ``FLWR_HOME``, this interpreter's scripts first on
    ``PATH``, this process's import path on ``PYTHONPATH``."""

    def __init__(self, home: str | Path, *, simulation: bool) -> None:
        self.home = Path(home).resolve()
        self.simulation = simulation
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        env = dict(os.environ)
        env["FLWR_HOME"] = str(self.home)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        # the apps import what this process imports (a user's task module included)
        paths = [str(Path(p).resolve()) for p in sys.path if p and Path(p).exists()]
        paths.insert(0, str(Path.cwd()))
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        env.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalSuperLink:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "fedcodec"\n\n[superlink.fedcodec]\n'
            f'address = "{self.address}"\ninsecure = true\n'
        )
        cmd = [
            _bin("flower-superlink"),
            "--insecure",
            "--disable-runtime-dependency-installation",  # offline: the env has the deps
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        if self.simulation:
            cmd.insert(2, "--simulation")
        log_path = self.home / "superlink.log"
        with log_path.open("wb") as sl_log:
            self._proc = subprocess.Popen(
                cmd, env=self.env, stdout=sl_log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            _wait_healthy(self.port, self._proc, log_path)
        except BaseException:
            _stop(self._proc)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            _stop(self._proc)

    def run(
        self,
        app: str | Path,
        *,
        run_config: str | Path | None = None,
        federation: Sequence[str] = (),
        echo: bool = False,
        timeout_s: float | None = None,
        log_name: str = "run.log",
    ) -> int:
        """``flwr run APP fedcodec --stream`` (with the run config file and federation
        config given); returns its exit status once the run has ended. Its output goes to
        ``home/log_name`` (and to stderr with ``echo``)."""
        cmd = [_bin("flwr"), "run", str(app), "fedcodec", "--stream"]
        if run_config is not None:
            cmd += ["--run-config", str(run_config)]
        if federation:
            cmd += ["--federation-config", " ".join(federation)]
        with (
            (self.home / log_name).open("w") as run_log,
            subprocess.Popen(
                cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            ) as proc,
        ):
            assert proc.stdout is not None
            for line in proc.stdout:
                run_log.write(line)
                if echo:
                    sys.stderr.write(line)
            return proc.wait(timeout=timeout_s)


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"flower-superlink exited: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"flower-superlink did not come up in 60 s; see {log_path}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started with ``start_new_session`` and everything it started: its
    group, and its descendants in groups of their own (Flower's SuperExec starts its apps
    so). They get 10 s to exit by themselves (a simulation shuts Ray down), then SIGKILL."""
    family = _descendants(proc.pid)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    start = time.monotonic()
    while time.monotonic() < start + 40:
        alive = [p for p in family if _alive(p)] + _group_members(proc.pid)
        if not alive:
            return
        if time.monotonic() > start + 10:
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.1)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command (state, ppid, pgrp, ...); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    if not Path("/proc").is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux's /proc; elsewhere none are known)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat") if Path("/proc").is_dir() else []:
        fields = _stat(int(stat.parent.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _group_members(pgid: int) -> list[int]:
    """Live processes of group ``pgid`` (Linux's /proc; elsewhere what kill sees)."""
    if not Path("/proc").is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat(int(stat.parent.name))
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


__all__ = [
    "FLWR_VERSION",
    "FlowerOptions",
    "LocalSuperLink",
    "client_app",
    "run_flower",
    "server_app",
]
