"""Flower integration (Message API): a client mod that compresses the training reply, and a
strategy wrapper that decodes it before the wrapped strategy aggregates.

Needs the ``flower`` extra (``flwr[simulation]``). The mod turns the reply's ArrayRecord
(the new weights) into one :class:`flwr.app.Array` with ``stype="fedcodec"`` whose
``data`` is the fedcodec payload of the update *new weights − received weights*; the
wrapper, which knows the weights it sent, decodes the payload back into weights, so the
wrapped strategy (FedAvg, FedAdam, ...) needs no change. Codec seeds derive from
(``seed``, server round, client key, uplink) with :func:`fedcodec.seeds.derive_seed` on
both sides; the client key is the node's ``partition-id`` (stable across runs), which the
reply reports in its metrics.

Examples
--------
Client side::

    from fedcodec.flower import fedcodec_mod
    app = ClientApp(mods=[fedcodec_mod({"id": "rdq", "bits_per_param": 1.0})])

Server side::

    from fedcodec.flower import FedcodecStrategy
    strategy = FedcodecStrategy(FedAvg(fraction_train=0.5), {"id": "rdq", "bits_per_param": 1.0})
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()))
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

try:
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord
    from flwr.serverapp.strategy import Strategy
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fedcodec.flower needs Flower: pip install 'fedcodec[flower]'") from exc

from . import container
from .codec import Codec, get_codec
from .error_feedback import ErrorFeedback
from .errors import DecodeError
from .layout import Layout
from .seeds import UPLINK, derive_seed

log = logging.getLogger("fedcodec.flower")

STYPE = "fedcodec"
ARRAY_KEY = "fedcodec"
RESIDUAL_KEY = "fedcodec.residual"
METRIC_BYTES = "fedcodec-payload-bytes"
#: The client key the reply's payload was encoded with (the server derives the seed from it).
METRIC_CLIENT_KEY = "fedcodec-client-key"


def _codec(codec: Codec | Mapping[str, Any]) -> Codec:
    return codec if isinstance(codec, Codec) else get_codec(codec)


def client_key_of(ctxt: Any) -> int:
    """The client's stable key: Flower's ``partition-id`` node config (the simulation engine
    sets it; a deployment sets it with ``--node-config "partition-id=N"``), never the random
    node id, so that a run's seeds and bytes are reproducible."""
    key = ctxt.node_config.get("partition-id")
    if key is None:
        raise ValueError(
            "fedcodec_mod needs a stable client key: set node_config 'partition-id' (flower-"
            'supernode --node-config "partition-id=N"), or pass client_key= to fedcodec_mod'
        )
    return int(key)


def reply_client_key(reply: Message) -> int:
    """The client key a reply reports (``fedcodec-client-key`` in its metrics)."""
    for metrics in reply.content.metric_records.values():
        if METRIC_CLIENT_KEY in metrics:
            return int(metrics[METRIC_CLIENT_KEY])  # type: ignore[arg-type]
    raise DecodeError("the reply reports no fedcodec-client-key: is fedcodec_mod on the client?")


def _layout(keys: list[str], arrays: list[np.ndarray]) -> Layout:
    for k, a in zip(keys, arrays, strict=True):
        if a.dtype.kind != "f":
            raise TypeError(
                f"array {k!r} has dtype {a.dtype}; fedcodec compresses float weights only "
                "(send integer buffers in another record)"
            )
    return Layout(
        tuple((k, tuple(a.shape), a.dtype.name) for k, a in zip(keys, arrays, strict=True))
    )


def _server_round(msg: Message) -> int:
    for record in msg.content.config_records.values():
        if "server-round" in record:
            return int(record["server-round"])  # type: ignore[arg-type]
    raise ValueError("the train message carries no 'server-round' in its ConfigRecord")


def pack_payload(payload: bytes) -> ArrayRecord:
    """A payload as the reply's ArrayRecord: one uint8 Array, or for a framed payload one
    per frame (keys ``fedcodec``, or ``fedcodec-0``, ``fedcodec-1``, ...)."""
    frames = container.split_frames(payload)

    def array(data: bytes) -> Array:
        return Array(dtype="uint8", shape=(len(data),), stype=STYPE, data=data)

    if len(frames) == 1:
        return ArrayRecord({ARRAY_KEY: array(frames[0])})
    return ArrayRecord(OrderedDict((f"{ARRAY_KEY}-{i}", array(f)) for i, f in enumerate(frames)))


def unpack_payload(record: ArrayRecord) -> bytes | list[bytes]:
    """Inverse of :func:`pack_payload`; DecodeError for a record that is not one."""
    keys = list(record.keys())
    if keys == [ARRAY_KEY]:
        names = keys
    else:
        names = [f"{ARRAY_KEY}-{i}" for i in range(len(keys))]
        if keys != names or not keys:
            raise DecodeError(
                "the reply carries no fedcodec payload: is fedcodec_mod on the client?"
            )
    if any(record[k].stype != STYPE for k in names):
        raise DecodeError("the reply's arrays are not fedcodec payloads")
    data = [bytes(record[k].data) for k in names]
    return data[0] if keys == [ARRAY_KEY] else data


