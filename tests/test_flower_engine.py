"""``--engine flower``: the harness's experiment on Flower's simulation engine (a SuperLink
in simulation mode and ``flwr run``) agrees with the harness bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr", reason="pip install 'fedcodec[flower]'")
pytest.importorskip("ray", reason="Flower's simulation engine: pip install 'fedcodec[flower]'")
pytest.importorskip("torch", reason="pip install 'fedcodec[torch]'")

from fedcodec.fl import ClientError, TrainConfig
from fedcodec.fl import run as train
from fedcodec.fl.flower_engine import FlowerOptions

EXAMPLE = Path(__file__).parents[1] / "examples" / "own_task"


def lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines()]


def flower_processes() -> int:
    """Live SuperLinks and simulation processes (an exited one waiting to be reaped by init
    is not one)."""
    ps = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True, text=True).stdout
    return sum(
        ("flower-superlink" in line or "flwr-simulation" in line) and not line.startswith("Z")
        for line in ps.splitlines()
    )


def both_engines(config: TrainConfig, tmp_path: Path) -> tuple[list[Any], list[Any], dict, dict]:
    before = flower_processes()
    flower = train(
        config,
        tmp_path / "flower",
        engine="flower",
        flower=FlowerOptions(client_cpus=1, ray_cpus=2),
        progress=False,
    )
    assert flower_processes() == before  # the SuperLink and what it started are gone
    harness = train(config, tmp_path / "harness", torch_threads=1, progress=False)
    return lines(tmp_path / "flower"), lines(tmp_path / "harness"), flower, harness


def assert_agree(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        x.pop("seconds"), y.pop("seconds")
        assert x == y  # every field: bytes both ways, accuracy, loss, NMSE, clients


def test_digits_agrees_with_the_harness_bit_for_bit(tmp_path: Path) -> None:
    """Partial participation, so that the downlink sends chains of missed rounds and full
    models; error feedback keeps a residual in the node's state between rounds."""
    config = TrainConfig(
        task="digits",
        rounds=4,
        num_clients=6,
        clients_per_round=3,
        codec={"id": "rdq", "bits_per_param": 1.0},
        downlink_codec={"id": "rdq", "bits_per_param": 4.0},
        error_feedback=True,
        save_updates=1,
    )
    a, b, flower, harness = both_engines(config, tmp_path)
    assert_agree(a, b)
    assert flower["engine"] == "flower" and harness["engine"] == "harness"
    assert flower["final_accuracy"] == harness["final_accuracy"] > 0.3
    for key in ("uplink_bits_total", "downlink_bits_total", "mean_bits_per_param"):
        assert flower[key] == harness[key]
    # the downlink: round 1's clients hold the initial model (chain of one payload); later
    # rounds mix chains of missed rounds and the full model for nobody (all kept)
    full_bits = 8 * (4 * harness["params_sent"])
    for line in a:
        assert 0 < line["downlink_bits"] < full_bits * len(line["clients"])
    # the raw updates the clients sent for analysis are the harness's
    import numpy as np

    with (
        np.load(tmp_path / "flower" / "updates.npz") as f,
        np.load(tmp_path / "harness" / "updates.npz") as h,
    ):
        assert sorted(f.files) == sorted(h.files) and f.files
        for k in f.files:
            np.testing.assert_array_equal(f[k], h[k])
    assert (tmp_path / "flower" / "layout.json").read_text() == (
        tmp_path / "harness" / "layout.json"
    ).read_text()


# slow (Flower's engine starts for each run): make test-slow
@pytest.mark.slow
def test_the_tenth_bit_preset_agrees_with_the_harness(tmp_path: Path) -> None:
    """The preset's codec (rdq_unbiased: a rotation from each client's own seed) and server
    settings give the same bytes and accuracy in Flower's engine as in the harness."""
    from fedcodec.presets import get_preset

    preset = get_preset("tenth-bit")
    config = TrainConfig(
        task="digits", rounds=2, num_clients=6, clients_per_round=3,
        codec={**preset.codec, "bits_per_param": 1.0}, **preset.train,
    )  # fmt: skip
    a, b, flower, harness = both_engines(config, tmp_path)
    assert_agree(a, b)
    assert flower["uplink_bits_total"] == harness["uplink_bits_total"] > 0


