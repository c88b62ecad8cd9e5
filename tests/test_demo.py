"""The demo (``make demo``) writes its report with the plots and the JSON behind them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the demo trains: pip install 'fedcodec[torch]'")

from fedcodec.tools import demo


def test_demo_writes_report_plots_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main(["--out", str(tmp_path), "--quick"]) == 0
    report = (tmp_path / "report.md").read_text()
    for plot in ("frontier.png", "consistency.png", "accuracy_vs_uplink.png"):
        assert f"]({plot})" in report
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "**bound** (Blahut–Arimoto)" in report and "uncompressed (float32)" in report
    frontier = json.loads((tmp_path / "frontier.json").read_text())
    assert frontier["schema"] == "fedcodec.frontier/1" and frontier["bound"] is not None
    compare = json.loads((tmp_path / "compare.json").read_text())
    assert compare["runs"][0]["label"] == "uncompressed (float32)"
    assert f"report: {(tmp_path / 'report.md').resolve()}" in capsys.readouterr().out
