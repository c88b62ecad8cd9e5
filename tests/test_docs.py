"""Every docstring example runs, and so does the README's quickstart."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import sys
from pathlib import Path

import pytest

import fedcodec

MODULES = sorted(
    {info.name for info in pkgutil.walk_packages(fedcodec.__path__, "fedcodec.")}
    | {info.name for info in pkgutil.walk_packages(fedcodec.kernels.__path__, "fedcodec.kernels.")}
    | {"fedcodec", "fedcodec.kernels"}
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_readme_quickstart_runs(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has no Python quickstart"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 10
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert abs(float(printed[0]) - 1.0) < 0.02


def test_readme_state_dict_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's second Python block (after the quickstart, whose ``codec`` it uses)."""
    pytest.importorskip("torch", reason="pip install 'fedcodec[torch]'")
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert "encode_state_dict" in blocks[1]
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    capsys.readouterr()
    exec(compile(blocks[1], "README.md", "exec"), namespace)
    assert capsys.readouterr().out.strip() == "1"


def test_readme_setup_is_two_commands() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in setup.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "make test" in ci


def test_readme_preset_command_runs_as_printed(tmp_path: Path) -> None:
    """The README's `--preset tenth-bit` line, run by bash as printed (in a folder whose
    .venv is this checkout's)."""
    import json
    import subprocess

    root = Path(__file__).resolve().parents[1]
    lines = [ln for ln in (root / "README.md").read_text().splitlines() if "--preset" in ln]
    assert len(lines) == 1, lines
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    subprocess.run(["bash", "-c", lines[0]], cwd=tmp_path, check=True, capture_output=True)
    config = json.loads((tmp_path / "runs" / "digits-tenth" / "config.json").read_text())
    from fedcodec.presets import get_preset

    preset = get_preset("tenth-bit")
    assert config["codec"] == preset.codec and config["codec"]["id"] == "rdq_unbiased"
    assert all(config[key] == value for key, value in preset.train.items())
    assert config["uplink_rate_by_examples"] is True
