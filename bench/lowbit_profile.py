"""Where a tenth of a bit's error lands, tensor by tensor, and what last round predicts.

Trains Shakespeare's ``lstm_small`` for 60 rounds (10 clients a round, seed 0, server lr
1.0, uncompressed) keeping every round's raw client updates, then:

1. **Prediction from the last round** (a lever for issue 25: code each update relative to
   what both sides know): for every round, the mean over its clients of the share of a
   client update's energy along the previous round's mean update (the best a client could
   subtract with one scale), and along the server momentum (β = 0.9) of the past rounds'
   means; and the energy of the round's mean as a share of its clients' mean energy.
2. **The error per tensor** at 0.1 bit/param on rounds 30 and 60: each client update coded
   by EDEN (``bits=0.1``) and by ``rdq_unbiased`` rotating each tensor on its own
   (``per_tensor=True``, the default) or the whole update as one vector
   (``per_tensor=False``), each client its own seed; per tensor, the mean over the clients
   of ‖x̂_t − x_t‖² / ‖x_t‖²; overall the client NMSE and the NMSE of the round's mean.

Run: python bench/lowbit_profile.py   (a few minutes; writes bench/results/lowbit_profile.json)
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import fedcodec
from fedcodec.fl.process import update_nmse as nmse
from fedcodec.tools.frontier import machine_info

RESULTS = Path(__file__).parent / "results"
ROUNDS = 60
CODED_ROUNDS = (30, 60)
CODECS: list[dict[str, Any]] = [
    {"id": "eden", "bits": 0.1},
    {"id": "rdq_unbiased", "bits_per_param": 0.1},
    {"id": "rdq_unbiased", "bits_per_param": 0.1, "per_tensor": False},
]


def prediction(rounds: dict[int, list[np.ndarray]]) -> list[dict[str, Any]]:
    rows = []
    prev: np.ndarray | None = None
    momentum: np.ndarray | None = None
    for r in sorted(rounds):
        updates = [u.astype(np.float64) for u in rounds[r]]
        mean = np.mean(updates, axis=0)
        row: dict[str, Any] = {
            "round": r,
            "mean_energy_share": float(mean @ mean / np.mean([u @ u for u in updates])),
        }
        for name, p in (("previous_mean", prev), ("momentum", momentum)):
            if p is not None:
                unit = p / np.linalg.norm(p)
                row[f"explained_by_{name}"] = float(np.mean([(u @ unit) ** 2 / (u @ u)
                                                             for u in updates]))  # fmt: skip
        rows.append(row)
        prev = mean
        momentum = mean if momentum is None else 0.9 * momentum + mean
    return rows


def per_tensor(
    updates: list[np.ndarray], layout: fedcodec.Layout, config: dict[str, Any]
) -> dict[str, Any]:
    codec = fedcodec.get_codec(config)
    sizes = [int(np.prod(shape)) for _, shape, _ in layout.entries]
    bounds = np.cumsum([0, *sizes])
    errors, client, bits, decoded = [], [], [], []
    for i, x in enumerate(updates):
        payload = codec.encode(fedcodec.unflatten(x, layout), seed=100 + i)
        y = codec.decode(payload, seed=100 + i, layout=layout).reshape(-1)
        decoded.append(y)
        bits.append(8 * len(payload) / x.size)
        client.append(nmse(x, y))
        errors.append([nmse(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)])
    mean = np.mean(np.asarray(updates, np.float64), axis=0)
    return {
        "codec": config,
        "bits_per_param": float(np.mean(bits)),
        "client_nmse": float(np.mean(client)),
        "mean_nmse": nmse(mean, np.mean(np.asarray(decoded, np.float64), axis=0)),
        "tensor_nmse": dict(
            zip([n for n, _, _ in layout.entries], np.mean(errors, axis=0).tolist(), strict=True)
        ),
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "fedcodec.cli", "train", "--task", "shakespeare",
               "--rounds", str(ROUNDS), "--clients-per-round", "10", "--save-updates",
               str(ROUNDS), "--eval-every", "100", "--torch-threads", "1", "--out", d,
               "--no-progress"]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        layout = fedcodec.Layout.from_json(json.loads((Path(d) / "layout.json").read_text()))
        rounds: dict[int, list[np.ndarray]] = {}
        with np.load(Path(d) / "updates.npz") as z:
            for k in sorted(z.files):
                rounds.setdefault(int(k.split("_")[0][1:]), []).append(z[k])
    pred = prediction(rounds)
    for row in pred:
        if row["round"] % 10 == 0:
            print(json.dumps(row))
    coded = []
    for r in CODED_ROUNDS:
        for config in CODECS:
            row = {"round": r, **per_tensor(rounds[r], layout, config)}
            coded.append(row)
            print(json.dumps(row))
    doc = {
        "command": "python bench/lowbit_profile.py",
        "prediction": pred,
        "per_tensor": coded,
        "sizes": {n: int(np.prod(s)) for n, s, _ in layout.entries},
        "machine": machine_info(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lowbit_profile.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
