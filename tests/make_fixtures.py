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
from test_rdq_unbiased import make_mapping_fixture

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
    make_mapping_fixture()
    print("rdq_unbiased_mapping")
    frontier_expected()


def frontier_expected() -> None:
    """The deterministic part of a tiny `fedcodec frontier` run (tests/test_cli.py)."""
    import json
    import tempfile

    from test_cli import FRONTIER_CODECS, frontier_updates, strip

    from fedcodec.cli import main as cli_main

    with tempfile.TemporaryDirectory() as d:
        np.savez(Path(d) / "updates.npz", **frontier_updates())  # type: ignore[arg-type]
        argv = ["frontier", "--updates", f"{d}/updates.npz", "--codecs", FRONTIER_CODECS,
                "--name", "tiny", "--out", f"{d}/out"]  # fmt: skip
        assert cli_main(argv) == 0
        doc = json.loads((Path(d) / "out" / "frontier.json").read_text())
    (FIXTURES / "frontier_expected.json").write_text(json.dumps(strip(doc), indent=1) + "\n")
    print("frontier_expected.json")
    state_dict_fixture()


def state_dict_fixture() -> None:
    """The state-dict message of a Conv-BatchNorm update (needs torch)."""
    from test_torch import STATE_CONFIG, STATE_FIXTURE, bn_states

    from fedcodec.torch import encode_state_dict

    old, new = bn_states()
    payload = encode_state_dict(fedcodec.get_codec(STATE_CONFIG), new, old, seed=3)
    STATE_FIXTURE.write_bytes(payload)
    print(f"{STATE_FIXTURE.name}: {len(payload)} bytes")


if __name__ == "__main__":
    main()
