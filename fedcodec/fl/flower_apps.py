"""The Flower App that runs the harness's experiment: :data:`server_app` and
:data:`client_app`, loaded by Flower's simulation process (``--engine flower``; the
launcher that starts Flower's processes is :mod:`.flower_engine`).

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
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Sequence
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

#: run-config keys the launcher writes into the App's ``pyproject.toml``
_CONFIG_KEY = "fedcodec-config"
_OUT_KEY = "fedcodec-out"
_THREADS_KEY = "fedcodec-torch-threads"
_STATE_MODEL = "fedcodec.held-model"
_STATE_CLIENT = "fedcodec.client"
_STATE_RESIDUAL = "fedcodec.residual"
_STATE_G = "fedcodec.feddyn-g"
#: where the ServerApp writes a failure's traceback for the launcher to report
_ERROR_FILE = "flower-error.txt"


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


__all__ = ["client_app", "server_app"]
