"""``bench/tail_view.py`` reads a compare document as if its runs had stopped earlier: the
tail, the paired gap and the rounds to target are those of the cut runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "tail_view.py"


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("tail_view", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(label: str, codec: Any, accuracy: list[float], bits: float) -> dict[str, Any]:
    metrics, cum = [], 0
    for i, acc in enumerate(accuracy, start=1):
        cum += int(bits * 100)
        metrics.append(
            {"round": i, "test_accuracy": acc, "bits_per_param": bits, "uplink_bits_cum": cum}
        )
    return {"label": label, "codec": codec, "metrics": metrics}


def _doc() -> dict[str, Any]:
    # uncompressed: flat 0.5 for 34 rounds, then 0.9; the codec is 0.02 behind after round 10
    plain = [0.5] * 34 + [0.9] * 6
    coded = [0.5] * 10 + [0.48] * 24 + [0.88] * 6
    return {
        "name": "toy",
        "runs": [_run("plain", None, plain, 32.0), _run("coded", {"id": "rdq"}, coded, 0.1)],
    }


def test_cut_runs_give_the_cut_tail_gap_and_target() -> None:
    lines = _module().view(_doc(), 20)
    # the first 20 rounds: flat, levelled (gain 0), the codec 2 points behind in the tail
    assert "gain over the last fifth 0.00 points" in lines[0]
    assert "target 0.4900" in lines[0]
    plain, coded = lines[4], lines[5]
    assert plain.startswith("| plain | 0.5000 | +0.0 | – | 32.000 | 1 | 0.00 |")
    assert coded.startswith("| coded | 0.4800 | -2.0 | -2.00 ± 0.00 | 0.100 | 1 |")


def test_the_whole_run_sees_the_rise() -> None:
    lines = _module().view(_doc(), 40)
    # rounds 37-40 (0.9) against rounds 29-32 (0.5): not levelled
    assert "gain over the last fifth 40.00 points" in lines[0]
    assert "target 0.8900" in lines[0]
    assert lines[4].startswith("| plain | 0.9000 | +0.0 | – | 32.000 | 35 |")
    # the coded run never reaches 0.89: no round to target
    assert lines[5].endswith("| 0.100 | – | – |")


@pytest.mark.parametrize("rounds", [41, 100])
def test_longer_than_the_runs_says_so(rounds: int) -> None:
    assert "not that long" in _module().view(_doc(), rounds)[0]


def test_rounds_to_each_target() -> None:
    lines = _module().rounds_to(_doc(), [0.5, 0.85, 0.89])
    assert (
        lines[0]
        == "| run | last-10 % acc | best acc | rounds to 50 % | rounds to 85 % | rounds to 89 % |"
    )
    # plain: 0.5 from round 1, 0.9 from round 35; coded: 0.5 only until round 10, 0.88 from 35
    assert lines[2] == "| plain | 0.9000 | 0.9000 | 1 | 35 | 35 |"
    assert lines[3] == "| coded | 0.8800 | 0.8800 | 1 | 35 | – |"


def test_main_needs_rounds_or_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = tmp_path / "doc.json"
    path.write_text(json.dumps(_doc()))
    with pytest.raises(SystemExit):
        _module().main([str(path)])
    assert _module().main([str(path), "--targets", "0.89"]) == 0
    assert "| plain | 0.9000 | 0.9000 | 35 |" in capsys.readouterr().out
