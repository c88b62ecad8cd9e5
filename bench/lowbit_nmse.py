"""Error of one client's update and of the round's mean at 0.1 bit/param (issue 25).

Trains Shakespeare's ``lstm_small`` for 12 rounds (10 clients a round, seed 0) keeping the
raw updates of rounds 1 and 12, then codes each round's 10 updates with every codec at a
tenth of a bit (each client its own seed, as in training) and reports, per round: the mean
client NMSE ‖x̂ − x‖² / ‖x‖², the NMSE of the decoded mean against the true mean (plain,
and weighted by the clients' training examples as FedAvg weights them), the measured
bits/param, and for the unbiased codecs the NMSE of the mean of 200 decodings of one
update (bias: about the client NMSE / 200 for an unbiased codec). Configs with
``"by_examples": true`` give each client the rate times its share of the examples
(:mod:`fedcodec.rate_share`, the reference from all clients' sizes, as
``--uplink-rate-by-examples`` does in training).

Run: python bench/lowbit_nmse.py      (a few minutes; writes bench/results/lowbit_nmse.json)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import fedcodec
from fedcodec import rate_share
from fedcodec.fl import Experiment, TrainConfig
from fedcodec.tools.frontier import machine_info

RESULTS = Path(__file__).parent / "results"
CODECS: list[dict[str, Any]] = [
    {"id": "eden", "bits": 0.1},
    {"id": "rdq", "bits_per_param": 0.1},
    {"id": "rdq", "bits_per_param": 0.1, "rounding": "stochastic"},
    {"id": "rdq", "bits_per_param": 0.1, "rounding": "dither"},
    {"id": "rdq_unbiased", "bits_per_param": 0.1},
    {"id": "rdq_unbiased", "bits_per_param": 0.1, "by_examples": True},
    {"id": "eden", "bits": 0.1, "by_examples": True},
]
BIAS_DRAWS = 200


def nmse(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.sum((a64 - b64) ** 2) / np.sum(b64 * b64))


def measure(
    config: dict[str, Any],
    updates: list[np.ndarray],
    layout: Any,
    shares: list[float],
    weights: np.ndarray,
) -> dict[str, Any]:
    config = {k: v for k, v in config.items() if k != "by_examples"}
    decoded, client, bits = [], [], []
    for i, x in enumerate(updates):
        codec = fedcodec.get_codec(rate_share.scaled_config(config, shares[i]))
        m = fedcodec.unflatten(x, layout)
        payload = codec.encode(m, seed=1000 + i)
        y = codec.decode(payload, seed=1000 + i, layout=layout).reshape(-1)
        decoded.append(y)
        client.append(nmse(y, x))
        bits.append(8 * len(payload) / x.size)
    mean = np.mean(updates, axis=0)
    return {
        "client_nmse": float(np.mean(client)),
        "mean_nmse": nmse(np.mean(decoded, axis=0), mean),
        "weighted_mean_nmse": weighted_nmse(decoded, updates, weights),
        "bits_per_param": float(np.mean(bits)),
    }


def weighted_nmse(decoded: list[np.ndarray], updates: list[np.ndarray], w: np.ndarray) -> float:
    est = sum(float(wk) * d.astype(np.float64) for wk, d in zip(w, decoded, strict=True))
    true = sum(float(wk) * u.astype(np.float64) for wk, u in zip(w, updates, strict=True))
    return nmse(np.asarray(est), np.asarray(true))


def bias(config: dict[str, Any], x: np.ndarray, layout: Any) -> float:
    codec = fedcodec.get_codec(config)
    m = fedcodec.unflatten(x, layout)
    total = np.zeros(x.size)
    for s in range(BIAS_DRAWS):
        total += codec.decode(codec.encode(m, seed=s), seed=s, layout=layout).reshape(-1)
    return nmse(total / BIAS_DRAWS, x)


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "fedcodec.cli", "train", "--task", "shakespeare",
               "--rounds", "12", "--clients-per-round", "10", "--save-updates", "2",
               "--eval-every", "100", "--torch-threads", "1", "--out", d,
               "--no-progress"]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        layout = fedcodec.Layout.from_json(json.loads((Path(d) / "layout.json").read_text()))
        config = json.loads((Path(d) / "config.json").read_text())
        fields = TrainConfig.__dataclass_fields__
        exp = Experiment(TrainConfig(**{k: v for k, v in config.items() if k in fields}))
        sizes = [c.num_train for c in exp.data.clients]
        reference = rate_share.reference_examples(sizes)
        with np.load(Path(d) / "updates.npz") as z:
            saved = {k: z[k] for k in z.files}
    rows = []
    for rnd in sorted({int(k.split("_")[0][1:]) for k in saved}):
        keys = [k for k in saved if k.startswith(f"r{rnd}_")]
        updates = [saved[k] for k in keys]
        examples = [sizes[int(k.split("_c")[1])] for k in keys]
        weights = np.asarray(examples, np.float64) / sum(examples)
        for config in CODECS:
            by = bool(config.get("by_examples"))
            shares = [rate_share.example_share(n, reference) if by else 1.0 for n in examples]
            row = {
                "round": rnd,
                "codec": config,
                **measure(config, updates, layout, shares, weights),
            }
            unbiased = config["id"] in ("eden", "rdq_unbiased") or config.get("rounding") in (
                "stochastic",
                "dither",
            )
            row["bias_nmse"] = bias(config, updates[0], layout) if unbiased and not by else None
            rows.append(row)
            print(json.dumps(row))
    doc = {"rows": rows, "bias_draws": BIAS_DRAWS, "machine": machine_info()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lowbit_nmse.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
