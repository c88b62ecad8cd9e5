"""Every codec on the same real updates: bits/param and NMSE, and RDQ at matched NMSE.

Run: python bench/compare_codecs.py   (prints Markdown tables)

The updates are real: the update of each of 3 clients after one local epoch of a
64→1536→10 MLP on its tenth of scikit-learn's digits (115,210 params each). For each
baseline point, "RDQ bits at this NMSE" is RDQ(nmse=...) on the same update, and the last
column is how many times more bits the baseline needs. Values are means over the clients.
"""

from __future__ import annotations

import numpy as np

import fedcodec
from fedcodec.tools.sample_updates import digits_mlp_update

BASELINES = [
    {"id": "identity"},
    {"id": "fp16"},
    {"id": "bf16"},
    {"id": "int8"},
    {"id": "topk", "fraction": 0.01},
    {"id": "topk", "fraction": 0.05},
    {"id": "topk", "fraction": 0.2},
    {"id": "qsgd", "num_levels": 1, "bucket_size": 512},
    {"id": "qsgd", "num_levels": 4, "bucket_size": 512},
    {"id": "qsgd", "num_levels": 16, "norm": "max", "bucket_size": 512},
    {"id": "drive"},
    {"id": "drive", "scale": "mse"},
    {"id": "eden", "bits": 1},
    {"id": "eden", "bits": 2},
    {"id": "eden", "bits": 4},
    {"id": "threelc"},
    {"id": "threelc", "sparsity": 1.5},
]
RDQ_POINTS = [{"id": "rdq", "bits_per_param": b} for b in (0.25, 0.5, 1.0, 2.0, 4.0)] + [
    {"id": "rdq", "bits_per_param": 1.0, "coder": "auto"},
    {"id": "rdq", "bits_per_param": 1.0, "levels": "uniform", "coder": "rleg"},
]


def main() -> None:
    updates = [
        fedcodec.flatten(digits_mlp_update(hidden=1536, epochs=1, client=c))[0] for c in range(3)
    ]

    def mean_measure(config: dict, **kw: float) -> dict[str, float]:
        runs = [fedcodec.measure(fedcodec.get_codec({**config, **kw}), x, seed=1) for x in updates]
        return {k: float(np.mean([r[k] for r in runs])) for k in ("bits_per_param", "nmse")}

    print("| codec | config | bits/param | NMSE | RDQ bits/param at this NMSE | × RDQ |")
    print("|---|---|---:|---:|---:|---:|")
    for config in BASELINES:
        m = mean_measure(config)
        args = {k: v for k, v in config.items() if k != "id"}
        if 0 < m["nmse"] < 1:
            r = mean_measure({"id": "rdq"}, nmse=m["nmse"])
            ratio = f"{m['bits_per_param'] / r['bits_per_param']:.1f}"
            rdq = f"{r['bits_per_param']:.3f}"
        else:
            ratio = rdq = "–"
        print(
            f"| {config['id']} | `{args or ''}` | {m['bits_per_param']:.3f} | {m['nmse']:.4g} "
            f"| {rdq} | {ratio} |"
        )
    for config in RDQ_POINTS:
        m = mean_measure(config)
        args = {k: v for k, v in config.items() if k != "id"}
        print(f"| rdq | `{args}` | {m['bits_per_param']:.3f} | {m['nmse']:.4g} | | |")


if __name__ == "__main__":
    main()
