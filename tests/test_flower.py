"""Flower: the example Flower App (``flwr run``) in the simulation engine and across
Flower's transport in the deployment engine; the mod and the strategy called directly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr", reason="pip install 'fedcodec[flower]'")
pytest.importorskip("ray", reason="Flower's simulation engine: pip install 'fedcodec[flower]'")
pytest.importorskip("torch", reason="pip install 'fedcodec[torch]'")

import fedcodec
from fedcodec.fl.flower_engine import FLWR_VERSION, LocalSuperLink, _free_port, _stop
from fedcodec.flower import FedcodecStrategy
from fedcodec.seeds import UPLINK, derive_seed

ROOT = Path(__file__).parents[1]
APP = ROOT / "examples" / "flower"
PARAMS = 64 * 32 + 32 + 32 * 10 + 10  # the example's MLP


def test_flower_is_the_version_the_engine_and_example_pin() -> None:
    import flwr

    assert flwr.__version__ == FLWR_VERSION
    assert f'"flwr[simulation]=={FLWR_VERSION}"' in (APP / "pyproject.toml").read_text()


def check_report(report: dict[str, Any], num_nodes: int) -> None:
    """What the example's ServerApp saw: every payload arrived with the size its client
    says it sent, both links compressed, and the model learns."""
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    raw = 4 * PARAMS
    for r in rounds:
        assert len(r["replies"]) == num_nodes
        for reply in r["replies"]:
            assert reply["received"] == reply["sent"] > 0  # bytes in = payload bytes out
            assert 8 * reply["received"] < 2.2 * PARAMS  # rdq at 2 bits/param vs 32
        assert sorted(int(k) for k in r["uplink_bytes"]) == list(range(num_nodes))
        assert sum(r["uplink_bytes"].values()) == sum(x["received"] for x in r["replies"])
        down = list(r["downlink_bytes"].values())
        assert len(down) == num_nodes
        if r["round"] == 1:  # nobody's model known: the full model (float32)
            assert all(raw < d < raw + 200 for d in down)
        else:  # the last round's payload at 4 bits/param
            assert all(0 < 8 * d < 4.5 * PARAMS for d in down)
    assert rounds[-1]["accuracy"] > report["initial_accuracy"] + 0.3


def flower_processes() -> int:
    ps = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True, text=True).stdout
    names = ("flower-superlink", "flower-supernode", "flwr-simulation", "flwr-serverapp",
             "flwr-clientapp")  # fmt: skip
    return sum(
        any(n in line for n in names) and not line.startswith("Z") for line in ps.splitlines()
    )


def test_example_app_in_the_simulation_engine(tmp_path: Path) -> None:
    """``flwr run`` of the example App against a SuperLink in simulation mode (4 nodes)."""
    before = flower_processes()
    (tmp_path / "run.toml").write_text(f"report = {json.dumps(str(tmp_path / 'r.json'))}\n"
                                       "min-nodes = 4\n")  # fmt: skip
    with LocalSuperLink(tmp_path / "home", simulation=True) as link:
        code = link.run(APP, run_config=tmp_path / "run.toml",
                        federation=["num-supernodes=4"], timeout_s=600)  # fmt: skip
    log = (tmp_path / "home" / "run.log").read_text()
    assert code == 0 and (tmp_path / "r.json").exists(), log[-3000:]
    check_report(json.loads((tmp_path / "r.json").read_text()), 4)
    assert flower_processes() == before


def test_example_app_across_flowers_transport(tmp_path: Path) -> None:
    """The deployment engine: a SuperLink and two SuperNodes (``--insecure``, each on its
    own port, on loopback, with their own FLWR_HOME); the payloads cross Flower's HTTP
    transport between processes; every process started is stopped."""
    before = flower_processes()
    (tmp_path / "run.toml").write_text(f"report = {json.dumps(str(tmp_path / 'r.json'))}\n")
    nodes: list[subprocess.Popen[bytes]] = []
    with LocalSuperLink(tmp_path / "home", simulation=False) as link:
        try:
            for pid in range(2):
                with (tmp_path / f"node{pid}.log").open("wb") as out:
                    nodes.append(
                        subprocess.Popen(
                            [
                                "flower-supernode",
                                "--insecure",
                                "--superlink",
                                link.address,
                                "--node-config",
                                f"partition-id={pid} num-partitions=2",
                                "--port",
                                str(_free_port()),
                            ],
                            env=link.env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            code = link.run(APP, run_config=tmp_path / "run.toml", timeout_s=600)
        finally:
            for node in nodes:
                _stop(node)
    log = (tmp_path / "home" / "run.log").read_text()
    assert code == 0 and (tmp_path / "r.json").exists(), log[-3000:]
    check_report(json.loads((tmp_path / "r.json").read_text()), 2)
    assert all(node.poll() is not None for node in nodes)
    assert flower_processes() == before


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

            def train(msg: Any, ctxt: Any, reference: list[np.ndarray] = reference) -> Any:
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
        # what the aggregate must be: FedAvg (equal example counts) of reference + update,
        # each update decoded here from its payload with the seed of its partition id
        ok = [r for r in replies if not r.has_error()]
        expected = [np.zeros(a.shape, np.float64) for a in reference]
        for r in ok:
            key = int(r.content["metrics"]["fedcodec-client-key"])
            flat = fedcodec.decode(r.content["arrays"]["fedcodec"].data,
                                   seed=derive_seed(3, rnd, key, UPLINK))  # fmt: skip
            pos = 0
            for e, a in zip(expected, reference, strict=True):
                e += (a + flat[pos : pos + a.size].reshape(a.shape)) / len(ok)
                pos += a.size
        arrays, metrics = strategy.aggregate_train(rnd, replies)
        for got, want in zip(arrays.to_numpy_ndarrays(), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert metrics["fedcodec-downlink-bytes"] == sum(sizes.values())
        assert "fedcodec-client-key" not in metrics  # an id: never averaged into a metric
        assert all(s <= full_bytes + 200 for s in sizes.values())
        if rnd == 4:
            assert strategy.downlink is not None and strategy.downlink.held[lost] == UNKNOWN
            assert metrics["fedcodec-dropped"] == 0  # an error reply, not a bad payload
    assert kinds[:2] == ["full", "full"]  # round 1: the server knows nobody's model
    assert "chain" in kinds  # later rounds: payloads of the rounds a node missed
    assert strategy.downlink.message(lost, 5).base_round is None  # full model next time


def _recipe(text: str) -> str:
    """The first ```sh block of ``text`` that starts a SuperLink."""
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    found = [b for b in blocks if "flower-superlink" in b]
    assert found, "no recipe"
    return found[0]


def _processes_naming(fragment: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if fragment in line and not line.startswith("Z")]


def test_the_documented_flower_app_recipe_runs_as_printed(tmp_path: Path) -> None:
    """docs/integrations.md's recipe, the same as examples/flower/README.md's, run with
    bash in a folder laid out as a clone (issue 24, item 4): the App runs its three rounds,
    and nothing the recipe started is left running."""
    import shutil

    docs = _recipe((ROOT / "docs" / "integrations.md").read_text())
    assert docs == _recipe((APP / "README.md").read_text())
    assert not _processes_naming("127.0.0.1:9093"), "port 9093 is taken by another run"
    shutil.copytree(APP, tmp_path / "examples" / "flower",
                    ignore=shutil.ignore_patterns(".flwr", "__pycache__"))  # fmt: skip
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLWR_", "PYTHONPATH"))}
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"  # offline: no update check
    result = subprocess.run(["bash", "-e", "-c", docs], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    rounds = re.findall(r"round (\d): (\d+) uplink and (\d+) downlink payload bytes, 2 clients, "
                        r"accuracy ([\d.]+)", result.stdout)  # fmt: skip
    assert [r[0] for r in rounds] == ["1", "2", "3"], result.stdout[-3000:]
    assert float(rounds[-1][3]) > 0.5  # it learns (chance: 0.1)
    deadline = time.monotonic() + 60
    while _processes_naming("127.0.0.1:9093") and time.monotonic() < deadline:
        time.sleep(1)
    assert not _processes_naming("127.0.0.1:9093"), "the recipe left processes running"
