"""``fedcodec.presets``: named, measured configurations, from Python and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fedcodec
from fedcodec.presets import PRESETS, get_preset

ROOT = Path(__file__).resolve().parents[1]
TRAIN_DEFAULTS = {
    "server_optimizer": "sgd",
    "server_lr": 1.0,
    "server_momentum": 0.9,
    "server_lr_schedule": "constant",
    "uplink_rate_by_examples": False,
}


def test_every_preset_builds_its_codec_and_train_config() -> None:
    pytest.importorskip("torch", reason="pip install 'fedcodec[torch]'")
    from fedcodec.fl import TrainConfig

    for preset in PRESETS.values():
        codec = fedcodec.get_codec(preset.codec)
        assert codec.get_config()["id"] == preset.codec["id"]
        config = TrainConfig(codec=preset.codec, **preset.train)
        for key, value in preset.train.items():
            assert getattr(config, key) == value
        for path in preset.evidence:  # the suites the choice rests on are committed ...
            doc = json.loads((ROOT / path).read_text())
            runs = [r for r in doc["runs"] if r["codec"] == preset.codec]
            # ... and hold a run of exactly this codec and these server settings
            settings = {**doc["base_config"]}
            assert any(
                all({**settings, **(r["config"] or {})}.get(k, TRAIN_DEFAULTS[k]) == v
                    for k, v in preset.train.items())
                for r in runs
            ), path  # fmt: skip


def test_an_unknown_preset_names_the_closest() -> None:
    with pytest.raises(ValueError, match="did you mean 'tenth-bit'"):
        get_preset("tenth_bit")


def test_presets_command_prints_json_to_copy() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fedcodec.cli", "presets"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    listed = json.loads(out.stdout)
    assert [p["name"] for p in listed] == list(PRESETS)
    assert listed[0]["codec"] == PRESETS[listed[0]["name"]].codec


def test_train_with_a_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch", reason="pip install 'fedcodec[torch]'")
    from fedcodec.cli import main

    preset = get_preset("tenth-bit")
    out = tmp_path / "run"
    argv = ["train", "--task", "synthetic", "--preset", "tenth-bit", "--rounds", "2",
            "--clients-per-round", "3", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["codec"] == preset.codec
    for key, value in preset.train.items():
        assert config[key] == value
    # an explicit server option wins over the preset's
    out2 = tmp_path / "run2"
    assert main([*argv[:-3], "--server-lr", "0.3", "--out", str(out2), "--no-progress"]) == 0
    assert json.loads((out2 / "config.json").read_text())["server_lr"] == 0.3
    # the codec comes from the preset alone
    assert main([*argv, "--codec", '{"id": "rdq"}']) == 2
    assert "not both" in capsys.readouterr().err
