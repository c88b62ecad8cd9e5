"""Error of one client's update and of the round's mean at 0.1 bit/param (issue 25).

Trains Shakespeare's ``lstm_small`` for 12 rounds (10 clients a round, seed 0) keeping the
raw updates of rounds 1 and 12, then codes each round's 10 updates with every codec at a
tenth of a bit (each client its own seed, as in training) and reports, per round: the mean
client NMSE ‖x̂ − x‖² / ‖x‖², the NMSE of the decoded mean against the true mean, the
measured bits/param, and for the unbiased codecs the NMSE of the mean of 200 decodings of
one update (bias: about the client NMSE / 200 for an unbiased codec).

Run: python bench/lowbit_nmse.py      (about a minute; writes bench/results/lowbit_nmse.json)
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
from fedcodec.tools.frontier import machine_info

RESULTS = Path(__file__).parent / "results"
CODECS: list[dict[str, Any]] = [
    {"id": "eden", "bits": 0.1},
    {"id": "rdq", "bits_per_param": 0.1},
    {"id": "rdq", "bits_per_param": 0.1, "rounding": "stochastic"},
    {"id": "rdq", "bits_per_param": 0.1, "rounding": "dither"},
    {"id": "rdq_unbiased", "bits_per_param": 0.1},
]
BIAS_DRAWS = 200


def nmse(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.sum((a64 - b64) ** 2) / np.sum(b64 * b64))


def measure(config: dict[str, Any], updates: list[np.ndarray], layout: Any) -> dict[str, Any]:
    codec = fedcodec.get_codec(config)
    decoded, client, bits = [], [], []
    for i, x in enumerate(updates):
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
        "bits_per_param": float(np.mean(bits)),
    }


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
        with np.load(Path(d) / "updates.npz") as z:
            saved = {k: z[k] for k in z.files}
    rows = []
    for rnd in sorted({int(k.split("_")[0][1:]) for k in saved}):
        updates = [v for k, v in saved.items() if k.startswith(f"r{rnd}_")]
        for config in CODECS:
            row = {"round": rnd, "codec": config, **measure(config, updates, layout)}
            unbiased = config["id"] in ("eden", "rdq_unbiased") or config.get("rounding") in (
                "stochastic",
                "dither",
            )
            row["bias_nmse"] = bias(config, updates[0], layout) if unbiased else None
            rows.append(row)
            print(json.dumps(row))
    doc = {"rows": rows, "bias_draws": BIAS_DRAWS, "machine": machine_info()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lowbit_nmse.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
