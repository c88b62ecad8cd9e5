"""Peak memory of encoding and decoding a 1M-param update, as a multiple of its size.

Run: python bench/memory.py   (tracemalloc sees every NumPy allocation)
"""

from __future__ import annotations

import json
import tracemalloc

from fedcodec import RDQ
from fedcodec.sample_updates import laplace

CONFIGS = [
    {"bits_per_param": 1.0},
    {"bits_per_param": 4.0},
    {"bits_per_param": 1.0, "coder": "rleg"},
    {"nmse": 0.01, "rotate": True, "rounding": "dither"},
    {"bits_per_param": 1.0, "ans_backend": "constriction"},
]


def main() -> None:
    x = laplace(1_000_000, seed=0)
    print("| config | encode peak / update | decode peak / update |")
    print("|---|---:|---:|")
    for config in CONFIGS:
        codec = RDQ(**config)  # type: ignore[arg-type]
        codec.decode(codec.encode(x, seed=1), seed=1)
        tracemalloc.start()
        payload = codec.encode(x, seed=1)
        enc = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        tracemalloc.start()
        codec.decode(payload, seed=1)
        dec = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"| `{json.dumps(config)}` | {enc / x.nbytes:.2f} | {dec / x.nbytes:.2f} |")


if __name__ == "__main__":
    main()
