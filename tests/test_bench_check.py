"""The benchmark regression check (``make bench-short``'s ``bench/check_regression.py``)
catches a real 2.5x slowdown of one codec and passes an unchanged build, each measured with
the command lines ``make bench-short`` runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Two codecs of the gated suite: one slowed on purpose, one left alone.
SELECT = "test_baseline_encode and (drive or qsgd)"


def bench_short(out: Path, env: dict[str, str]) -> None:
    """``make bench-short``'s pytest command line, on the selected benchmarks only."""
    cmd = [
        sys.executable, "-m", "pytest", "bench", "-q", "--benchmark-enable", "--benchmark-only",
        "-p", "no:cacheprovider", "--benchmark-min-rounds=15", "--benchmark-max-time=0.3",
        "--benchmark-warmup=off", "--benchmark-timer=time.process_time",
        f"--benchmark-json={out}", "-k", SELECT,
    ]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)


def check(new: Path, ref: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "bench/check_regression.py", str(new), str(ref), "--retries", "2"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_check_fails_a_codec_slowed_2_5x_and_passes_the_rest(tmp_path: Path) -> None:
    env = {**os.environ, "FEDCODEC_BENCH_SHORT": "1"}
    env.pop("FEDCODEC_SLOWDOWN", None)
    ref, same, slow = tmp_path / "ref.json", tmp_path / "same.json", tmp_path / "slow.json"
    bench_short(ref, env)

    bench_short(same, env)
    unchanged = check(same, ref, env)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr

    # the slowdown stays on in the check's re-measurements too (the plugin rides along in
    # PYTEST_ADDOPTS), as a real regression would
    slowed_env = {
        **env,
        "FEDCODEC_SLOWDOWN": "drive:2.5",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")]),
        "PYTEST_ADDOPTS": "-p bench_slowdown",
    }
    bench_short(slow, slowed_env)
    result = check(slow, ref, slowed_env)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert lines["test_baseline_encode[1M-drive]"].endswith("FAIL"), result.stdout
    assert not lines["test_baseline_encode[1M-qsgd-s4-b512]"].endswith("FAIL"), result.stdout
    assert "re-measuring 1 benchmark(s)" in result.stdout
