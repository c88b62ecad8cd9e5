"""The demo (``make demo``) writes its report with the plots and the JSON behind them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the demo trains: pip install 'fedcodec[torch]'")

from fedcodec.tools import demo


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One quick demo run (``python -m fedcodec.tools.demo --quick``): its folder and what
    it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert demo.main(["--out", str(out), "--quick"]) == 0
    return out, printed.getvalue()


def test_demo_writes_report_plots_and_json(quick_demo: tuple[Path, str]) -> None:
    tmp_path, printed = quick_demo
    report = (tmp_path / "report.md").read_text()
    for plot in ("frontier.png", "consistency.png", "accuracy_vs_uplink.png"):
        assert f"]({plot})" in report
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "**bound** (Blahut–Arimoto)" in report and "uncompressed (float32)" in report
    frontier = json.loads((tmp_path / "frontier.json").read_text())
    assert frontier["schema"] == "fedcodec.frontier/1" and frontier["bound"] is not None
    compare = json.loads((tmp_path / "compare.json").read_text())
    assert compare["runs"][0]["label"] == "uncompressed (float32)"
    assert f"report: {(tmp_path / 'report.md').resolve()}" in printed


def test_the_report_summarizes_bits_accuracy_and_speed(quick_demo: tuple[Path, str]) -> None:
    """Issue 24, item 7: a summary table of every codec (bits, bytes saved, accuracy cost,
    speed), a speed section, the round counts beside each accuracy, every PNG linked."""
    tmp_path, _ = quick_demo
    report = (tmp_path / "report.md").read_text()
    summary = report.split("## In a minute", 1)[1].split("## 1.", 1)[0]
    compare = json.loads((tmp_path / "compare.json").read_text())
    speed = json.loads((tmp_path / "speed.json").read_text())
    assert speed["schema"] == "fedcodec.speed/1"
    for run in compare["runs"][1:]:  # every compressed run has its summary row, with speed
        row = next(line for line in summary.splitlines() if line.startswith(f"| {run['label']} "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 7 and "-" not in (cells[1], cells[2], cells[5], cells[6]), row
    assert "## 4. Speed" in report
    section1 = report.split("## 1.", 1)[1].split("## 2.", 1)[0]
    section3 = report.split("## 3.", 1)[1].split("## 4.", 1)[0]
    rounds1 = json.loads((tmp_path / "run" / "summary.json").read_text())["rounds"]
    assert f"FedAvg, {rounds1} rounds" in " ".join(section1.split())
    assert f"FedAvg, {compare['rounds']} rounds" in " ".join(section3.split())
    for png in sorted(p.name for p in tmp_path.glob("*.png")):
        assert f"]({png})" in report, f"{png} is written but not linked"


def test_series_keep_distinct_styles_in_the_compare_plot(tmp_path: Path) -> None:
    """13 runs on one plot: no two share a colour, line style and marker."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from fedcodec.tools import plots

    runs = [
        {"label": "uncompressed (float32)" if i == 0 else f"codec {i}", "codec": None,
         "metrics": [{"test_accuracy": 0.5 + 0.01 * i, "uplink_bits_cum": 8e6 * (j + 1)}
                     for j in range(3)]}
        for i in range(13)
    ]  # fmt: skip
    doc = {"name": "t", "task": "digits", "rounds": 3, "seed": 0, "runs": runs}
    seen: list[tuple] = []
    real_save = plots._save

    def capture(fig, out_dir, stem):  # type: ignore[no-untyped-def]
        if stem == "accuracy_vs_uplink":
            for line in fig.axes[0].get_lines():
                seen.append((str(line.get_color()), line.get_linestyle(), line.get_marker()))
        return real_save(fig, out_dir, stem)

    plots._save = capture  # type: ignore[assignment]
    try:
        plots.plot_compare(doc, tmp_path)
    finally:
        plots._save = real_save  # type: ignore[assignment]
        plt.close("all")
    assert len(seen) == 13 and len(set(seen)) == 13
