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


# -- the documented commands, run as printed (issue 24, item 3) ---------------------------
ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


def _sh_block(text: str, marker: str) -> list[str]:
    """The lines of the first indented or fenced shell block of ``text`` that mentions
    ``marker`` (comments and blank lines dropped)."""
    blocks, current = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("cd ", "../../.venv/bin/")):
            current.append(stripped)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    found = [b for b in blocks if any(marker in line for line in b)]
    assert found, f"no shell block with {marker!r}"
    return found[0]


def _clone_like(tmp_path: Path) -> Path:
    """A folder laid out as a clone's: ``examples/own_task`` and ``.venv`` (this one)."""
    import shutil

    shutil.copytree(EXAMPLE, tmp_path / "examples" / "own_task")
    (tmp_path / ".venv").symlink_to(BIN.parent, target_is_directory=True)
    return tmp_path


def test_the_documented_own_task_commands_run_as_printed(tmp_path: Path) -> None:
    import subprocess

    docs = _sh_block((ROOT / "docs" / "fl.md").read_text(), "blobs_task:make_task")
    example = _sh_block((EXAMPLE / "blobs_task.py").read_text(), "blobs_task:make_task")
    assert docs == example, "docs/fl.md and the example's docstring show other commands"
    root = _clone_like(tmp_path)
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        ["bash", "-e", "-c", "\n".join(docs)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((root / "examples" / "own_task" / "runs").iterdir())
    train_dir = next(r for r in runs if r.name.startswith("train-"))
    assert f"writing to runs/{train_dir.name}/" in result.stdout  # the default --out, printed
    assert len((train_dir / "metrics.jsonl").read_text().splitlines()) == 20
    frontier_dir = next(r for r in runs if r.name.startswith("frontier-"))
    assert (frontier_dir / "frontier.json").exists()


def test_a_config_error_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    import subprocess

    cli = str(BIN / "fedcodec")
    bad = '{"id": "rdq", "bits_per_parm": 1}'
    for argv in (
        [cli, "train", "--rounds", "1", "--codec", bad, "--out", str(tmp_path / "a")],
        [cli, "train", "--rounds", "1", "--codec", '{"id": "rdq", "bits_per_param": "1"}'],
        [cli, "train", "--rounds", "1", "--algorithm", "fedfoo", "--out", str(tmp_path / "b")],
        [cli, "train", "--resume"],
    ):
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert (
        "did you mean 'bits_per_param'"
        in subprocess.run(
            [cli, "train", "--codec", bad, "--out", str(tmp_path / "c")],
            capture_output=True,
            text=True,
        ).stderr
    )


CHAR_TASK = """
import numpy as np, torch
from torch import nn
from fedcodec.fl import Task

VOCAB, LENGTH = 30, 80

class CharModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.head = nn.Linear(16, VOCAB)
    def forward(self, x):
        return self.head(self.rnn(self.embed(x))[0])  # (batch, time, classes)

def make_task(seed=0):
    rng = np.random.default_rng(seed)
    clients = []
    for _ in range(4):
        text = (np.arange(LENGTH * 12 + 1) * rng.integers(1, 4)) % VOCAB  # a periodic text
        x = np.stack([text[i * LENGTH:(i + 1) * LENGTH] for i in range(12)]).astype(np.int64)
        y = np.stack([text[i * LENGTH + 1:(i + 1) * LENGTH + 1] for i in range(12)])
        clients.append(((x[:9], y[:9]), (x[9:], y[9:])))
    return Task(clients=clients, model=CharModel, num_classes=VOCAB, input_shape=(LENGTH,),
                client_lr=0.5)
"""


def test_an_own_language_model_with_token_inputs_trains_through_the_cli(tmp_path: Path) -> None:
    """int64 token ids reach the model's nn.Embedding as int64 (not cast to float32)."""
    import subprocess

    (tmp_path / "char_task.py").write_text(CHAR_TASK)
    result = subprocess.run(
        [str(BIN / "fedcodec"), "train", "--task", "char_task:make_task", "--rounds", "3",
         "--clients-per-round", "2", "--codec", '{"id": "rdq"}', "--out", "run",
         "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(0.0 <= line["test_accuracy"] <= 1.0 for line in lines)
    assert all(line["uplink_bits"] > 0 for line in lines)


def test_compare_and_frontier_default_to_a_new_folder(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "blobs_task.py").write_text((EXAMPLE / "blobs_task.py").read_text())
    cli = str(BIN / "fedcodec")
    common = ["--task", TASK, "--rounds", "1", "--clients-per-round", "2"]
    for argv in (
        [cli, "frontier", *common, "--codecs", "rdq", "--no-bound"],
        [cli, "compare", *common, "--codecs", '[{"id": "rdq"}]'],
    ):
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        folder = result.stdout.split("writing to ", 1)[1].split("/\n", 1)[0]
        assert folder.startswith(f"runs/{argv[1]}-") and (tmp_path / folder).is_dir()
