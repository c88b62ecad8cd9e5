"""docs/benchmarks.md: its tables are what the committed results render to, and every
``bench/results/...`` path the docs cite exists (issue 27)."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
CITED = re.compile(r"bench/results/[A-Za-z0-9_.{},<>*-]+")


def test_report_check_passes_as_documented() -> None:
    """``python bench/report.py --check``, as docs/benchmarks.md and bench/report.py print it."""
    assert "python bench/report.py --check" in PAGE.read_text()
    run = subprocess.run(
        [sys.executable, "bench/report.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_report_check_fails_on_a_table_edited_by_hand(tmp_path: Path) -> None:
    page = PAGE.read_text()
    start = page.index("<!-- report:frontier-cnn -->")
    cell = page.index("0.54×", start)
    stale = tmp_path / "benchmarks.md"
    stale.write_text(page[:cell] + "0.50×" + page[cell + len("0.54×") :])
    run = subprocess.run(
        [sys.executable, "bench/report.py", "--check", "--page", str(stale)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "frontier-cnn" in run.stdout


def test_the_summary_stays_short() -> None:
    assert len(PAGE.read_text().splitlines()) <= 400


def _expand(path: str) -> list[str]:
    """``a_{x,y}.json`` -> ``a_x.json``, ``a_y.json`` (shell brace expansion)."""
    parts = re.split(r"\{([^{}]*)\}", path)
    options = [p.split(",") if i % 2 else [p] for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*options)]


def _ignored() -> set[str]:
    """Results paths .gitignore names: outputs a documented command writes (``make
    bench-short``'s ``ci-latest.json``), not committed results."""
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return {ln.strip() for ln in lines if ln.strip().startswith("bench/results/")}


def test_every_cited_results_path_exists() -> None:
    ignored = _ignored()
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    docs.append(ROOT / "bench" / "results" / "lab_notes.md")
    missing = []
    for doc in docs:
        for m in CITED.finditer(doc.read_text()):
            path = m.group(0).rstrip(".,")
            if "<" in path or "SUITE" in path or "*" in path:  # a pattern, not a file
                continue
            for p in _expand(path):
                if p not in ignored and not (ROOT / p).exists():
                    missing.append(f"{doc.relative_to(ROOT)}: {p}")
    assert not missing, missing


def test_the_scripts_write_what_the_report_reads(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``bench/memory.py``, ``bench/frames.py`` and ``bench/large_update.py`` with ``--json``
    (small sizes here) write the files section 4's blocks render, and each block cites the
    command that wrote its file."""
    runs = {
        "memory.json": ["bench/memory.py"],
        "frames.json": [
            "bench/frames.py",
            "--params",
            "300000",
            "--frame",
            "100000",
            "--repeat",
            "1",
        ],
        "large_update.json": [
            "bench/large_update.py",
            "--params",
            "3000000",
            "--path",
            str(tmp_path / "update.npy"),
        ],
    }
    for name, cmd in runs.items():
        run = subprocess.run(
            [sys.executable, *cmd, "--json", str(tmp_path / name)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import report
    finally:
        sys.path.remove(str(ROOT / "bench"))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    large = "\n".join(report.large_update())
    assert "3,000,000 float32 parameters" in large and "| encode |" in large
    assert "python bench/large_update.py --params 3000000" in large
    frames = "\n".join(report.frames())
    assert "300,000 parameters" in frames and frames.count("\n| ") == 5  # header + 4 runs
    memory = "\n".join(report.memory())
    assert "python bench/memory.py --json" in memory and '| matrix | `{"nmse": 0.05}` |' in memory
    assert "more rows" in memory


def test_nncodec_compare_reads_bits_at_a_target_off_a_sweep() -> None:
    """bench/nncodec_compare.py's interpolation (the comparison itself needs NNCodec, which
    is not a dependency: its results are committed)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import nncodec_compare as nc
    finally:
        sys.path.remove(str(ROOT / "bench"))
    points = [(2.0, 0.01), (1.0, 0.04), (0.5, 0.16)]  # (bits/param, NMSE): log-linear
    assert abs(nc.at_target(points, 0.02) - 2.0**0.5) < 1e-12
    assert nc.at_target(points, 0.04) == 1.0
    assert nc.at_target(points, 0.005) is None and nc.at_target(points, 0.2) is None
    assert nc.at_target([(1.0, 0.04), (2.0, 0.01)], 0.02) == nc.at_target(points, 0.02)
    x = np.array([3.0, 4.0], np.float32)
    assert nc.nmse(x, np.zeros(2)) == 1.0 and nc.nmse(x, 2 * x) == 1.0
    assert nc.nmse(x, np.array([3.0, 2.0])) == 4.0 / 25.0


def test_the_documented_ctx_speed_commands_run(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """docs/benchmarks.md's ``bench/ctx_speed.py`` command lines, run with their arguments
    as printed (the same coders, threads, rates, repeats) on small updates of the same
    names, writing to a temporary file instead of ``bench/results/``: every
    row the section's table renders from comes out, the default's bytes the same on
    every thread count (the script asserts it)."""
    import json
    import shlex

    text = PAGE.read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if "bench/ctx_speed.py --rate" in ln]
    assert len(lines) == 2
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import ctx_speed
    finally:
        sys.path.remove(str(ROOT / "bench"))
    names = ["matrix-10M", "cnn-shaped", "lstm-shaped", "flat"]  # bench/ctx_speed.py's
    rng = np.random.default_rng(0)
    small = {
        name: {f"w{k}": (rng.laplace(size=(40, 30)) * 1e-3).astype(np.float32) for k in range(2)}
        for name in names
    }
    small["flat"] = {"x": (rng.laplace(size=3000) * 1e-3).astype(np.float32)}
    monkeypatch.setattr(ctx_speed, "updates", lambda seed=0: small)
    for line in lines:
        argv = shlex.split(line)[2:]  # after ".venv/bin/python bench/ctx_speed.py"
        at = argv.index("--json")
        target = tmp_path / Path(argv[at + 1]).name
        argv[at + 1] = str(target)
        monkeypatch.setattr(sys, "argv", ["ctx_speed.py", *argv])
        ctx_speed.main()
        rows = json.loads(target.read_text())["rows"]
        coders = argv[argv.index("--coders") + 1 : argv.index("--threads")]
        threads = [int(t) for t in argv[argv.index("--threads") + 1 : argv.index("--repeat")]]
        assert {(r["update"], r["coder"], r["threads"]) for r in rows} == {
            (u, c, t) for u in names for c in coders for t in threads
        }
