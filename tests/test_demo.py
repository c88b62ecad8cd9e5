"""The demo (``make demo``) writes its report, plot and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from fedcodec import demo


def test_demo_writes_report_plot_and_json(tmp_path: Path) -> None:
    assert demo.main(["--out", str(tmp_path), "--repeats", "1", "--quick"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "![frontier](frontier.png)" in report
    assert (tmp_path / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads((tmp_path / "results.json").read_text())
    assert len(rows) == 2 * len(demo.CONFIGS)
    for row in rows:
        assert row["bits"] == 8 * round(row["bits"] / 8)
        assert 0 <= row["nmse"] < 1.5