def fedcodec_mod(
    codec: Codec | Mapping[str, Any],
    *,
    error_feedback: bool = False,
    seed: int = 0,
    arrayrecord_key: str = "arrays",
    client_key: Callable[[Any], int] = client_key_of,
    threads: int = 1,
) -> Callable[[Message, Any, Any], Message]:
    """A client mod compressing the update in the reply to every TRAIN message.

    A large update's framed payload travels as one Array per frame (Flower then chunks
    each Array for its own transport); ``threads`` codes it (default 1: the client's
    training owns the cores).

    With ``error_feedback`` (:class:`fedcodec.ErrorFeedback`), the residual (what the codec
    dropped) is kept in the node's ``context.state`` and added to its next update.
    ``client_key(context)`` gives the stable key the seeds derive from (default: the
    ``partition-id`` node config). The reply's MetricRecords get
    ``fedcodec-payload-bytes``, the payload size the client sent, and
    ``fedcodec-client-key``.
    """
    inner = _codec(codec)

    def mod(msg: Message, ctxt: Any, call_next: Any) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, ctxt)
        received = msg.content.array_records[arrayrecord_key]
        keys = list(received.keys())
        before = received.to_numpy_ndarrays()
        server_round = _server_round(msg)
        out = call_next(msg, ctxt)
        if out.has_error():
            return out
        record = out.content.array_records[arrayrecord_key]
        after = record.to_numpy_ndarrays()
        if list(record.keys()) != keys:
            raise ValueError("the reply's arrays differ from the received ones in names or order")
        layout = _layout(keys, before)
        update = np.empty(layout.size, np.float32)
        pos = 0
        for a, b in zip(after, before, strict=True):
            np.subtract(
                a.reshape(-1), b.reshape(-1), out=update[pos : pos + a.size], casting="unsafe"
            )
            pos += a.size
        key = client_key(ctxt)
        s = derive_seed(seed, server_round, key, UPLINK)
        if not error_feedback:
            payload = inner.encode_vector(update, layout=layout, seed=s, threads=threads)
        else:  # the residual lives in the node's state between rounds (and processes)
            feedback = ErrorFeedback(inner)
            if RESIDUAL_KEY in ctxt.state.array_records:
                feedback.residuals[key] = ctxt.state.array_records[RESIDUAL_KEY]["r"].numpy()
            payload = feedback.encode_vector(
                update, key=key, layout=layout, seed=s, threads=threads
            )
            ctxt.state[RESIDUAL_KEY] = ArrayRecord({"r": Array(feedback.residuals.pop(key))})
        out.content[arrayrecord_key] = pack_payload(payload)
        if not out.content.metric_records:
            out.content["metrics"] = MetricRecord()
        for metrics in out.content.metric_records.values():
            metrics[METRIC_BYTES] = len(payload)
            metrics[METRIC_CLIENT_KEY] = key
        return out

    return mod


class FedcodecStrategy(Strategy):
    """Wrap a Flower strategy so that it receives decoded weights from ``fedcodec_mod``.

    Per round it keeps the arrays it sent, decodes each reply's payload (a reply whose
    payload fails to decode is dropped and logged), rebuilds the weights as sent + update,
    hands the replies to the wrapped strategy, and adds ``fedcodec-uplink-bytes`` (payload
    bytes received) and ``fedcodec-dropped`` to the round's train metrics. ``history``
    keeps, per round, the bytes of each client's payload (by client key).
    """

    def __init__(
        self,
        strategy: Strategy,
        codec: Codec | Mapping[str, Any],
        *,
        seed: int = 0,
        arrayrecord_key: str = "arrays",
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.threads = threads  # decoding a framed payload (default: all cores)
        self.strategy = strategy
        self.codec = _codec(codec)
        self.seed = seed
        self.arrayrecord_key = arrayrecord_key
        self._sent: dict[int, ArrayRecord] = {}
        self.history: dict[int, dict[int, int]] = {}

    def __repr__(self) -> str:
        return f"FedcodecStrategy({self.strategy!r}, codec={self.codec!r})"

    def summary(self) -> None:
        log.info("fedcodec uplink codec: %r", self.codec)
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any
    ) -> Iterable[Message]:
        self._sent = {server_round: arrays}
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def decode_reply(self, server_round: int, reply: Message) -> int:
        """Replace the reply's payload by the weights it stands for; returns its bytes."""
        sent = self._sent[server_round]
        keys = list(sent.keys())
        base = sent.to_numpy_ndarrays()
        layout = _layout(keys, base)
        record = reply.content.array_records.get(self.arrayrecord_key)
        if record is None:
            raise DecodeError(
                "the reply carries no fedcodec payload: is fedcodec_mod on the client?"
            )
        payload = unpack_payload(record)
        s = derive_seed(self.seed, server_round, reply_client_key(reply), UPLINK)
        update = self.codec.decode(payload, seed=s, layout=layout, threads=self.threads)
        weights, pos = [], 0
        for b in base:
            w = (b.astype(np.float32) + update[pos : pos + b.size].reshape(b.shape)).astype(b.dtype)
            weights.append(Array(w))
            pos += b.size
        reply.content[self.arrayrecord_key] = ArrayRecord(
            OrderedDict(zip(keys, weights, strict=True))
        )
        return sum(len(p) for p in payload) if isinstance(payload, list) else len(payload)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        kept, sizes, dropped = [], {}, 0
        for reply in replies:
            if reply.has_error():
                kept.append(reply)
                continue
            try:
                sizes[reply_client_key(reply)] = self.decode_reply(server_round, reply)
            except (DecodeError, ValueError, KeyError) as exc:
                log.warning(
                    "round %d: dropped node %s: %s", server_round, reply.metadata.src_node_id, exc
                )
                dropped += 1
                continue
            kept.append(reply)
        self.history[server_round] = sizes
        arrays, metrics = self.strategy.aggregate_train(server_round, kept)
        metrics = metrics if metrics is not None else MetricRecord()
        metrics["fedcodec-uplink-bytes"] = int(sum(sizes.values()))
        metrics["fedcodec-dropped"] = dropped
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)
