"""Top-k (+ error feedback): selection, honest index coding, round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from common import check_config, check_encode_decode, check_mapping_round_trip, check_repr
from hypothesis import given
from hypothesis import strategies as st

import fedcodec
from fedcodec import ErrorFeedback, TopK, kernels
from fedcodec.container import unpack
from fedcodec.tools.sample_updates import digits_mlp_update, student_t


def ref_topk(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest |x|, ties to the lowest index (stable sort)."""
    order = np.argsort(-np.abs(x.astype(np.float64)), kind="stable")
    return np.sort(order[:k])


@given(st.lists(st.sampled_from([0.0, 1.0, -1.0, 2.0, 0.5, -3.0]), max_size=40), st.data())
def test_topk_kernel_matches_reference(values: list[float], data: st.DataObject) -> None:
    x = np.array(values, np.float32)
    k = data.draw(st.integers(0, x.size))
    index, kept = kernels.topk(x, k)
    np.testing.assert_array_equal(index, ref_topk(x, k))
    np.testing.assert_array_equal(kept, x[index])


@pytest.mark.parametrize(
    "config",
    [
        {"fraction": 0.01},
        {"fraction": 0.3},
        {"k": 1},
        {"k": 0},
        {"fraction": 1.0},
        {"fraction": 0.05, "value_dtype": "float16"},
    ],
)
def test_round_trip(config: dict) -> None:
    codec = TopK(**config)
    x = student_t(4000, seed=1).reshape(40, 100)
    out = check_encode_decode(codec, x)
    k = codec.num_kept(x.size)
    # exactly the k largest magnitudes, with their values (rounded to the value dtype), and
    # zeros elsewhere (student-t values have no ties)
    flat = x.reshape(-1)
    expected = np.zeros(x.size, np.float32)
    index = ref_topk(flat, k)
    expected[index] = flat[index].astype(codec.value_dtype).astype(np.float32)
    np.testing.assert_array_equal(out.reshape(-1), expected)
    assert np.count_nonzero(out) == k
    check_config(codec)
    check_mapping_round_trip(codec, {"a": x[:3], "b": x[3:]})


def test_repr_and_defaults() -> None:
    check_repr(TopK(), "TopK(fraction=0.01, k=None, value_dtype='float32')")
    assert TopK(fraction=0.001).num_kept(1000) == 1
    assert TopK(k=50).num_kept(10) == 10
    with pytest.raises(ValueError, match="not both"):
        TopK(fraction=0.1, k=3)


def gamma_bits(v: np.ndarray) -> int:
    return int(sum(2 * int(g).bit_length() - 1 for g in v))


@pytest.mark.parametrize("fraction", [0.001, 0.01, 0.1, 0.2, 0.5, 0.9])
def test_index_coding_is_the_cheapest_and_counted(fraction: float) -> None:
    import constriction

    from fedcodec.topk import bitmap_frequencies

    x = student_t(20_000, seed=5)
    codec = TopK(fraction=fraction)
    env = unpack(codec.encode(x))
    k = math.ceil(fraction * x.size)
    index = ref_topk(x, k)
    gaps = np.diff(index, prepend=-1)
    gap_bytes = (gamma_bits(gaps) + 7) // 8
    bitmap_bytes = (x.size + 7) // 8
    # the ANS-coded bitmap, written by constriction itself with the same model
    mask = np.zeros(x.size, np.int32)
    mask[index] = 1
    freq = bitmap_frequencies(k, x.size)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(mask, constriction.stream.model.Categorical(freq - 1.0, perfect=False))
    ans_words = coder.get_compressed()
    ans_bytes = 4 * ans_words.size
    assert len(env.body) == min(gap_bytes, bitmap_bytes, ans_bytes) + 4 * k
    flags = env.params[0]
    if ans_bytes < min(gap_bytes, bitmap_bytes):
        assert flags & 5 == 5
        assert bytes(env.body[:ans_bytes]) == ans_words.astype("<u4").tobytes()
    else:
        assert bool(flags & 1) == (bitmap_bytes <= gap_bytes)


def test_error_feedback_sends_everything_eventually() -> None:
    ef = ErrorFeedback(TopK(fraction=0.1))
    x = student_t(1000, seed=6)
    total = np.zeros_like(x)
    rounds = 60
    for _ in range(rounds):
        total += ef.codec.decode(ef.encode(x, key="client"))
    # sent + residual = rounds * x exactly (up to float32 rounding)
    np.testing.assert_allclose(total + ef.residuals["client"], rounds * x, rtol=1e-4, atol=1e-4)
    # the residual stays bounded: the mean of what was sent converges to x
    assert np.linalg.norm(total / rounds - x) < 0.1 * np.linalg.norm(x)


def test_error_feedback_keeps_clients_apart_and_restores() -> None:
    ef = ErrorFeedback(TopK(k=1))
    a = np.array([1.0, 0.9, 0.0], np.float32)
    b = np.array([0.0, 0.0, 2.0], np.float32)
    ef.encode(a, key="a")
    ef.encode(b, key="b")
    state = ef.state_dict()
    fresh = ErrorFeedback(TopK(k=1))
    fresh.load_state_dict(state)
    assert fresh.encode(a, key="a") == ef.encode(a, key="a")
    np.testing.assert_array_equal(fresh.residuals["b"], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="another codec"):
        ErrorFeedback(TopK(k=2)).load_state_dict(state)
    with pytest.raises(ValueError, match="elements"):
        ef.encode(np.ones(4, np.float32), key="a")


def test_error_feedback_with_mappings_and_rdq() -> None:
    update = digits_mlp_update(hidden=16, epochs=1)
    ef = ErrorFeedback(fedcodec.RDQ(bits_per_param=0.5))
    vec, layout = fedcodec.flatten(update)
    payload = ef.encode(update, key=1)
    decoded = ef.decode(payload, layout=layout)
    np.testing.assert_allclose(decoded + ef.residuals[1], vec, atol=1e-6)
