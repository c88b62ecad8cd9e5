"""torch helpers: state-dict updates, and the DDP communication hook in two processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="pip install 'fedcodec[torch]'")

import fedcodec  # noqa: E402
from fedcodec.torch import decode_state_dict, encode_state_dict, update_layout  # noqa: E402


def states() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    old = {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "bn.running_mean": torch.randn(8, generator=g).double(),
        "bn.num_batches_tracked": torch.tensor(5),
        "fc.weight": torch.randn(10, 200, generator=g).half(),
        "fc.bias": torch.randn(10, generator=g).bfloat16(),
    }
    new = {
        k: (v + 0.01 * torch.randn(v.shape, generator=g).to(v.dtype))
        if v.is_floating_point()
        else v + 1
        for k, v in old.items()
    }
    return old, new


def test_state_dict_round_trip_keeps_names_and_dtypes() -> None:
    old, new = states()
    codec = fedcodec.get_codec({"id": "rdq", "bits_per_param": 6.0})
    payload = encode_state_dict(codec, new, old, seed=3)
    n_float = sum(v.numel() for v in old.values() if v.is_floating_point())
    assert 8 * len(payload) < 7.5 * n_float  # the integer entry adds a few bytes
    out = decode_state_dict(codec, payload, old, seed=3)
    assert list(out) == list(old)
    for k, v in out.items():
        assert v.dtype == old[k].dtype and v.shape == old[k].shape, k
    assert int(out["bn.num_batches_tracked"]) == int(new["bn.num_batches_tracked"])  # sent
    for k in ("conv.weight", "bn.running_mean", "fc.weight"):
        delta, got = (new[k] - old[k]).double(), (out[k] - old[k]).double()
        assert float(((delta - got) ** 2).sum() / (delta**2).sum()) < 0.05, k


def test_identity_codec_gives_the_exact_float32_update() -> None:
    old, new = states()
    codec = fedcodec.get_codec({"id": "identity"})
    out = decode_state_dict(codec, encode_state_dict(codec, new, old), old)
    expected = old["conv.weight"].float() + (new["conv.weight"] - old["conv.weight"]).float()
    assert torch.equal(out["conv.weight"], expected)
    layout = update_layout(old)
    floats = {k: v for k, v in new.items() if v.is_floating_point()}  # a bare codec payload
    vec = fedcodec.decode(encode_state_dict(codec, floats, old))
    assert vec.size == layout.size == sum(v.numel() for v in old.values() if v.is_floating_point())


def test_state_dict_payload_checks_the_layout() -> None:
    old, new = states()
    codec = fedcodec.get_codec({"id": "rdq", "bits_per_param": 2.0})
    payload = encode_state_dict(codec, new, old)
    other = dict(old)
    other["fc.bias"] = torch.zeros(11, dtype=torch.bfloat16)
    with pytest.raises(fedcodec.DecodeError, match="layout"):
        decode_state_dict(codec, payload, other)
    with pytest.raises(ValueError, match="shape"):
        encode_state_dict(codec, new, other)
    with pytest.raises(KeyError, match="missing"):
        encode_state_dict(codec, new, {})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ddp(tmp_path: Path, codec: dict[str, object], error_feedback: bool) -> list[dict]:
    port = _free_port()
    worker = Path(__file__).parent / "ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(worker),
                str(r),
                str(port),
                json.dumps(codec),
                "1" if error_feedback else "0",
                str(tmp_path / f"rank{r}.json"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(2)
    ]
    try:
        for p in procs:
            out, _ = p.communicate(timeout=300)
            assert p.returncode == 0, out.decode(errors="replace")[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize(
    ("codec", "error_feedback", "max_bits"),
    [
        ({"id": "rdq", "bits_per_param": 2.0}, False, 2.6),
        ({"id": "topk", "fraction": 0.05}, True, 3.2),
    ],
    ids=["rdq-2bit", "topk-5pct-ef"],
)
def test_ddp_hook_trains_two_gloo_processes(
    tmp_path: Path, codec: dict[str, object], error_feedback: bool, max_bits: float
) -> None:
    r0, r1 = run_ddp(tmp_path, codec, error_feedback)
    # DDP's invariant: both ranks decode the same payloads, so they hold the same model
    np.testing.assert_array_equal(r0["params"], r1["params"])
    for r in (r0, r1):
        assert r["losses"][-1] < 0.5 * r["losses"][0], r["losses"][::10]
        assert r["accuracy"] > 0.8
    # bytes exchanged are the payloads' sizes, as each side saw them
    assert r0["bytes_received"] == r1["bytes_sent"] and r1["bytes_received"] == r0["bytes_sent"]
    for rank, r in enumerate((r0, r1)):
        assert sum(sizes[rank] for _, _, sizes in r["log"]) == r["bytes_sent"]
    assert r0["log"] == r1["log"]  # the same sizes logged on both ranks
    bits_per_param = 8 * r0["bytes_sent"] / (r0["steps"] * r0["numel"])
    assert bits_per_param < max_bits  # vs 32 for plain all-reduce


def test_ddp_bucket_layout_follows_the_bucket_parameters() -> None:
    """The hook hands the codec its bucket's tensors (the context coder then codes the
    weight matrices with their row/column structure), and nothing it cannot vouch for."""
    from fedcodec.torch import _bucket_layout

    class Bucket:
        def __init__(self, params: list[torch.Tensor]) -> None:
            self._params = params

        def parameters(self) -> list[torch.Tensor]:
            return self._params

    w, b = torch.zeros(8, 5), torch.zeros(8)
    layout = _bucket_layout(Bucket([w, b]), 48)
    assert layout is not None and [e[1] for e in layout.entries] == [(8, 5), (8,)]
    assert _bucket_layout(Bucket([w, b]), 50) is None  # sizes that do not add up
    assert _bucket_layout(object(), 48) is None  # a bucket without parameters()
    # with its layout, a bucket's weight matrix is context-coded as a matrix
    from fedcodec.tools.sample_updates import structured_matrix

    big = _bucket_layout(Bucket([torch.zeros(60, 40), torch.zeros(60)]), 2460)
    assert big is not None
    x = np.concatenate([structured_matrix(60, 40, zero_every=3).ravel(), np.zeros(60, np.float32)])
    codec = fedcodec.RDQ(nmse=0.05)
    levels = codec.decode_levels(codec.encode_vector(x, layout=big))
    assert levels.coder == "ctx-stream" and levels.tensors is not None
    assert levels.tensors.tolist() == [[60, 40], [1, 60]]


# -- integer entries travel exactly (issue 24, item 6) --------------------------------------
def bn_states() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """An old and a new state of a small Conv-BatchNorm model, from fixed numbers."""
    rng = np.random.default_rng(24)

    def t(*shape: int) -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))

    old = {"conv.weight": t(8, 3, 3, 3), "bn.weight": t(8), "bn.bias": t(8),
           "bn.running_mean": t(8), "bn.running_var": t(8).abs(),
           "bn.num_batches_tracked": torch.tensor(40, dtype=torch.int64),
           "mask": torch.from_numpy(rng.random(8) < 0.5)}  # fmt: skip
    new = {k: (v + 0.01 * t(*v.shape) if v.is_floating_point() else v) for k, v in old.items()}
    new["bn.num_batches_tracked"] = torch.tensor(46, dtype=torch.int64)
    new["mask"] = ~old["mask"]
    return old, new


STATE_FIXTURE = Path(__file__).parent / "fixtures" / "state_dict_bn.bin"
STATE_CONFIG = {"id": "rdq", "bits_per_param": 2.0}


def test_integer_buffers_travel_exactly() -> None:
    old, new = bn_states()
    codec = fedcodec.get_codec(STATE_CONFIG)
    payload = encode_state_dict(codec, new, old, seed=3)
    assert payload[:4] == b"FEDS"
    restored = decode_state_dict(codec, payload, old, seed=3)
    assert list(restored) == list(old)
    assert restored["bn.num_batches_tracked"].dtype == torch.int64
    assert int(restored["bn.num_batches_tracked"]) == 46  # the new value, not the old 40
    assert torch.equal(restored["mask"], new["mask"])
    err = (restored["conv.weight"] - new["conv.weight"]).pow(2).mean()
    assert float(err) < float((new["conv.weight"] - old["conv.weight"]).pow(2).mean())


def test_state_dict_message_golden_bytes() -> None:
    """The message's bytes are fixed (docs/format.md, "State-dict messages")."""
    old, new = bn_states()
    codec = fedcodec.get_codec(STATE_CONFIG)
    payload = encode_state_dict(codec, new, old, seed=3)
    assert payload == STATE_FIXTURE.read_bytes()
    restored = decode_state_dict(codec, STATE_FIXTURE.read_bytes(), old, seed=3)
    assert int(restored["bn.num_batches_tracked"]) == 46


