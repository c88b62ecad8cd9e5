"""``rdq_unbiased``: unbiased over the shared rotation, at its rate, below EDEN's error."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
from common import FIXTURES, expect_decode_error, with_crc

import fedcodec
from fedcodec import DecodeError, container
from fedcodec.rdq_unbiased import RDQUnbiased, tensor_blocks


def lstm_like(seed: int = 0, scale: float = 1e-3) -> dict[str, np.ndarray]:
    """A model update with tensors of very different scales (odd sizes: several rotation
    blocks each), heavy-tailed inside (Student-t with 3 degrees of freedom)."""
    rng = np.random.default_rng(seed)
    shapes = {"embed": (78, 8), "w_ih": (256, 8), "w_hh": (256, 64), "b": (256,),
              "out": (78, 64), "out_b": (78,)}  # fmt: skip
    scales = {"embed": 0.3, "w_ih": 0.5, "w_hh": 0.2, "b": 1.0, "out": 2.0, "out_b": 5.0}
    return {
        k: (rng.standard_t(3, size=s) * scales[k] * scale).astype(np.float32)
        for k, s in shapes.items()
    }


def flat(update: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([v.ravel() for v in update.values()])


def roundtrip(codec: fedcodec.Codec, update: dict[str, np.ndarray], seed: int) -> np.ndarray:
    layout = fedcodec.flatten(update)[1]
    return codec.decode(codec.encode(update, seed=seed), seed=seed, layout=layout).ravel()


def mean_error(codec: fedcodec.Codec, update: dict[str, np.ndarray], draws: int) -> tuple:
    """(NMSE of the mean of ``draws`` decodings, mean NMSE of one decoding)."""
    x = flat(update).astype(np.float64)
    total, single = np.zeros_like(x), []
    for s in range(draws):
        y = roundtrip(codec, update, s).astype(np.float64)
        total += y
        single.append(float(np.sum((y - x) ** 2) / np.sum(x * x)))
    mean = total / draws
    return float(np.sum((mean - x) ** 2) / np.sum(x * x)), float(np.mean(single))


def test_the_mean_of_many_rounds_converges_to_the_update() -> None:
    """Unbiased: the mean of N decodings (independent seeds) has the error of the variance
    alone, NMSE ≈ one decoding's / N. Nearest rounding (RDQ at the same rate) keeps its
    bias: the same control fails the check."""
    update = lstm_like()
    draws = 200
    bias_nmse, single = mean_error(RDQUnbiased(bits_per_param=0.1), update, draws)
    assert bias_nmse < 2.0 * single / draws
    biased, biased_single = mean_error(fedcodec.RDQ(bits_per_param=0.1), update, 20)
    assert biased > 2.0 * biased_single / 20


def test_the_payload_lands_at_the_target_and_never_above() -> None:
    update = lstm_like(seed=1)
    n = flat(update).size
    for target in (0.05, 0.1, 0.3, 1.0):
        bits = 8 * len(RDQUnbiased(bits_per_param=target).encode(update, seed=3)) / n
        assert 0.97 * target <= bits <= target, (target, bits)


def test_half_of_edens_error_at_a_tenth_of_a_bit() -> None:
    """One decoding's NMSE against EDEN at 0.1 bit (whose payload is ~10 % larger) on the
    same update: the bit allocation over blocks of different RMS pays."""
    update = lstm_like(seed=2)
    _, ours = mean_error(RDQUnbiased(bits_per_param=0.1), update, 8)
    _, eden = mean_error(fedcodec.get_codec({"id": "eden", "bits": 0.1}), update, 8)
    assert ours < 0.5 * eden, (ours, eden)


def test_blocks_follow_the_tensors() -> None:
    blocks = tensor_blocks([624, 78])
    assert [(t, b - a) for t, a, b in blocks] == [
        (0, 512), (0, 64), (0, 32), (0, 16), (1, 64), (1, 8), (1, 4), (1, 2),
    ]  # fmt: skip
    assert blocks[-1][2] == 702


def test_a_tiny_update_gets_the_smallest_payload() -> None:
    x = np.array([1.0, -2.0, 3.0], np.float32)
    codec = RDQUnbiased(bits_per_param=0.1)
    y = codec.decode(codec.encode(x, seed=1), seed=1)
    assert y.shape == (3,) and np.isfinite(y).all()
    assert float(np.dot(x, y)) == pytest.approx(float(np.dot(x, x)), rel=1e-3)


def test_all_zero_and_zero_tensors() -> None:
    update = lstm_like(seed=4)
    update["w_hh"][:] = 0.0
    codec = RDQUnbiased()
    y = roundtrip(codec, update, 5)
    start = sum(v.size for v in list(update.values())[:2])
    assert not y[start : start + update["w_hh"].size].any()
    zero = np.zeros(1000, np.float32)
    assert not codec.decode(codec.encode(zero, seed=1), seed=1).any()


def test_the_seed_is_checked() -> None:
    x = lstm_like()["w_hh"]
    codec = RDQUnbiased()
    payload = codec.encode(x, seed=11)
    with pytest.raises(DecodeError, match="seed"):
        codec.decode(payload, seed=12)
    with pytest.raises(ValueError, match="seed"):
        codec.encode(x)


def test_bad_configs_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="bits_per_param"):
        RDQUnbiased(bits_per_param=0)
    with pytest.raises(ValueError, match="rounding_offset"):
        RDQUnbiased(rounding_offset=0.7)
    with pytest.raises(ValueError, match="per_tensor"):
        RDQUnbiased(per_tensor="no")  # type: ignore[arg-type]


def test_one_rotation_for_the_whole_update() -> None:
    """per_tensor=False rotates the update as one vector: the payload lists one tensor,
    decodes with the layout, stays unbiased, and moves error between tensors (the small,
    large-valued ones get less of it) without changing the total much."""
    update = lstm_like(3)
    x = flat(update).astype(np.float64)
    sizes = [v.size for v in update.values()]
    bounds = np.cumsum([0, *sizes])
    per_tensor: dict[bool, np.ndarray] = {}
    total: dict[bool, float] = {}
    for each in (True, False):
        codec = RDQUnbiased(bits_per_param=0.1, per_tensor=each)
        payload = codec.encode(update, seed=5)
        count = container.unpack(payload).params[1]  # varint tensor count, after the version
        assert count == (len(update) if each else 1)
        assert 8 * len(payload) <= 0.1 * x.size
        errors, energies = np.zeros(len(sizes)), np.zeros(len(sizes))
        for s in range(20):
            y = roundtrip(codec, update, s).astype(np.float64)
            for t, (a, b) in enumerate(itertools.pairwise(bounds)):
                errors[t] += np.sum((y[a:b] - x[a:b]) ** 2)
                energies[t] += np.sum(x[a:b] ** 2)
        per_tensor[each] = errors / energies
        total[each] = float(errors.sum() / energies.sum())
    assert 0.7 < total[False] / total[True] < 1.4
    # out_b (78 values at 5x) gets less error as part of the whole than on its own
    assert per_tensor[False][-1] < per_tensor[True][-1]
    bias, single = mean_error(RDQUnbiased(bits_per_param=0.1, per_tensor=False), update, 150)
    assert bias < 3 * single / 150  # unbiased: the mean's error is the variance's alone


def test_malformed_parameters_raise_decode_error() -> None:
    update = lstm_like(seed=6)
    codec = RDQUnbiased(bits_per_param=0.3)
    payload = codec.encode(update, seed=2)
    env = container.unpack(payload)
    start = payload.index(env.params)
    for i in range(len(env.params)):
        for value in (0x00, 0xFF, env.params[i] ^ 0x01):
            mutated = bytearray(payload)
            mutated[start + i] = value
            expect_decode_error(codec, with_crc(bytes(mutated)), seed=2)
    for cut in range(1, len(payload), 7):
        with pytest.raises(DecodeError):
            codec.decode(payload[:cut], seed=2)
    # a version this decoder does not know
    bad = bytearray(payload)
    bad[start] = 9
    with pytest.raises(DecodeError, match="version"):
        codec.decode(with_crc(bytes(bad)), seed=2)
    # sizes that do not add up
    params = bytes([1]) + bytes([1]) + bytes([5]) + struct.pack("<d", 1.0)
    with pytest.raises(DecodeError):
        codec.decode(container.pack("rdq_unbiased", np.dtype(np.float32), (4,), 0, params, b""),
                     seed=2)  # fmt: skip


MAPPING_FIXTURE = "rdq_unbiased_mapping"


def test_golden_mapping_payload() -> None:
    """A model-shaped update (several tensors, several blocks each), byte for byte."""
    update = lstm_like(seed=8)
    codec = RDQUnbiased(bits_per_param=0.2)
    layout = fedcodec.flatten(update)[1]
    payload = (FIXTURES / f"{MAPPING_FIXTURE}.bin").read_bytes()
    expected = np.load(FIXTURES / f"{MAPPING_FIXTURE}.decoded.npy")
    np.testing.assert_array_equal(codec.decode(payload, seed=9, layout=layout), expected)
    assert codec.encode(update, seed=9) == payload


def make_mapping_fixture() -> None:
    update = lstm_like(seed=8)
    codec = RDQUnbiased(bits_per_param=0.2)
    payload = codec.encode(update, seed=9)
    (FIXTURES / f"{MAPPING_FIXTURE}.bin").write_bytes(payload)
    layout = fedcodec.flatten(update)[1]
    np.save(
        FIXTURES / f"{MAPPING_FIXTURE}.decoded.npy", codec.decode(payload, seed=9, layout=layout)
    )


def test_peak_memory_is_a_small_multiple_of_the_update() -> None:
    """The rotated update, its scaled copy and the sorted blocks of the rate search; the
    decoder writes levels into the output and scales them there."""
    from test_memory import peak_bytes

    from fedcodec.tools.sample_updates import laplace

    x = laplace(1_000_000, seed=0)
    codec = RDQUnbiased()
    codec.decode(codec.encode(x, seed=1), seed=1)  # compile first
    enc_peak, payload = peak_bytes(codec.encode, x, seed=1)
    dec_peak, _ = peak_bytes(codec.decode, payload, seed=1)
    assert enc_peak <= 4.0 * x.nbytes
    assert dec_peak <= 1.75 * x.nbytes


def test_the_rate_search_histogram_matches_the_levels_sent() -> None:
    """The search's histogram (from sorted blocks, without quantizing) against a plain
    count of the levels the payload carries."""
    from fedcodec.rdq_unbiased import _estimated_histogram

    rng = np.random.default_rng(3)
    blocks = [rng.standard_t(3, size=m).astype(np.float32) * s
              for m, s in ((512, 1.0), (64, 0.01), (16, 5.0), (8, 0.0))]  # fmt: skip
    live = np.array([b.any() for b in blocks])
    for factor_scale in (0.3, 1.0, 4.0):
        factor = np.array([factor_scale / (np.sqrt(np.mean(b.astype(np.float64) ** 2)) or 1.0)
                           for b in blocks])  # fmt: skip
        hist = _estimated_histogram([np.sort(b) for b in blocks], live, factor, 0.5)
        hk = (hist.size - 1) // 2
        want = np.zeros_like(hist)
        for b, f, is_live in zip(blocks, factor, live, strict=True):
            z = b.astype(np.float64) * f
            q = (np.floor(np.abs(z) + 0.5) * np.sign(z)).astype(np.int64)
            if is_live and not q.any():
                j = int(np.argmax(np.abs(z)))
                q[j] = 1 if z[j] > 0 else -1
            want += np.bincount(np.clip(q, -hk, hk) + hk, minlength=hist.size)
        np.testing.assert_array_equal(hist, want)
