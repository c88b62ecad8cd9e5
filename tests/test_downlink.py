"""The downlink: chains of missed rounds, the full-model fallback, clients stay exact."""

from __future__ import annotations

import numpy as np
import pytest

from fedcodec import get_codec
from fedcodec.downlink import UNKNOWN, Downlink, DownlinkMessage, apply_downlink
from fedcodec.identity import Identity
from fedcodec.layout import Layout

N = 3000
LAYOUT = Layout((("w", (50, 50), "float32"), ("b", (500,), "float32")))


def run_rounds(
    codec: dict | None, participation: list[list[int]], history: int = 16
) -> tuple[Downlink, np.ndarray, dict[int, tuple[int, np.ndarray]], list[int]]:
    """Server targets drift each round; simulated clients apply what they receive."""
    rng = np.random.default_rng(1)
    down = Downlink(get_codec(codec) if codec else None, 7, layout=LAYOUT, history=history)
    server = np.zeros(N, np.float32)
    target = server.copy()
    clients = {k: (0, server.copy()) for k in range(6)}  # all hold round 0 (shared seed)
    sizes = []
    for r, sampled in enumerate(participation, start=1):
        target = target + rng.normal(scale=0.1, size=N).astype(np.float32)
        down.advance(server, r, target)
        total = 0
        for k in sampled:
            msg = down.message(k, r)
            total += msg.nbytes
            held_round, held = clients[k]
            got = apply_downlink(held, held_round, msg, down.codec, seed=7, layout=LAYOUT)
            np.testing.assert_array_equal(got, server)  # bit for bit what the server holds
            clients[k] = (r, got)
            down.delivered(k, r)
        sizes.append(total)
    return down, server, clients, sizes


def test_every_client_holds_the_servers_reference_exactly() -> None:
    rounds = [[0, 1], [1, 2], [3], [0, 4], [1, 2, 5], [0, 3]]
    _down, server, _, sizes = run_rounds({"id": "rdq", "bits_per_param": 2.0}, rounds)
    full = len(Identity().encode_vector(server, layout=LAYOUT))
    assert all(0 < s < full * len(k) for s, k in zip(sizes, rounds, strict=True))


def test_a_client_that_missed_rounds_gets_their_payloads() -> None:
    down, _, _, _ = run_rounds({"id": "rdq", "bits_per_param": 2.0}, [[0], [1], [1], [2]])
    msg = down.message(0, 4)  # client 0 holds round 1's model
    assert msg.base_round == 1 and len(msg.payloads) == 3
    assert msg.payloads == [down.recent[r] for r in (2, 3, 4)]
    assert down.message(1, 4).base_round == 3  # client 1 took part in round 3


def test_full_model_where_the_chain_is_gone_longer_or_unknown() -> None:
    codec = {"id": "rdq", "bits_per_param": 2.0}
    down, server, _, _ = run_rounds(codec, [[0], [1], [1], [2]], history=2)
    assert down.message(0, 4).base_round is None  # rounds 2..4, only 3..4 kept
    assert down.message(1, 4).base_round == 3
    down.lost(1)
    assert down.held[1] == UNKNOWN and down.message(1, 4).base_round is None
    full = down.message(1, 4)
    assert apply_downlink(None, UNKNOWN, full, down.codec, seed=7, layout=LAYOUT).tobytes() == (
        server.tobytes()
    )
    # a near-lossless codec's chain of 3 rounds is larger than the model: full model
    down, _, _, _ = run_rounds({"id": "fp16"}, [[0], [1], [1], [2]])
    msg = down.message(0, 4)
    assert msg.base_round is None and len(msg.payloads) == 1
    assert down.message(1, 4).base_round == 3  # one fp16 round is smaller


def test_without_a_codec_everyone_gets_the_full_model() -> None:
    down, server, _, sizes = run_rounds(None, [[0, 1], [2], [0]])
    full = len(Identity().encode_vector(server, layout=LAYOUT))
    assert sizes == [2 * full, full, full]
    assert down.recent == {}


def test_wrong_base_and_malformed_messages_raise() -> None:
    down, server, _clients, _ = run_rounds({"id": "rdq", "bits_per_param": 2.0}, [[0], [0]])
    with pytest.raises(ValueError, match="holds round"):
        apply_downlink(server, 0, DownlinkMessage(3, 1, [b""]), down.codec, seed=7)
    with pytest.raises(ValueError, match="wrong number"):
        apply_downlink(server, 1, DownlinkMessage(3, 1, [down.recent[2]]), down.codec, seed=7)
    with pytest.raises(ValueError):  # DecodeError is a ValueError
        apply_downlink(server, 1, DownlinkMessage(2, 1, [b"junk"]), down.codec, seed=7)
    with pytest.raises(ValueError, match="advance"):
        down.message(0, 5)


def test_checkpoint_round_trip() -> None:
    down, _, _, _ = run_rounds({"id": "rdq", "bits_per_param": 2.0}, [[0, 2], [1], [2]])
    down.lost(5)
    again = Downlink(None, 0)
    again.load_arrays(down.to_arrays())
    assert again.held == down.held and again.recent == down.recent
