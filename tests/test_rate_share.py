"""Uplink rates by examples (fedcodec.rate_share): the shares, the harness, Flower's mod."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fedcodec
from fedcodec import rate_share
from fedcodec.seeds import UPLINK, derive_seed


def test_the_mean_share_is_one_and_shares_are_clipped() -> None:
    sizes = [2, 3, 10, 23, 50, 120, 616]
    ref = rate_share.reference_examples(sizes)
    shares = [rate_share.example_share(n, ref) for n in sizes]
    assert np.mean(shares) == pytest.approx(1.0, abs=1e-9)
    assert min(shares) == rate_share.LOW and max(shares) <= rate_share.HIGH
    # unclipped, the reference is the mean size
    assert rate_share.reference_examples([10, 20, 30]) == pytest.approx(20.0)


def test_scaled_config_needs_a_rate_target() -> None:
    assert rate_share.scaled_config({"id": "eden", "bits": 0.1}, 3.0) == {
        "id": "eden",
        "bits": 0.30000000000000004,
    }
    with pytest.raises(ValueError, match="rate target"):
        rate_share.scaled_config({"id": "topk", "k": 3}, 2.0)


def test_the_harness_gives_each_client_its_share() -> None:
    from fedcodec.fl import Experiment, TrainConfig

    codec = {"id": "rdq_unbiased", "bits_per_param": 1.0}
    exp = Experiment(
        TrainConfig(task="digits", rounds=2, codec=codec, uplink_rate_by_examples=True)
    )
    process = exp.process
    sizes = [c.num_train for c in exp.data.clients]
    rates = [process.uplinks[k].bits_per_param for k in range(len(sizes))]  # type: ignore[attr-defined]
    assert np.mean(rates) == pytest.approx(1.0, abs=1e-9)
    order = np.argsort(sizes)
    assert np.all(np.diff(np.asarray(rates)[order]) >= 0)  # more examples, no fewer bits
    with pytest.raises(ValueError, match="error_feedback"):
        Experiment(
            TrainConfig(
                task="digits", codec=codec, uplink_rate_by_examples=True, error_feedback=True
            )
        )


def test_the_flower_mod_scales_the_rate_by_the_reply_examples() -> None:
    from flwr.app import (
        Array,
        ArrayRecord,
        ConfigRecord,
        Context,
        Message,
        MessageType,
        Metadata,
        MetricRecord,
        RecordDict,
    )

    from fedcodec.flower import REFERENCE_KEY, fedcodec_mod

    codec = fedcodec.get_codec({"id": "rdq_unbiased", "bits_per_param": 0.2})
    mod = fedcodec_mod(codec, seed=5, rate_by_examples=True)
    weights = np.zeros(20_000, np.float32)
    update = np.random.default_rng(0).laplace(size=20_000).astype(np.float32)
    sizes = {}
    for examples, reference in ((10, 10.0), (40, 10.0), (10, None)):
        ctxt = Context(run_id=1, node_id=7, node_config={"partition-id": 3},
                       state=RecordDict(), run_config={})  # fmt: skip
        config = {"server-round": 1} | ({} if reference is None else {REFERENCE_KEY: reference})
        content = RecordDict(
            {"arrays": ArrayRecord({"w": Array(weights)}), "config": ConfigRecord(config)}
        )
        meta = Metadata(1, "m", 0, 7, "", "", 0.0, 60.0, MessageType.TRAIN)

        def train(m: Any, c: Any, n: int = examples) -> Any:
            reply = {"arrays": ArrayRecord({"w": Array(weights + update)}),
                     "metrics": MetricRecord({"num-examples": n})}  # fmt: skip
            return Message(RecordDict(reply), reply_to=m)

        if reference is None:
            with pytest.raises(ValueError, match="reference_examples"):
                mod(Message(content, metadata=meta), ctxt, train)
            continue
        reply = mod(Message(content, metadata=meta), ctxt, train)
        payload = reply.content["arrays"]["fedcodec"].data
        decoded = fedcodec.decode(payload, seed=derive_seed(5, 1, 3, UPLINK))
        assert decoded.shape == update.shape
        sizes[examples] = 8 * len(payload) / update.size
    assert sizes[10] == pytest.approx(0.2, rel=0.03)  # share 1
    assert sizes[40] == pytest.approx(0.8, rel=0.03)  # share 4
