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
    from flwr.app import (
        Array,
        ArrayRecord,
        ConfigRecord,
        Message,
        MessageType,
        MetricRecord,
        RecordDict,
    )
    from flwr.serverapp.strategy import Strategy
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fedcodec.flower needs Flower: pip install 'fedcodec[flower]'") from exc

from . import container, rate_share
from .codec import Codec, get_codec
from .downlink import HISTORY_ROUNDS, UNKNOWN, Downlink, DownlinkMessage, apply_downlink
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
#: The train message's compressed broadcast (``FedcodecStrategy(downlink_codec=...)``).
#: the train config's entry that carries the reference size for rates by examples
REFERENCE_KEY = "fedcodec-reference-examples"
#: the reply metric Flower's strategies weight a client by
NUM_EXAMPLES_KEY = "num-examples"
DOWNLINK_KEY = "fedcodec-downlink"
DOWNLINK_CONFIG_KEY = "fedcodec-downlink-config"
HELD_KEY = "fedcodec.held"


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


def pack_downlink(msg: DownlinkMessage, layout: Layout) -> tuple[ArrayRecord, ConfigRecord]:
    """A downlink message as a train message's ArrayRecord (its payloads, each framed one
    as its frames) and ConfigRecord (rounds, frame counts, the model's layout)."""
    arrays: dict[str, Array] = {}
    frames_per_payload = []
    for i, payload in enumerate(msg.payloads):
        for j, frame in enumerate(container.split_frames(payload)):
            arrays[f"{i}.{j}"] = Array(dtype="uint8", shape=(len(frame),), stype=STYPE, data=frame)
        frames_per_payload.append(j + 1)
    config = ConfigRecord(
        {
            "round": msg.round,
            "base-round": UNKNOWN if msg.base_round is None else msg.base_round,
            "frames": frames_per_payload,
            "layout": _layout_json(layout),
        }
    )
    return ArrayRecord(arrays), config


def unpack_downlink(record: ArrayRecord, config: ConfigRecord) -> tuple[DownlinkMessage, Layout]:
    """Inverse of :func:`pack_downlink`; DecodeError for a record that is not one."""
    import json

    try:
        frames = [int(f) for f in config["frames"]]  # type: ignore[union-attr]
        base = int(config["base-round"])  # type: ignore[arg-type]
        layout = Layout.from_json(json.loads(str(config["layout"])))
        payloads = [
            b"".join(bytes(record[f"{i}.{j}"].data) for j in range(n)) for i, n in enumerate(frames)
        ]
        msg = DownlinkMessage(int(config["round"]), None if base < 0 else base, payloads)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"not a fedcodec downlink message: {exc}") from exc
    if sorted(record.keys()) != sorted(f"{i}.{j}" for i, n in enumerate(frames) for j in range(n)):
        raise DecodeError("the downlink message's arrays do not match its frame counts")
    return msg, layout


def _layout_json(layout: Layout) -> str:
    import json

    return json.dumps(layout.to_json())


def receive_downlink(msg: Message, ctxt: Any, codec: Codec | None, *, seed: int = 0) -> ArrayRecord:
    """The client's side of :class:`FedcodecStrategy`'s compressed broadcast: the weights
    (an ArrayRecord like the one the strategy meant to send) from the model this node holds
    (``context.state``) and the message's payloads; the node then holds them."""
    message, layout = unpack_downlink(
        msg.content.array_records[DOWNLINK_KEY], msg.content.config_records[DOWNLINK_CONFIG_KEY]
    )
    held, held_round = None, UNKNOWN
    if HELD_KEY in ctxt.state.array_records:
        record = ctxt.state.array_records[HELD_KEY]
        held = record["model"].numpy()
        held_round = int(record["round"].numpy()[0])
    vector = apply_downlink(held, held_round, message, codec, seed=seed, layout=layout)
    ctxt.state[HELD_KEY] = ArrayRecord(
        {"model": Array(vector), "round": Array(np.array([message.round], np.int64))}
    )
    return _arrays_of(vector, layout)


def _arrays_of(vector: np.ndarray, layout: Layout) -> ArrayRecord:
    arrays, pos = OrderedDict(), 0
    for name, shape, dtype in layout.entries:
        size = int(np.prod(shape, dtype=np.int64))
        arrays[name] = Array(vector[pos : pos + size].reshape(shape).astype(dtype))
        pos += size
    return ArrayRecord(arrays)


def _flat(arrays: list[np.ndarray], size: int) -> np.ndarray:
    out, pos = np.empty(size, np.float32), 0
    for a in arrays:
        out[pos : pos + a.size] = a.reshape(-1)
        pos += a.size
    return out


