"""The user's own task (``--task package.module:function``) through train, compare and
frontier: its model and data are not built in."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="pip install 'fedcodec[torch]'")

from fedcodec.cli import main
from fedcodec.fl import Task, TrainConfig, load_user_task
from fedcodec.fl import run as train

EXAMPLE = Path(__file__).parents[1] / "examples" / "own_task"
TASK = "blobs_task:make_task"


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))


def test_own_task_trains_and_learns(tmp_path: Path) -> None:
    config = TrainConfig(task=TASK, rounds=6, clients_per_round=5, codec={"id": "rdq"})
    summary = train(config, tmp_path / "run", progress=False)
    assert summary["data"]["num_clients"] == 10 and summary["data"]["train_samples"] == 600
    assert summary["best_accuracy"] > 0.6  # 4 classes: chance is 0.25
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(line["uplink_bits"] > 0 for line in lines)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["task"] == TASK and stored["client_lr"] == 0.1  # the task's default


def test_own_task_through_the_cli(tmp_path: Path) -> None:
    assert main(["train", "--task", TASK, "--rounds", "2", "--clients-per-round", "3",
                 "--out", str(tmp_path / "t"), "--no-progress"]) == 0  # fmt: skip
    assert main(["frontier", "--task", TASK, "--rounds", "2", "--clients-per-round", "3",
                 "--codecs", "rdq,topk", "--out", str(tmp_path / "f")]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "f" / "frontier.json").read_text())
    assert doc["source"]["task"] == TASK and doc["source"]["layout"] is True
    assert main(["compare", "--task", TASK, "--rounds", "2", "--clients-per-round", "3",
                 "--codecs", '[{"id": "rdq", "bits_per_param": 1.0}]',
                 "--out", str(tmp_path / "c")]) == 0  # fmt: skip
    comp = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert len(comp["runs"]) == 2


def test_own_task_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"package\.module:function"):
        TrainConfig(task="no_such_task").resolved()
    with pytest.raises(ValueError, match="cannot load"):
        load_user_task("blobs_task:missing")
    sys.modules.pop("bad_task", None)
    (tmp_path / "bad_task.py").write_text(
        "import numpy as np, torch\n"
        "from fedcodec.fl import Task\n"
        "def wrong_type():\n    return {'clients': []}\n"
        "def mismatched():\n"
        "    x = np.zeros((5, 3), np.float32)\n"
        "    return Task(clients=[((x, np.zeros(4)), (x, np.zeros(5)))],\n"
        "                model=lambda: torch.nn.Linear(3, 2), num_classes=2, input_shape=(3,))\n"
        "def raising_model():\n"
        "    x = np.zeros((5, 3), np.float32); y = np.zeros(5, np.int64)\n"
        "    return Task(clients=[((x, y), (x, y))] * 2,\n"
        "                model=lambda: torch.nn.Linear(4, 2), num_classes=2, input_shape=(3,))\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ValueError, match=r"not a fedcodec\.fl\.Task"):
            load_user_task("bad_task:wrong_type")
        with pytest.raises(ValueError, match="5 inputs and 4 labels"):
            load_user_task("bad_task:mismatched").federated_data("bad")
        # a model that does not fit its data: the run stops, naming the client and round
        config = TrainConfig(task="bad_task:raising_model", rounds=1, clients_per_round=2)
        with pytest.raises(Exception, match="client") as info:
            train(config, tmp_path / "bad", progress=False)
        assert "round 1" in str(info.value)
        assert isinstance(load_user_task("blobs_task:make_task"), Task)
    finally:
        sys.path.remove(str(tmp_path))


def bn_task(seed: int = 0) -> Task:
    """Blobs with a BatchNorm model: float buffers travel, the integer one stays."""
    import torch
    from blobs_task import make_task

    base = make_task(seed=seed, num_clients=6)

    def model() -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Linear(8, 16),
            torch.nn.BatchNorm1d(16),
            torch.nn.ReLU(),
            torch.nn.Linear(16, 4),
        )

    return Task(clients=base.clients, model=model, num_classes=4, input_shape=(8,), client_lr=0.1)


def test_batchnorm_statistics_are_part_of_the_update(tmp_path: Path) -> None:
    from fedcodec.fl import Experiment

    config = TrainConfig(task="test_own_task:bn_task", rounds=4, clients_per_round=3)
    exp = Experiment(config)
    names = [n for n, _, _ in exp.trainer.layout.entries]
    assert "1.running_mean" in names and "1.running_var" in names
    assert not any("num_batches_tracked" in n for n in names)
    before = exp.trainer.get_vector().copy()
    summary = train(config, tmp_path / "bn", progress=False)
    assert summary["best_accuracy"] > 0.5
    # the server's running statistics moved away from their initial values (0 and 1)
    exp2 = Experiment(config)
    state = exp2.process.init()
    for _ in range(2):
        clients = exp2.process.sample_clients(state.round + 1, 3)
        state, _ = exp2.process.apply(state, clients)
    i = names.index("1.running_mean")
    edges = exp2.trainer.layout.edges
    assert not np.allclose(state.params[edges[i] : edges[i + 1]], before[edges[i] : edges[i + 1]])