# slow (Flower's engine starts for each run): make test-slow
@pytest.mark.slow
def test_own_task_and_feddyn_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's task (a module on the path, imported by Flower's processes too) with
    FedDyn, whose g lives in the node's state."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    config = TrainConfig(
        task="blobs_task:make_task",
        algorithm="feddyn",
        rounds=3,
        clients_per_round=4,
        codec={"id": "qsgd", "num_levels": 4},
    )
    a, b, _, _ = both_engines(config, tmp_path)
    assert_agree(a, b)


def test_a_failing_client_stops_the_run_naming_it(tmp_path: Path) -> None:
    (tmp_path / "failing_task.py").write_text(
        "import numpy as np, torch\n"
        "from fedcodec.fl import Task\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.l = torch.nn.Linear(4, 2)\n"
        "    def forward(self, x):\n"
        "        if float(x[0, 0]) > 100: raise RuntimeError('the model broke')\n"
        "        return self.l(x)\n"
        "def make_task(seed=0, num_clients=None):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    def part(i):\n"
        "        x = rng.normal(size=(20, 4)).astype(np.float32)\n"
        "        if i == 2: x[:, 0] = 1000\n"
        "        y = (x[:, 1] > 0).astype(np.int64)\n"
        "        return (x, y), (x[:5], y[:5])\n"
        "    return Task(clients=[part(i) for i in range(3)], model=Net, num_classes=2,\n"
        "                input_shape=(4,))\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        config = TrainConfig(task="failing_task:make_task", rounds=2, clients_per_round=3)
        with pytest.raises(RuntimeError, match=r"round 1, client 2: train failed.*model broke"):
            train(config, tmp_path / "run", engine="flower", progress=False)
        with pytest.raises(ClientError, match=r"round 1, client 2: train failed"):
            train(config, tmp_path / "h", progress=False)
    finally:
        sys.path.remove(str(tmp_path))


def test_unsupported_options_say_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not support resume"):
        train(TrainConfig(), tmp_path, engine="flower", resume=True)
    with pytest.raises(ValueError, match="unknown engine"):
        train(TrainConfig(), tmp_path, engine="ray")


# slow (Flower's engine starts for each run): make test-slow
@pytest.mark.slow
def test_own_task_compare_and_frontier_on_flower(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fedcodec compare`` and ``frontier --task`` with ``--engine flower`` on a user's task."""
    from fedcodec.cli import main

    monkeypatch.syspath_prepend(str(EXAMPLE))
    task = "blobs_task:make_task"
    flower = ["--engine", "flower", "--client-cpus", "1", "--ray-cpus", "2"]
    assert (
        main(
            [
                "frontier",
                "--task",
                task,
                "--rounds",
                "1",
                "--clients-per-round",
                "3",
                "--codecs",
                "rdq",
                "--no-bound",
                "--out",
                str(tmp_path / "f"),
                *flower,
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "f" / "frontier.json").read_text())
    assert doc["source"]["task"] == task and doc["points"]
    assert json.loads((tmp_path / "f" / "run" / "summary.json").read_text())["engine"] == "flower"
    assert main(["compare", "--task", task, "--rounds", "1", "--clients-per-round", "3",
                 "--codecs", '[{"id": "rdq", "bits_per_param": 1.0}]',
                 "--out", str(tmp_path / "c"), *flower]) == 0  # fmt: skip
    comp = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert comp["engine"] == "flower" and len(comp["runs"]) == 2
    assert all(r["summary"]["engine"] == "flower" for r in comp["runs"])
