"""Fail when a codec got more than 2× slower than the stored reference.

Run: python bench/check_regression.py NEW.json REFERENCE.json [--max-slowdown 2.0]

Both files are pytest-benchmark JSON. Each benchmark's minimum time is divided by the
memory-copy benchmark's minimum time of the same size in the same file, so the check
compares ratios, not seconds (machines differ and are shared). Codec benchmarks (encode,
decode, rate search) fail the check; kernels are reported only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

GATED = re.compile(r"^test_(encode|decode|baseline_encode|baseline_decode|rate_search)\[")


def ratios(path: str) -> dict[str, float]:
    data = json.loads(Path(path).read_text())
    times = {b["name"]: b["stats"]["min"] for b in data["benchmarks"]}
    out = {}
    for name, t in times.items():
        size = re.search(r"\[(\w+?)(?:-|\])", name)
        if not size:
            continue
        copy = times.get(f"test_memory_copy[{size.group(1)}]")
        if copy:
            out[name] = t / copy
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("new")
    p.add_argument("reference")
    p.add_argument("--max-slowdown", type=float, default=2.0)
    args = p.parse_args(argv)
    new, ref = ratios(args.new), ratios(args.reference)
    common = sorted(set(new) & set(ref))
    if not any(GATED.match(n) for n in common):
        print("no codec benchmark in common with the reference: nothing checked", file=sys.stderr)
        return 1
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
