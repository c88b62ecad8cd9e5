"""EDEN with a fractional bit width: the paper's seeded mix of ⌊b⌋ and ⌈b⌉ bits."""

from __future__ import annotations

import numpy as np
import pytest

import fedcodec
from fedcodec import container
from fedcodec.eden import high_mask, split_bits

X = np.random.default_rng(0).standard_normal(70_000).astype(np.float32)  # two blocks


@pytest.mark.parametrize("bits", [0.1, 0.25, 0.5, 1.5, 2.5, 3.7])
def test_rate_is_n_times_b_and_decodes(bits: float) -> None:
    codec = fedcodec.get_codec({"id": "eden", "bits": bits})
    payload = codec.encode(X, seed=3)
    body = container.unpack(payload).body
    lo, hi, share = split_bits(codec.bits)
    high = sum(int(high_mask(3, a, b - a, share).sum()) for a, b in [(0, 65536), (65536, 70000)])
    assert abs(high / X.size - share) < 0.01  # the seeded mix draws the share asked for
    expected = (high * hi + 7) // 8 + ((X.size - high) * lo + 7) // 8
    assert len(body) == expected
    assert abs(8 * len(body) / X.size - bits) < 0.01
    y = codec.decode(payload, seed=3)
    assert y.shape == X.shape and np.isfinite(y).all()


def test_fractional_widths_are_unbiased_and_between_their_neighbours() -> None:
    x = X[:1000]
    codec = fedcodec.get_codec({"id": "eden", "bits": 0.3})
    mean = np.mean([codec.decode(codec.encode(x, seed=s), seed=s) for s in range(3000)], 0)
    # unbiased: the mean of 3000 independent estimates approaches x (variance/3000)
    assert np.sum((mean - x) ** 2) / np.sum(x**2) < 0.01

    def nmse(bits: float) -> float:
        c = fedcodec.get_codec({"id": "eden", "bits": bits})
        y = c.decode(c.encode(X, seed=1), seed=1)
        return float(np.sum((y - X) ** 2) / np.sum(X**2))

    assert nmse(1) < nmse(0.5) < nmse(0.25) < nmse(0.1)
    assert nmse(2) < nmse(1.5) < nmse(1) and nmse(3) < nmse(2.5) < nmse(2)


def test_integer_widths_keep_their_bytes() -> None:
    """An integer width writes the format of before (the golden fixtures pin it too)."""
    for bits in (1, 2.0, 3):
        payload = fedcodec.get_codec({"id": "eden", "bits": bits}).encode(X[:999], seed=2)
        assert container.unpack(payload).params[0] == int(bits)


def test_bad_widths_say_what_is_allowed() -> None:
    for bad in (0, -1, 4.5, float("nan")):
        with pytest.raises(ValueError, match=r"\(0, 4\]"):
            fedcodec.get_codec({"id": "eden", "bits": bad})
    with pytest.raises(ValueError, match="option 'bits' must be a number"):
        fedcodec.get_codec({"id": "eden", "bits": "x"})
    codec = fedcodec.get_codec({"id": "eden", "bits": 0.5})
    payload = bytearray(codec.encode(X[:100], seed=1))
    params_at = bytes(payload).find(b"\x00" + np.float32(0.5).tobytes())
    assert params_at > 0
    payload[params_at + 1 : params_at + 5] = np.float32(7.5).tobytes()  # no such width
    with pytest.raises(fedcodec.DecodeError):
        codec.decode(bytes(payload), seed=1)
