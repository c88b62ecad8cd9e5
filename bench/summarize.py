"""Turn a pytest-benchmark JSON file into the Markdown speed table of docs/benchmarks.md.

Run: python bench/summarize.py bench/results/latest.json
Throughput uses each benchmark's minimum time (the least disturbed run on a shared
machine); "× copy" divides it by the memory-copy benchmark of the same size in the same
run, the figure to compare across machines.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def main(path: str) -> None:
    data = json.loads(Path(path).read_text())
    rows = {}
    for b in data["benchmarks"]:
        m = re.match(r"(test_\w+)\[(\w+)(?:-(.+))?\]", b["name"])
        if not m:
            continue
        test, size, config = m.groups()
        rows[(test, size, config)] = b
    sizes = {"1M": 1_000_000, "10M": 10_000_000}
    copy = {s: rows[("test_memory_copy", s, None)]["stats"]["min"] for s in sizes}
    machine = data["machine_info"]
    print(
        f"Machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor'))}, "
        f"{machine.get('cpu', {}).get('count', '?')} cores, Python {machine['python_version']}, "
        f"run {data['datetime'][:19]}\n"
    )
    print("| benchmark | config | size | min ms | M params/s | × copy time | bits/param |")
    print("|---|---|---|---:|---:|---:|---:|")
    for (test, size, config), b in sorted(
        rows.items(), key=lambda kv: (kv[0][0], kv[0][2] or "", -sizes[kv[0][1]])
    ):
        t = b["stats"]["min"]
        bpp = b.get("extra_info", {}).get("bits_per_param")
        print(
            f"| {test.removeprefix('test_')} | {config or ''} | {size} | {1e3 * t:.2f} "
            f"| {sizes[size] / t / 1e6:.0f} | {t / copy[size]:.1f} "
            f"| {'' if bpp is None else f'{bpp:.3f}'} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/latest.json")
