"""Where one encode of a 10M-param update spends its time (cProfile, kernels by name).

Run: python bench/profile_encode.py [config-json]
"""

from __future__ import annotations

import cProfile
import json
import pstats
import sys

import fedcodec
from fedcodec.tools.sample_updates import laplace


def main() -> None:
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {"bits_per_param": 1.0}
    x = laplace(10_000_000, seed=0)
    codec = fedcodec.RDQ(**config)
    codec.encode(x)  # compile and warm up
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(5):
        codec.encode(x)
    profiler.disable()
    stats = pstats.Stats(profiler).sort_stats("tottime")
    total = sum(v[2] for v in stats.stats.values()) / 5  # type: ignore[attr-defined]
    print(f"encode {1e3 * total:.1f} ms per call; by function (ms per call, calls per encode):")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:8]  # type: ignore[attr-defined]
    for (_, _, name), (_, ncalls, tottime, _, _) in rows:
        print(f"  {name:28s} {1e3 * tottime / 5:7.1f} ms  {ncalls / 5:5.1f}")


if __name__ == "__main__":
    main()