def fedcodec_mod(
    codec: Codec | Mapping[str, Any],
    *,
    error_feedback: bool = False,
    seed: int = 0,
    arrayrecord_key: str = "arrays",
    client_key: Callable[[Any], int] = client_key_of,
    threads: int = 1,
    downlink_codec: Codec | Mapping[str, Any] | None = None,
    rate_by_examples: bool = False,
) -> Callable[[Message, Any, Any], Message]:
    """A client mod compressing the update in the reply to every TRAIN message.

    It also decodes a compressed broadcast (``FedcodecStrategy(downlink_codec=...)``; pass
    the same ``downlink_codec`` here): the model the node holds and its round live in the
    node's ``context.state``; the train function receives the decoded weights.

    A large update's framed payload travels as one Array per frame (Flower then chunks
    each Array for its own transport); ``threads`` codes it (default 1: the client's
    training owns the cores).

    With ``error_feedback`` (:class:`fedcodec.ErrorFeedback`), the residual (what the codec
    dropped) is kept in the node's ``context.state`` and added to its next update.
    ``client_key(context)`` gives the stable key the seeds derive from (default: the
    ``partition-id`` node config). The reply's MetricRecords get
    ``fedcodec-payload-bytes``, the payload size the client sent, and
    ``fedcodec-client-key``.

    With ``rate_by_examples`` the codec's rate target is multiplied by the client's share
    (:mod:`fedcodec.rate_share`): its ``num-examples`` reply metric over the reference size
    that ``FedcodecStrategy(reference_examples=...)`` puts in the train config.
    """
    inner = _codec(codec)
    if rate_by_examples:
        if error_feedback:
            raise ValueError("rate_by_examples does not combine with error_feedback")
        rate_share.rate_key(inner.get_config())  # a codec with a rate target, or say so
    scaled: dict[float, Codec] = {}

    def codec_for(msg: Message, out: Message) -> Codec:
        if not rate_by_examples:
            return inner
        config = msg.content.config_records.get("config")
        reference = config.get(REFERENCE_KEY) if config is not None else None
        if reference is None:
            raise ValueError(
                f"fedcodec_mod(rate_by_examples=True): the train message has no {REFERENCE_KEY!r}"
                " config; wrap the strategy as FedcodecStrategy(..., reference_examples=...)"
            )
        found = [m[NUM_EXAMPLES_KEY] for m in out.content.metric_records.values()
                 if NUM_EXAMPLES_KEY in m]  # fmt: skip
        if not found:
            raise ValueError(
                f"fedcodec_mod(rate_by_examples=True): the train reply has no "
                f"{NUM_EXAMPLES_KEY!r} metric to take the client's share from"
            )
        share = rate_share.example_share(float(found[0]), float(reference))  # type: ignore[arg-type]
        if share not in scaled:
            scaled[share] = get_codec(rate_share.scaled_config(inner.get_config(), share))
        return scaled[share]

    down_codec = _codec(downlink_codec) if downlink_codec is not None else None

    def mod(msg: Message, ctxt: Any, call_next: Any) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, ctxt)
        if DOWNLINK_KEY in msg.content.array_records:
            # the compressed broadcast: the weights it stands for replace it, so that the
            # train function sees plain weights
            msg.content[arrayrecord_key] = receive_downlink(msg, ctxt, down_codec, seed=seed)
            del msg.content[DOWNLINK_KEY]
            del msg.content[DOWNLINK_CONFIG_KEY]
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
            payload = codec_for(msg, out).encode_vector(
                update, layout=layout, seed=s, threads=threads
            )
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
    """Wrap a Flower strategy so that it receives decoded weights from ``fedcodec_mod``,
    and optionally compresses its broadcast.

    Per round it keeps the arrays it sent, decodes each reply's payload (a reply whose
    payload fails to decode is dropped and logged), rebuilds the weights as sent + update,
    hands the replies to the wrapped strategy, and adds ``fedcodec-uplink-bytes`` (payload
    bytes received), ``fedcodec-downlink-bytes`` (what the round's train messages carried
    as model: payloads, or the raw arrays without a downlink codec) and
    ``fedcodec-dropped`` to the round's train metrics. ``history`` keeps, per round, the
    bytes of each client's payload (by client key); ``downlink_history`` the bytes each
    node received (by node id).

    With ``downlink_codec`` the broadcast is the difference between the wrapped strategy's
    model and the model each node holds (:mod:`fedcodec.downlink`): a node that took part
    in the previous round gets that round's payload, one that missed rounds gets their
    payloads (up to ``downlink_rounds_kept`` rounds) or, where smaller, or for a node the
    server has not reached yet or that failed, the full model (float32). Clients train from
    the model they decoded, and their updates are relative to it. Evaluate messages carry
    the model as they are.

    With ``reference_examples`` (:func:`fedcodec.rate_share.reference_examples` of the
    clients' training sizes) every train config carries it, and ``fedcodec_mod(...,
    rate_by_examples=True)`` scales each client's rate by its examples over it, the mean
    rate over the clients staying the codec's (issue 25: FedAvg weights a client by its
    examples, and so does its coding error in the round's mean).
    """

    def __init__(
        self,
        strategy: Strategy,
        codec: Codec | Mapping[str, Any],
        *,
        seed: int = 0,
        arrayrecord_key: str = "arrays",
        threads: int | None = None,
        downlink_codec: Codec | Mapping[str, Any] | None = None,
        downlink_rounds_kept: int = HISTORY_ROUNDS,
        reference_examples: float | None = None,
    ) -> None:
        super().__init__()
        #: sent in every train config for ``fedcodec_mod(rate_by_examples=True)``
        #: (:func:`fedcodec.rate_share.reference_examples` of the clients' sizes)
        self.reference_examples = reference_examples
        self.threads = threads  # decoding a framed payload (default: all cores)
        self.strategy = strategy
        self.codec = _codec(codec)
        self.seed = seed
        self.arrayrecord_key = arrayrecord_key
        self.downlink_codec = _codec(downlink_codec) if downlink_codec is not None else None
        self.downlink: Downlink | None = None
        if self.downlink_codec is not None:
            self.downlink = Downlink(
                self.downlink_codec, seed, history=downlink_rounds_kept, default_held=UNKNOWN
            )
        self._reference: np.ndarray | None = None  # the model as the nodes decode it
        self._sent: dict[int, ArrayRecord] = {}
        self._sent_to: dict[int, set[int]] = {}
        self.history: dict[int, dict[int, int]] = {}
        self.downlink_history: dict[int, dict[int, int]] = {}

    def __repr__(self) -> str:
        down = f", downlink_codec={self.downlink_codec!r}" if self.downlink_codec else ""
        return f"FedcodecStrategy({self.strategy!r}, codec={self.codec!r}{down})"

    def summary(self) -> None:
        log.info("fedcodec uplink codec: %r", self.codec)
        log.info("fedcodec downlink codec: %r", self.downlink_codec)
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any
    ) -> Iterable[Message]:
        if self.reference_examples is not None:
            config = ConfigRecord({**config, REFERENCE_KEY: float(self.reference_examples)})
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self._sent_to[server_round] = {int(m.metadata.dst_node_id) for m in messages}
        if self.downlink is None:
            self._sent = {server_round: arrays}
            sizes = {}
            for m in messages:
                record = m.content.array_records.get(self.arrayrecord_key)
                nbytes = sum(len(a.data) for a in record.values()) if record is not None else 0
                sizes[int(m.metadata.dst_node_id)] = nbytes
            self.downlink_history[server_round] = sizes
            return messages
        keys = list(arrays.keys())
        values = arrays.to_numpy_ndarrays()
        layout = _layout(keys, values)
        self.downlink.layout = layout
        target = _flat(values, layout.size)
        if self._reference is None or self._reference.size != target.size:
            self._reference = np.empty(target.size, np.float32)  # a new model: in full
            self.downlink.reset(self._reference, server_round, target)
        else:
            self.downlink.advance(self._reference, server_round, target)
        # the clients train from the model they decode: updates are relative to it
        self._sent = {server_round: _arrays_of(self._reference, layout)}
        sizes, out = {}, []
        for m in messages:
            node = int(m.metadata.dst_node_id)
            down = self.downlink.message(node, server_round)
            record, down_config = pack_downlink(down, layout)
            # a message of its own (strategies share one RecordDict among their messages)
            content = RecordDict({k: v for k, v in m.content.items() if k != self.arrayrecord_key})
            content[DOWNLINK_KEY] = record
            content[DOWNLINK_CONFIG_KEY] = down_config
            out.append(Message(content, dst_node_id=node, message_type=m.metadata.message_type))
            sizes[node] = down.nbytes
        self.downlink_history[server_round] = sizes
        return out

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
        answered: set[int] = set()
        for reply in replies:
            node = int(reply.metadata.src_node_id)
            if reply.has_error():
                kept.append(reply)
                continue
            try:
                sizes[reply_client_key(reply)] = self.decode_reply(server_round, reply)
            except (DecodeError, ValueError, KeyError) as exc:
                log.warning("round %d: dropped node %s: %s", server_round, node, exc)
                dropped += 1
                continue
            answered.add(node)
            kept.append(reply)
        if self.downlink is not None:  # what each node holds now
            for node in self._sent_to.get(server_round, set()):
                if node in answered:
                    self.downlink.delivered(node, server_round)
                else:
                    self.downlink.lost(node)
        self.history[server_round] = sizes
        arrays, metrics = self.strategy.aggregate_train(server_round, kept)
        metrics = metrics if metrics is not None else MetricRecord()
        if METRIC_CLIENT_KEY in metrics:  # an identifier: its average means nothing
            del metrics[METRIC_CLIENT_KEY]
        metrics["fedcodec-uplink-bytes"] = int(sum(sizes.values()))
        metrics["fedcodec-downlink-bytes"] = int(
            sum(self.downlink_history.get(server_round, {}).values())
        )
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
