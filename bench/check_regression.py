"""Fail when a codec got more than 2× slower than the stored reference.

Run: python bench/check_regression.py NEW.json REFERENCE.json [--max-slowdown 2.0]

Both files are pytest-benchmark JSON. Each benchmark's minimum time is divided by the
memory-copy benchmark's minimum time of the same size in the same file, so the check
compares ratios, not seconds (machines differ and are shared). Codec benchmarks (encode,
decode, rate search) fail the check; kernels are reported only.

With ``--retries N`` a benchmark over the limit is measured again (with the memory copy,
in a new pytest-benchmark run) up to N times and its best ratio counts: a busy neighbour
slows one run, a real regression slows them all.
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
    data = json.loads(Path(path).read_text())
    times = {b["name"]: b["stats"]["min"] for b in data["benchmarks"]}
    out = {}
    for name, t in times.items():
        size = _size(name)
        if not size:
            continue
        copy = times.get(f"test_memory_copy[{size}]")
        if copy:
            out[name] = t / copy
    return out


def remeasure(names: list[str]) -> dict[str, float]:
    """Run the named benchmarks (and the memory copy) again; their ratios."""
    copies = {f"test_memory_copy[{_size(n)}]" for n in names}
    ids = [f"{Path(__file__).parent / 'test_speed.py'}::{n}" for n in sorted(set(names) | copies)]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "rerun.json"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-enable",
               "--benchmark-only", "--benchmark-min-rounds=5", "--benchmark-max-time=0.2",
               f"--benchmark-json={out}", *ids]  # fmt: skip
        subprocess.run(cmd, check=True, env={**os.environ, "FEDCODEC_BENCH_SHORT": "1"},
                       stdout=subprocess.DEVNULL)  # fmt: skip
        return ratios(str(out))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("new")
    p.add_argument("reference")
    p.add_argument("--max-slowdown", type=float, default=2.0)
    p.add_argument("--retries", type=int, default=0, help="re-measure failures up to N times")
    args = p.parse_args(argv)
    new, ref = ratios(args.new), ratios(args.reference)
    common = sorted(set(new) & set(ref))
    if not any(GATED.match(n) for n in common):
        print("no codec benchmark in common with the reference: nothing checked", file=sys.stderr)
        return 1
    for attempt in range(args.retries):
        slow = [n for n in common if GATED.match(n) and new[n] > args.max_slowdown * ref[n]]
        if not slow:
            break
        print(f"re-measuring {len(slow)} benchmark(s) over the limit (retry {attempt + 1})")
        again = remeasure(slow)
        for n in slow:
            new[n] = min(new[n], again.get(n, new[n]))
    failed = []
    print(f"{'benchmark':58} {'× copy now':>11} {'× copy ref':>11} {'slowdown':>9}")
    for name in common:
        slowdown = new[name] / ref[name]
        gated = bool(GATED.match(name))
        flag = "FAIL" if gated and slowdown > args.max_slowdown else ("" if gated else "(info)")
        print(f"{name:58} {new[name]:11.1f} {ref[name]:11.1f} {slowdown:8.2f}x {flag}")
        if flag == "FAIL":
            failed.append(name)
    if failed:
        print(f"\n{len(failed)} codec benchmark(s) more than {args.max_slowdown}x slower "
              f"relative to a memory copy: {', '.join(failed)}", file=sys.stderr)  # fmt: skip
        return 1
    print(f"\nall {sum(bool(GATED.match(n)) for n in common)} codec benchmarks within "
          f"{args.max_slowdown}x of the reference")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
