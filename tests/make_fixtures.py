"""Regenerate the golden payloads in tests/fixtures/ (only for a deliberate format change).

Run: python tests/make_fixtures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from test_baselines import BASELINE_FIXTURES, baseline_fixture_input
from test_rdq import FIXTURE_CASES, fixture_input

import fedcodec
from fedcodec import RDQ

FIXTURES = Path(__file__).parent / "fixtures"


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    for name, (config, seed) in FIXTURE_CASES.items():
        x = fixture_input(name)
        codec = RDQ(**config)
        payload = codec.encode(x, seed=seed)
        (FIXTURES / f"{name}.bin").write_bytes(payload)
        np.save(FIXTURES / f"{name}.input.npy", x)
        np.save(FIXTURES / f"{name}.decoded.npy", codec.decode(payload, seed=seed))
        print(f"{name}: {len(payload)} bytes")
    x = baseline_fixture_input()
    for name, (config, seed) in BASELINE_FIXTURES.items():
        codec = fedcodec.get_codec(config)
        payload = codec.encode(x, seed=seed)
        (FIXTURES / f"{name}.bin").write_bytes(payload)
        np.save(FIXTURES / f"{name}.input.npy", x)
        np.save(FIXTURES / f"{name}.decoded.npy", codec.decode(payload, seed=seed))
        print(f"{name}: {len(payload)} bytes")


if __name__ == "__main__":
    main()