def test_a_float_only_state_is_the_codec_payload_as_before() -> None:
    old, new = bn_states()
    old = {k: v for k, v in old.items() if v.is_floating_point()}
    new = {k: v for k, v in new.items() if v.is_floating_point()}
    codec = fedcodec.get_codec(STATE_CONFIG)
    payload = encode_state_dict(codec, new, old, seed=3)
    assert payload[:4] == b"FEDC"
    vector = torch.cat([(new[k] - old[k]).reshape(-1) for k in old]).numpy()
    assert payload == codec.encode_vector(vector, layout=update_layout(new), seed=3)


def test_a_bare_payload_keeps_the_old_integer_entries() -> None:
    """Payloads written before state-dict messages still decode."""
    old, new = bn_states()
    codec = fedcodec.get_codec(STATE_CONFIG)
    floats = {k: v for k, v in new.items() if v.is_floating_point()}
    vector = torch.cat([(floats[k] - old[k]).reshape(-1) for k in floats]).numpy()
    bare = codec.encode_vector(vector, layout=update_layout(new), seed=3)
    restored = decode_state_dict(codec, bare, old, seed=3)
    assert int(restored["bn.num_batches_tracked"]) == 40


def test_damaged_state_dict_messages_raise_decode_error() -> None:
    old, new = bn_states()
    codec = fedcodec.get_codec(STATE_CONFIG)
    payload = encode_state_dict(codec, new, old, seed=3)
    for n in range(0, len(payload), 7):  # truncations
        with pytest.raises(fedcodec.DecodeError):
            decode_state_dict(codec, payload[:n], old, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(50):  # byte flips (the checksum catches them)
        damaged = bytearray(payload)
        damaged[int(rng.integers(len(damaged)))] ^= int(rng.integers(1, 256))
        with pytest.raises(fedcodec.DecodeError):
            decode_state_dict(codec, bytes(damaged), old, seed=3)
    other = dict(old)
    other["bn.num_batches_tracked"] = torch.tensor([1, 2], dtype=torch.int64)
    with pytest.raises(fedcodec.DecodeError, match="does not match"):
        decode_state_dict(codec, payload, other, seed=3)
    fewer = {k: v for k, v in old.items() if k != "mask"}
    with pytest.raises(fedcodec.DecodeError, match="integer entries"):
        decode_state_dict(codec, payload, fewer, seed=3)


def test_the_mapping_path_hints_at_encode_state_dict() -> None:
    """``codec.encode(model.state_dict())`` (the README's mapping path) with a BatchNorm
    buffer names the helper that handles it."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    codec = fedcodec.get_codec({"id": "rdq"})
    with pytest.raises(TypeError, match=r"torch tensor of dtype torch\.int64.*encode_state_dict"):
        codec.encode(model.state_dict())
