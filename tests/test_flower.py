"""Flower: the client mod and the strategy wrapper in Flower's simulation engine."""

from __future__ import annotations

import gc
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr", reason="pip install 'fedcodec[flower]'")
pytest.importorskip("ray", reason="Flower's simulation engine: pip install 'fedcodec[flower]'")
pytest.importorskip("torch", reason="pip install 'fedcodec[torch]'")

import fedcodec
from fedcodec.flower import FedcodecStrategy, reply_client_key
from fedcodec.seeds import UPLINK, derive_seed

sys.path.insert(0, str(Path(__file__).parents[1] / "examples" / "flower"))

import app as example


def close_rays_files() -> None:
    """Ray opens /dev/null for its helper processes' output and never closes those files:
    left to a later garbage collection (pytest's, at exit, outside any test) they raise
    ResourceWarnings, an ExceptionGroup and exit code 1 when this file runs alone. Call
    with ResourceWarnings ignored: it shuts Ray down and collects its garbage at once."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    gc.collect()


class Recording(FedcodecStrategy):
    """Keeps what the test checks: arrays sent, each reply's payload and weights, the result."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rounds: dict[int, dict[str, Any]] = {}

    def decode_reply(self, server_round: int, reply: Any) -> int:
        payload = reply.content["arrays"]["fedcodec"].data
        n = super().decode_reply(server_round, reply)
        self.rounds.setdefault(server_round, {"replies": []})["replies"].append(
            {
                "node": int(reply.metadata.src_node_id),
                "key": reply_client_key(reply),
                "payload": payload,
                "bytes": n,
                "reported": int(reply.content["metrics"]["fedcodec-payload-bytes"]),
                "weights": reply.content["arrays"].to_numpy_ndarrays(),
                "num_examples": int(reply.content["metrics"]["num-examples"]),
            }
        )
        return n

    def aggregate_train(self, server_round: int, replies: Any) -> Any:
        sent = self._sent[server_round].to_numpy_ndarrays()
        arrays, metrics = super().aggregate_train(server_round, replies)
        rec = self.rounds.setdefault(server_round, {"replies": []})
        rec.update(sent=sent, aggregated=arrays.to_numpy_ndarrays(), metrics=dict(metrics))
        return arrays, metrics


@pytest.fixture(scope="module")
def simulation() -> tuple[Recording, Any]:
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    strategy = Recording(
        FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=4), example.CODEC
    )
    results: list[Any] = []
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    with warnings.catch_warnings():
        # ray and flwr warn about their own futures (run_simulation is deprecated in favour
        # of `flwr run`, which needs a Flower app project); not errors of ours
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", ResourceWarning)  # see close_rays_files
        run_simulation(
            server_app=example.make_server_app(strategy, num_rounds=3, on_result=results.append),
            client_app=example.make_client_app(),
            num_supernodes=4,
            backend_config={"client_resources": {"num_cpus": 1}},
        )
        close_rays_files()
    assert results, "the ServerApp did not finish"
    return strategy, results[0]


def test_three_rounds_with_four_clients(simulation: tuple[Recording, Any]) -> None:
    strategy, result = simulation
    assert sorted(strategy.rounds) == [1, 2, 3]
    for rec in strategy.rounds.values():
        assert len(rec["replies"]) == 4 and rec["metrics"]["fedcodec-dropped"] == 0
    accuracy = [result.evaluate_metrics_serverapp[r]["accuracy"] for r in (0, 3)]
    assert accuracy[1] > accuracy[0] + 0.3  # it learns


