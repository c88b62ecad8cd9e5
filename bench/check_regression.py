"""Fail when a codec got more than 2× slower than the stored reference.

Run: python bench/check_regression.py NEW.json REFERENCE.json [REFERENCE2.json ...]
[--max-slowdown 2.0]

Both files are pytest-benchmark JSON. Each benchmark's minimum time is divided by the
yardstick recorded beside it (``extra_info["yardstick_s"]``: a compute-bound kernel timed
with the same timer just before and after the benchmark, see ``bench/conftest.py``), so the
check compares ratios, not seconds (machines differ and are shared). A file without
yardsticks falls back to the memory-copy benchmark of the same size. Codec benchmarks
(encode, decode, rate search) fail the check; kernels are reported only.

A codec's time over the yardstick still depends on the CPU's make: QSGD's Elias-omega
loops run 2.4-3.6x slower relative to the yardstick on an Intel Xeon than on an AMD EPYC,
every other codec within 1.5x. So the check takes one reference per make and compares with
the one whose ``machine_info.cpu.vendor_id_raw`` is the new run's (the first one when none
is), and says which it used.

``make bench-short`` times with ``time.process_time`` (the CPU time of the process, all its
threads): time spent waiting for a core that a neighbour holds does not count, work done
does (a thread pool spinning on a busy core included).

With ``--retries N`` a benchmark over the limit is measured again (with its yardstick, in a
new pytest-benchmark run with the same timer) up to N times and its best ratio counts: a
busy neighbour slows one run, a real regression slows them all.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

GATED = re.compile(
    r"^test_(encode|decode|ctx_encode|ctx_decode|baseline_encode|baseline_decode|rate_search)\["
)


def _size(name: str) -> str | None:
    """The update size in a benchmark id: ``test_encode[1M-ans-rdo]`` -> ``1M``."""
    m = re.search(r"\[(\w+?)(?:-|\])", name)
    return m.group(1) if m else None


def ratios(path: str) -> dict[str, float]:
    """Each benchmark's best time over its yardstick (or over the memory copy's best time
    of the same size, for a file written before yardsticks)."""
    data = json.loads(Path(path).read_text())
    times = {b["name"]: b["stats"]["min"] for b in data["benchmarks"]}
    yardsticks = {
        b["name"]: b["extra_info"]["yardstick_s"]
        for b in data["benchmarks"]
        if b.get("extra_info", {}).get("yardstick_s")
    }
    out = {}
    for name, t in times.items():
        if yardsticks:
            if name in yardsticks and not name.startswith("test_memory_copy"):
                out[name] = t / yardsticks[name]
            continue
        size = _size(name)
        copy = times.get(f"test_memory_copy[{size}]") if size else None
        if copy:
            out[name] = t / copy
    return out


def vendor_of(path: str) -> str:
    """The CPU make pytest-benchmark recorded (``GenuineIntel``, ``AuthenticAMD``, ...)."""
    data = json.loads(Path(path).read_text())
    return str(data.get("machine_info", {}).get("cpu", {}).get("vendor_id_raw", ""))


def pick_reference(new: str, references: list[str]) -> str:
    """The reference measured on the new run's CPU make, else the first one."""
    vendor = vendor_of(new)
    for ref in references:
        if vendor and vendor_of(ref) == vendor:
            return ref
    return references[0]


def timer_of(path: str) -> str:
    """The timer the file's benchmarks were measured with (pytest-benchmark's option)."""
    data = json.loads(Path(path).read_text())
    timers = {str(b.get("options", {}).get("timer", "")) for b in data["benchmarks"]}
    timers.discard("")
    timer = timers.pop() if len(timers) == 1 else "perf_counter"
    # pytest-benchmark writes a function of ``time`` by its bare name
    return timer if "." in timer else f"time.{timer}"


def remeasure(names: list[str], timer: str = "time.perf_counter") -> dict[str, float]:
    """Run the named benchmarks again (each with its yardstick); their ratios."""
    ids = [f"{Path(__file__).parent / 'test_speed.py'}::{n}" for n in sorted(set(names))]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "rerun.json"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-enable",
               "--benchmark-only", "--benchmark-min-rounds=15", "--benchmark-max-time=0.3",
               "--benchmark-warmup=off", f"--benchmark-timer={timer}",
               f"--benchmark-json={out}", *ids]  # fmt: skip
        subprocess.run(cmd, check=True, env={**os.environ, "FEDCODEC_BENCH_SHORT": "1"},
                       stdout=subprocess.DEVNULL)  # fmt: skip
        return ratios(str(out))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("new")
    p.add_argument("reference", nargs="+", help="one reference per CPU make")
    p.add_argument("--max-slowdown", type=float, default=2.0)
    p.add_argument("--retries", type=int, default=0, help="re-measure failures up to N times")
    args = p.parse_args(argv)
    reference = pick_reference(args.new, args.reference)
    print(f"reference: {reference} ({vendor_of(reference) or 'CPU make not recorded'}; "
          f"this run: {vendor_of(args.new) or 'not recorded'})")  # fmt: skip
    new, ref = ratios(args.new), ratios(reference)
    common = sorted(set(new) & set(ref))
    if not any(GATED.match(n) for n in common):
        print("no codec benchmark in common with the reference: nothing checked", file=sys.stderr)
        return 1
    for attempt in range(args.retries):
        slow = [n for n in common if GATED.match(n) and new[n] > args.max_slowdown * ref[n]]
        if not slow:
            break
        print(f"re-measuring {len(slow)} benchmark(s) over the limit (retry {attempt + 1})")
        again = remeasure(slow, timer_of(args.new))
        for n in slow:
            new[n] = min(new[n], again.get(n, new[n]))
    failed = []
    print(f"{'benchmark':58} {'× yard now':>11} {'× yard ref':>11} {'slowdown':>9}")
    for name in common:
        slowdown = new[name] / ref[name]
        gated = bool(GATED.match(name))
        flag = "FAIL" if gated and slowdown > args.max_slowdown else ("" if gated else "(info)")
        print(f"{name:58} {new[name]:11.1f} {ref[name]:11.1f} {slowdown:8.2f}x {flag}")
        if flag == "FAIL":
            failed.append(name)
    if failed:
        print(f"\n{len(failed)} codec benchmark(s) more than {args.max_slowdown}x slower "
              f"relative to the yardstick: {', '.join(failed)}", file=sys.stderr)  # fmt: skip
        return 1
    print(f"\nall {sum(bool(GATED.match(n)) for n in common)} codec benchmarks within "
          f"{args.max_slowdown}x of the reference")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