def test_aggregate_equals_the_aggregate_of_decoded_updates(
    simulation: tuple[Recording, Any],
) -> None:
    strategy, result = simulation
    for rnd, rec in strategy.rounds.items():
        sent = rec["sent"]
        total = sum(r["num_examples"] for r in rec["replies"])
        for i, base in enumerate(sent):
            # decode each payload ourselves: the update the client's payload stands for
            expected = np.zeros(base.shape, np.float64)
            for r in rec["replies"]:
                seed = derive_seed(0, rnd, r["key"], UPLINK)  # keyed by partition id
                flat = fedcodec.decode(r["payload"], seed=seed)
                sizes = [a.size for a in sent]
                start = sum(sizes[:i])
                update = flat[start : start + base.size].reshape(base.shape)
                np.testing.assert_allclose(r["weights"][i], base + update, rtol=0, atol=1e-6)
                expected += r["num_examples"] / total * (base.astype(np.float64) + update)
            np.testing.assert_allclose(rec["aggregated"][i], expected, rtol=1e-5, atol=1e-6)
        if rnd < 3:  # the next round starts from this aggregate
            for a, b in zip(rec["aggregated"], strategy.rounds[rnd + 1]["sent"], strict=True):
                np.testing.assert_array_equal(a, b)
    final = result.arrays.to_numpy_ndarrays()
    for a, b in zip(final, strategy.rounds[3]["aggregated"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_reported_bytes_equal_the_payload_sizes(simulation: tuple[Recording, Any]) -> None:
    strategy, _ = simulation
    params = sum(a.size for a in strategy.rounds[1]["sent"])
    for rnd, rec in strategy.rounds.items():
        for r in rec["replies"]:
            assert r["bytes"] == len(r["payload"]) == r["reported"]
            assert 8 * r["bytes"] < 2.2 * params  # rdq at 2 bits/param, vs 32 uncompressed
        assert rec["metrics"]["fedcodec-uplink-bytes"] == sum(r["bytes"] for r in rec["replies"])
        assert strategy.history[rnd] == {r["key"]: r["bytes"] for r in rec["replies"]}
        assert sorted(r["key"] for r in rec["replies"]) == [0, 1, 2, 3]  # partition ids


def test_mod_error_feedback_carries_the_residual_in_the_node_state() -> None:
    """The mod's error feedback (fedcodec.ErrorFeedback) called directly, two rounds."""
    from flwr.app import (
        Array,
        ArrayRecord,
        ConfigRecord,
        Context,
        Message,
        MessageType,
        Metadata,
        MetricRecord,
        RecordDict,
    )

    from fedcodec.flower import METRIC_CLIENT_KEY, RESIDUAL_KEY, fedcodec_mod

    codec = fedcodec.get_codec({"id": "topk", "k": 2})
    mod = fedcodec_mod(codec, error_feedback=True, seed=5)
    ctxt = Context(
        run_id=1,
        node_id=987654321,
        node_config={"partition-id": 3},
        state=RecordDict(),
        run_config={},
    )
    weights = np.zeros(6, np.float32)
    update = np.array([1.0, 0.6, 0.5, 0.0, -0.2, 0.3], np.float32)
    sent = []
    for rnd in (1, 2):
        content = RecordDict(
            {
                "arrays": ArrayRecord({"w": Array(weights)}),
                "config": ConfigRecord({"server-round": rnd}),
            }
        )
        meta = Metadata(1, f"m{rnd}", 0, 987654321, "", "", 0.0, 60.0, MessageType.TRAIN)
        msg = Message(content, metadata=meta)

        def train(m: Any, c: Any) -> Any:
            content = RecordDict(
                {
                    "arrays": ArrayRecord({"w": Array(weights + update)}),
                    "metrics": MetricRecord({"num-examples": 1}),
                }
            )
            return m.create_reply(content)

        reply = mod(msg, ctxt, train)
        assert int(reply.content["metrics"][METRIC_CLIENT_KEY]) == 3
        payload = reply.content["arrays"]["fedcodec"].data
        sent.append(codec.decode(payload, seed=derive_seed(5, rnd, 3, UPLINK)))
    residual = ctxt.state.array_records[RESIDUAL_KEY]["r"].numpy()
    # what was sent plus what is left is everything the client computed, over both rounds
    np.testing.assert_allclose(sent[0] + sent[1] + residual, 2 * update, atol=1e-6)
    np.testing.assert_array_equal(sent[0], np.float32([1.0, 0.6, 0, 0, 0, 0]))
    np.testing.assert_array_equal(
        sent[1], np.float32([1.0, 0, 1.0, 0, 0, 0])
    )  # 0.5 + 0.5 now wins over 0.6


# -- the strategy and the mod called directly (no engine): downlink compression ------------
class FakeGrid:
    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> list[int]:
        return self.nodes


@pytest.fixture
def task_identity() -> Any:
    """Messages need a run and task identity, which Flower's runtime sets."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    return TaskIdentity


def test_downlink_compression_keeps_every_node_in_step(task_identity: Any) -> None:
    """Four nodes, two a round (FedAvg's own sampling), five rounds: each node trains from
    exactly the model the strategy believes it holds, updates are relative to it, nodes
    that missed rounds get a chain or the full model, and a node that lost its state is
    sent the full model after its failed round."""
    import random

    from flwr.app import (
        Array,
        ArrayRecord,
        ConfigRecord,
        Context,
        Error,
        Message,
        MetricRecord,
        RecordDict,
    )
    from flwr.serverapp.strategy import FedAvg

    from fedcodec.downlink import UNKNOWN
    from fedcodec.flower import fedcodec_mod

    random.seed(0)  # FedAvg samples nodes with the random module

    up, down = {"id": "rdq", "bits_per_param": 2.0}, {"id": "rdq", "bits_per_param": 4.0}
    strategy = FedcodecStrategy(
        FedAvg(fraction_train=0.5, min_available_nodes=4), up, downlink_codec=down, seed=3
    )
    mod = fedcodec_mod(up, downlink_codec=down, seed=3)
    nodes = {
        100 + k: Context(
            run_id=1, node_id=100 + k, node_config={"partition-id": k}, state=RecordDict(),
            run_config={},
        )
        for k in range(4)
    }  # fmt: skip
    rng = np.random.default_rng(0)
    targets = {k: rng.normal(size=(40, 30)).astype(np.float32) for k in range(4)}
    arrays = ArrayRecord({"w": Array(np.zeros((40, 30), np.float32)),
                          "b": Array(np.zeros(7, np.float32))})  # fmt: skip
    seen: dict[int, np.ndarray] = {}
    full_bytes = 4 * (40 * 30 + 7)
    kinds = []
    lost = -1
    for rnd in range(1, 6):
        messages = list(
            strategy.configure_train(rnd, arrays, ConfigRecord(), FakeGrid(list(nodes)))
        )
        assert len(messages) == 2
        reference = strategy._sent[rnd].to_numpy_ndarrays()
        replies = []
        for m in messages:
            node = int(m.metadata.dst_node_id)
            held = nodes[node].state.array_records.get("fedcodec.held")
            kinds.append(
                "full" if m.content.config_records["fedcodec-downlink-config"]["base-round"] < 0
                else "chain"
            )  # fmt: skip
            if rnd == 4 and lost < 0 and held is not None:
                del nodes[node].state["fedcodec.held"]  # this node lost its state
                lost = node

            def train(msg: Any, ctxt: Any) -> Any:
                got = msg.content["arrays"].to_numpy_ndarrays()
                for a, b in zip(got, reference, strict=True):
                    np.testing.assert_array_equal(a, b)  # exactly the strategy's reference
                k = int(ctxt.node_config["partition-id"])
                seen[k] = got[0]
                new = ArrayRecord({"w": Array(got[0] + 0.5 * (targets[k] - got[0])),
                                   "b": Array(got[1] + 1.0)})  # fmt: skip
                content = RecordDict({"arrays": new, "metrics": MetricRecord({"num-examples": 10})})
                return Message(content, reply_to=msg)

            try:
                replies.append(mod(m, nodes[node], train))
            except ValueError as exc:  # the chain does not start from what it holds
                assert "holds round" in str(exc)
                replies.append(Message(Error(code=0, reason=str(exc)), reply_to=m))
        sizes = strategy.downlink_history[rnd]
        assert all(0 < s for s in sizes.values())
        arrays, metrics = strategy.aggregate_train(rnd, replies)
        assert metrics["fedcodec-downlink-bytes"] == sum(sizes.values())
        assert all(s <= full_bytes + 200 for s in sizes.values())
        if rnd == 4:
            assert strategy.downlink is not None and strategy.downlink.held[lost] == UNKNOWN
            assert metrics["fedcodec-dropped"] == 0  # an error reply, not a bad payload
    assert kinds[:2] == ["full", "full"]  # round 1: the server knows nobody's model
    assert "chain" in kinds  # later rounds: payloads of the rounds a node missed
    assert strategy.downlink.message(lost, 5).base_round is None  # full model next time
