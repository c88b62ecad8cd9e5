"""Every kernel against a slow NumPy reference, on edge cases."""

from __future__ import annotations

import math

import constriction
import numba as nb
import numpy as np
import pytest
from fedcodec.kernels import bits, prefetch, quant, rng
from hypothesis import given
from hypothesis import strategies as st

from fedcodec import kernels
from fedcodec.coders import rleg

MASK = (1 << 64) - 1


# -- slow references -------------------------------------------------------------------
def ref_hash(s: int, i: int) -> int:
    z = (s + (i + 1) * 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def ref_uniform(seed: int, stream: int, count: int) -> np.ndarray:
    s = int(rng.stream_seed(seed, stream))
    return np.array([(ref_hash(s, i) >> 11) * 2.0**-53 for i in range(count)])


def ref_quantize(x: np.ndarray, step: float, rounding: str, offset: float, seed: int) -> np.ndarray:
    v = x.astype(np.float64) * (1.0 / step)
    if rounding == "nearest":
        return (np.sign(v) * np.floor(np.abs(v) + offset)).astype(np.int32)
    u = ref_uniform(seed, rng.STREAM_DITHER, x.size)
    return np.floor(v + u).astype(np.int32)


def ref_bits_gamma(v: int) -> str:
    n = v.bit_length()
    low = v - (1 << (n - 1))
    return "0" * (n - 1) + "1" + "".join(str((low >> b) & 1) for b in range(n - 1))


def ref_pack(bitstring: str) -> bytes:
    bitstring += "0" * (-len(bitstring) % 8)
    return bytes(
        sum(int(bitstring[i + b]) << b for b in range(8)) for i in range(0, len(bitstring), 8)
    )


def ref_rleg(q: np.ndarray) -> bytes:
    """The run-length Elias-gamma code exactly as TFC's kernel writes it."""
    bits = []
    zeros = 1
    for v in q.tolist():
        if v == 0:
            zeros += 1
            continue
        bits += [ref_bits_gamma(zeros), "1" if v > 0 else "0", ref_bits_gamma(abs(v))]
        zeros = 1
    if zeros > 1:
        bits.append(ref_bits_gamma(zeros))
    return ref_pack("".join(bits))


def hadamard(n: int) -> np.ndarray:
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


EDGE_VECTORS = {
    "empty": np.zeros(0, np.float32),
    "one": np.array([0.7], np.float32),
    "zeros": np.zeros(17, np.float32),
    "huge": np.array([0.0, 1e6, -3.0, 1e-6], np.float32),
    "boundaries": np.array([0.5, -0.5, 1.5, -1.5, 2.5, 0.49999997, -2.5000002], np.float32),
    "laplace": np.random.default_rng(0).laplace(size=1000).astype(np.float32),
}


@pytest.mark.parametrize("name", list(EDGE_VECTORS))
@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "dither"])
@pytest.mark.parametrize("offset", [0.5, 0.3])
def test_quantize_matches_reference(name: str, rounding: str, offset: float) -> None:
    x = EDGE_VECTORS[name]
    q = kernels.quantize(x, 1.0, rounding=rounding, offset=offset, seed=11)  # type: ignore[arg-type]
    np.testing.assert_array_equal(q, ref_quantize(x, 1.0, rounding, offset, 11))


def test_plain_rounding_is_half_away_from_zero() -> None:
    x = np.array([0.5, -0.5, 1.5, -2.5, 0.49], np.float32)
    assert kernels.quantize(x, 1.0).tolist() == [1, -1, 2, -3, 0]


@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "dither"])
def test_dequantize_matches_reference(rounding: str) -> None:
    q = np.array([0, 1, -1, 2, -7, 40], np.int32)
    step = 0.25
    recon = np.array([0.0, 0.8, 1.9])
    out = kernels.dequantize(q, step, rounding=rounding, recon=recon, seed=5)  # type: ignore[arg-type]
    if rounding == "nearest":
        mag = np.abs(q).astype(np.float64)
        mag[np.abs(q) == 1] = 0.8
        mag[np.abs(q) == 2] = 1.9
        ref = np.sign(q) * mag * step
    elif rounding == "stochastic":
        ref = q * step
    else:
        ref = (q - ref_uniform(5, rng.STREAM_DITHER, q.size) + 0.5) * step
    np.testing.assert_allclose(out, ref.astype(np.float32), rtol=0, atol=1e-7)


@pytest.mark.parametrize("table", [0, 1, 3, 17])
def test_nearest_dequantize_is_the_reference_bit_for_bit(table: int) -> None:
    """The nearest rounding's table lookup: the float64 product ``recon[k] * step`` (or
    ``k * step`` beyond the table), its sign, rounded once to float32."""
    gen = np.random.default_rng(table)
    q = np.concatenate([
        np.rint(gen.laplace(size=5000) * 4).astype(np.int32),
        np.array([0, 2**30, -(2**30), 16, -16, 17, -17], np.int32),
    ])  # fmt: skip
    recon = np.concatenate([[0.0], np.arange(1, table) + gen.uniform(-0.5, 0.5, max(table - 1, 0))])
    recon = recon[:table]
    step = 0.0123
    out = np.empty(q.size, np.float32)
    quant._dequantize(q, step, kernels.NEAREST, recon, np.uint64(0), out)
    k = np.abs(q).astype(np.int64)
    mag = k.astype(np.float64) * step
    inside = (k > 0) & (k < table)
    mag[inside] = recon[k[inside]] * step
    ref = np.where(q < 0, -mag, mag).astype(np.float32)
    np.testing.assert_array_equal(out.view(np.uint32), ref.view(np.uint32))


def test_all_finite_matches_numpy() -> None:
    x = np.array([0.0, -0.0, 1e-45, -3.4028235e38, 3.4028235e38, 1.0], np.float32)
    assert kernels.all_finite(x) and kernels.all_finite(np.zeros(0, np.float32))
    bits = x.view(np.uint32).copy()
    for bad in (0x7F800000, 0xFF800000, 0x7FC00000, 0xFFFFFFFF, 0x7F800001):
        for where in (0, 3, 5):
            y = bits.copy()
            y[where] = bad
            assert not kernels.all_finite(y.view(np.float32))
            assert not np.isfinite(y.view(np.float32)).all()
    with pytest.raises(ValueError, match="float32"):
        kernels.all_finite(np.zeros(3))


def test_dither_error_is_bounded_by_half_a_step() -> None:
    x = np.random.default_rng(1).standard_normal(10_000).astype(np.float32)
    q = kernels.quantize(x, 0.1, rounding="dither", seed=3)
    x_hat = kernels.dequantize(q, 0.1, rounding="dither", seed=3)
    assert np.max(np.abs(x_hat - x)) <= 0.05 + 1e-6


def test_uniform_stream_matches_reference() -> None:
    np.testing.assert_array_equal(
        rng.uniform(42, rng.STREAM_DITHER, 50), ref_uniform(42, rng.STREAM_DITHER, 50)
    )


@pytest.mark.parametrize("name", list(EDGE_VECTORS))
def test_histogram_matches_reference(name: str) -> None:
    q = kernels.quantize(EDGE_VECTORS[name], 0.5)
    counts, outside = kernels.histogram(q, -3, 3)
    ref = np.array([(q == v).sum() for v in range(-3, 4)])
    np.testing.assert_array_equal(counts, ref)
    assert outside == int(((q < -3) | (q > 3)).sum())


@pytest.mark.parametrize("name", list(EDGE_VECTORS))
@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "dither"])
def test_stats_kernel_matches_reference(name: str, rounding: str) -> None:
    x = EDGE_VECTORS[name]
    mode = kernels.rounding_mode(rounding)
    step, offset, seed, hk = 0.5, 0.4, 9, 3
    stream = rng.stream_seed(seed, rng.STREAM_DITHER)
    hist = np.zeros(2 * hk + 1, np.int64)
    s1, s2 = np.zeros(hk + 1), np.zeros(hk + 1)
    n_over, over_bits, sse, rleg_bits = quant._stats(
        x, np.empty(0, np.int64), 1.0 / step, mode, offset, stream, True, hist, s1, s2
    )
    q = ref_quantize(x, step, rounding, offset, seed).astype(np.int64)
    inside = np.abs(q) <= hk
    np.testing.assert_array_equal(hist, [(q == v).sum() for v in range(-hk, hk + 1)])
    assert n_over == int((~inside).sum())
    zz = np.where(q > 0, 2 * q, -2 * q - 1)[~inside]
    assert over_bits == sum(len(ref_bits_gamma(int(z) + 1)) for z in zz)
    assert rleg_bits == len("".join(ref_rleg_bits(q)))
    v = x.astype(np.float64) / step
    if rounding == "nearest":
        a = np.abs(v)
        assert s2[0] == pytest.approx((a[q == 0] ** 2).sum())
        for k in range(1, hk + 1):
            sel = np.abs(q) == k
            assert s1[k] == pytest.approx(a[sel].sum())
            assert s2[k] == pytest.approx((a[sel] ** 2).sum())
        assert sse == pytest.approx(((a - np.abs(q)) ** 2)[~inside].sum())
    else:
        u = ref_uniform(seed, rng.STREAM_DITHER, x.size)
        x_hat = q - u + 0.5 if rounding == "dither" else q.astype(np.float64)
        assert sse == pytest.approx(((x_hat - v) ** 2).sum(), rel=1e-9, abs=1e-12)


def test_nearest_stats_add_in_element_order_across_tiles() -> None:
    """The NEAREST statistics (two loops a tile of ``STATS_TILE`` elements) add each sum's
    terms in element order, as one plain loop does: the same floats, not approximately."""
    gen = np.random.default_rng(5)
    n = 3 * quant.STATS_TILE + 77
    x = (gen.laplace(size=n) * gen.choice([0.1, 3.0], n)).astype(np.float32)
    x[100:2500] = 0.0  # a run across a tile's end
    inv, offset, hk = 1.0 / 0.7, 0.4, 4
    hist = np.zeros(2 * hk + 1, np.int64)
    s1, s2 = np.zeros(hk + 1), np.zeros(hk + 1)
    got = quant._stats(x, np.empty(0, np.int64), inv, quant.NEAREST, offset, np.uint64(0), True,
                       hist, s1, s2)  # fmt: skip
    r1, r2, zero_sq, sse = [0.0] * (hk + 1), [0.0] * (hk + 1), 0.0, 0.0
    for value in x.tolist():  # Python floats: one loop, element order
        a = abs(value * inv)
        k = int(a + offset)
        if k == 0:
            zero_sq += a * a
        elif k <= hk:
            r1[k] += a
            r2[k] += a * a
        else:
            sse += (a - k) * (a - k)
    r2[0] += zero_sq
    assert s1.tolist() == r1 and s2.tolist() == r2 and got[2] == sse
    q = np.trunc(np.abs(x.astype(np.float64) * inv) + offset).astype(np.int64) * np.sign(x)
    q = q.astype(np.int64)
    np.testing.assert_array_equal(hist, [(q == v).sum() for v in range(-hk, hk + 1)])
    assert got[0] == int((np.abs(q) > hk).sum())
    assert got[3] == len("".join(ref_rleg_bits(q)))


def ref_rleg_bits(q: np.ndarray) -> list[str]:
    bits, zeros = [], 1
    for v in q.tolist():
        if v == 0:
            zeros += 1
            continue
        bits += [ref_bits_gamma(zeros), "1", ref_bits_gamma(abs(v))]
        zeros = 1
    if zeros > 1:
        bits.append(ref_bits_gamma(zeros))
    return bits


@pytest.mark.parametrize("n", [1, 2, 4, 64, 1024])
def test_fwht_matches_hadamard_matrix(n: int) -> None:
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    ref = hadamard(n) @ x.astype(np.float64) / math.sqrt(n)
    np.testing.assert_allclose(kernels.fwht(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [0, 1, 3, 1000, 70_000])
def test_rotation_is_orthonormal_and_inverts(n: int) -> None:
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    y = kernels.rotate(x.copy(), seed=4)
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-5)
    back = kernels.rotate(y, seed=4, inverse=True)
    np.testing.assert_allclose(back, x, atol=1e-5)


def test_rotation_matches_reference_blocks() -> None:
    n, block, seed = 13, 4, 2  # blocks 4, 4, 4, 1
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    y = kernels.rotate(x.copy(), seed, block=block)
    s = int(rng.stream_seed(seed, rng.STREAM_ROTATE))
    words = [int(ref_hash(s, w)) for w in range(1)]
    signs = np.array([-1.0 if (words[i // 64] >> (i % 64)) & 1 else 1.0 for i in range(n)])
    ref = np.empty(n)
    for start, size in [(0, 4), (4, 4), (8, 4), (12, 1)]:
        seg = x[start : start + size].astype(np.float64) * signs[start : start + size]
        ref[start : start + size] = hadamard(size) @ seg / math.sqrt(size)
    np.testing.assert_allclose(y, ref, atol=1e-5)


@given(st.lists(st.integers(1, 2**32 - 1), max_size=50))
def test_gamma_matches_reference(values: list[int]) -> None:
    data = kernels.gamma_encode(np.array(values, dtype=np.int64))
    assert data == ref_pack("".join(ref_bits_gamma(v) for v in values))
    decoded, end = kernels.gamma_decode(data, len(values))
    assert decoded.tolist() == values
    assert (end + 7) // 8 == len(data)


@given(st.lists(st.integers(-(2**30), 2**30), max_size=200), st.floats(0.0, 0.95))
def test_rleg_matches_tfc_reference(values: list[int], zero_fraction: float) -> None:
    q = np.array(values, dtype=np.int32)
    q[np.random.default_rng(len(values)).random(q.size) < zero_fraction] = 0
    data = kernels.rleg_encode(q)
    assert data == ref_rleg(q)
    np.testing.assert_array_equal(kernels.rleg_decode(data, q.size), q)


@pytest.mark.parametrize(
    "q",
    [[], [0], [5], [0, 0, 0], [-1, 0, 0, 2], [2**30, -(2**30)], [0] * 100 + [1]],
)
def test_rleg_edge_cases(q: list[int]) -> None:
    arr = np.array(q, dtype=np.int32)
    data = kernels.rleg_encode(arr)
    assert data == ref_rleg(arr)
    np.testing.assert_array_equal(kernels.rleg_decode(data, arr.size), arr)


def test_rleg_known_bytes() -> None:
    # [1]: gamma(1)='1', sign '1', gamma(1)='1' -> bits 111 -> 0b00000111
    assert kernels.rleg_encode(np.array([1], np.int32)) == bytes([0b111])
    # [0, -2]: gamma(2)='010', sign '0', gamma(2)='010' -> 0100010 (LSB first) -> 0x22
    assert kernels.rleg_encode(np.array([0, -2], np.int32)) == bytes([0b0100010])


@pytest.mark.parametrize(
    "data,n",
    [
        (b"", 1),
        (b"\x00", 1),
        (b"\x07\x00", 1),
        (b"\x0f", 1),
        (b"\x00" * 5, 3),
        (b"\x03", 1),
        (b"\x02\x00", 1),
    ],
)
def test_rleg_decode_rejects_malformed(data: bytes, n: int) -> None:
    with pytest.raises(ValueError):
        kernels.rleg_decode(data, n)


def random_model(rng_: np.random.Generator, m: int) -> np.ndarray:
    w = rng_.random(m) ** 3 + 1e-9
    f = np.maximum(1, np.floor(w / w.sum() * (2**24 - m))).astype(np.int64)
    f[np.argmax(f)] += 2**24 - f.sum()
    return f.astype(np.uint32)


@pytest.mark.parametrize("trial", range(12))
def test_ans_is_bit_compatible_with_constriction(trial: int) -> None:
    g = np.random.default_rng(trial)
    m = int(g.integers(2, 50))
    freq = random_model(g, m)
    n = int(g.integers(0, 5000)) if trial else 0
    symbols = g.choice(m, size=n, p=freq / freq.sum()).astype(np.int32)
    words = kernels.ans_encode(symbols, freq)
    model = constriction.stream.model.Categorical(freq.astype(np.float64) - 1.0, perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    if n:
        coder.encode_reverse(symbols, model)
    np.testing.assert_array_equal(words, coder.get_compressed())
    np.testing.assert_array_equal(kernels.ans_decode(words, n, freq), symbols)
    if n:
        back = constriction.stream.stack.AnsCoder(words).decode(model, n)
        np.testing.assert_array_equal(back, symbols)


def test_ans_rejects_corrupted_stream() -> None:
    freq = np.array([2**23, 2**22, 2**22], np.uint32)
    symbols = np.random.default_rng(0).integers(0, 3, 500).astype(np.int32)
    words = kernels.ans_encode(symbols, freq)
    bad = words.copy()
    bad[len(bad) // 2] ^= np.uint32(1 << 7)
    with pytest.raises(ValueError):
        kernels.ans_decode(bad, symbols.size, freq)
    with pytest.raises(ValueError):
        kernels.ans_decode(words[1:], symbols.size, freq)


def test_wrappers_validate_inputs() -> None:
    with pytest.raises(ValueError, match="dtype"):
        kernels.quantize(np.zeros(3, np.float64), 1.0)
    with pytest.raises(ValueError, match="step"):
        kernels.quantize(np.zeros(3, np.float32), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        kernels.quantize(np.array([np.nan], np.float32), 1.0)
    with pytest.raises(ValueError, match="2\\*\\*30"):
        kernels.quantize(np.array([1e10], np.float32), 1e-3)
    with pytest.raises(ValueError, match="rounding"):
        kernels.quantize(np.zeros(3, np.float32), 1.0, rounding="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="power of two"):
        kernels.fwht(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="sum"):
        kernels.build_ans_tables(np.array([1, 2], np.uint32))
    with pytest.raises(ValueError, match="one-dimensional"):
        kernels.quantize(np.zeros((2, 2), np.float32), 1.0)


# -- the codec's fused kernels against the same references -------------------------------
@pytest.mark.parametrize("name", list(EDGE_VECTORS))
@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "dither"])
def test_quantize_model_matches_reference(name: str, rounding: str) -> None:
    x = EDGE_VECTORS[name]
    mode = kernels.rounding_mode(rounding)
    step, offset, seed, lo, hi = 0.5, 0.4, 9, -2, 3
    recon = np.array([0.0, 0.8, 2.1])
    m = hi - lo + 1
    symbols = np.empty(x.size, np.uint16)
    counts = np.zeros(m + 1, np.int64)
    escapes = np.empty(x.size + 1, np.int64)
    stream = rng.stream_seed(seed, rng.STREAM_DITHER)
    n_esc, esc_bits, sse = quant._quantize_model(
        x, 1.0 / step, mode, offset, stream, recon, lo, True, symbols, counts, escapes
    )
    q = ref_quantize(x, step, rounding, offset, seed).astype(np.int64)
    inside = (q >= lo) & (q <= hi)
    np.testing.assert_array_equal(symbols, np.where(inside, q - lo, m))
    np.testing.assert_array_equal(
        counts, [(q == v).sum() for v in range(lo, hi + 1)] + [(~inside).sum()]
    )
    np.testing.assert_array_equal(escapes[:n_esc], q[~inside])
    zz = np.where(q > 0, 2 * q, -2 * q - 1)[~inside]
    assert esc_bits == sum(len(ref_bits_gamma(int(z) + 1)) for z in zz)
    v = x.astype(np.float64) / step
    if rounding == "nearest":
        k = np.abs(q)
        r = np.where((k > 0) & (k < recon.size), recon[np.minimum(k, recon.size - 1)], k)
        ref_sse = ((np.abs(v) - r) ** 2).sum()
        assert sse == pytest.approx(ref_sse, rel=1e-9, abs=1e-12)
        assert quant._sse_nearest(x, 1.0 / step, offset, recon) == pytest.approx(
            ref_sse, rel=1e-9, abs=1e-12
        )
    else:
        u = ref_uniform(seed, rng.STREAM_DITHER, x.size)
        x_hat = q - u + 0.5 if rounding == "dither" else q.astype(np.float64)
        assert sse == pytest.approx(((x_hat - v) ** 2).sum(), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "dither"])
def test_dequantize_symbols_matches_dequantize(rounding: str) -> None:
    mode = kernels.rounding_mode(rounding)
    q = np.array([0, 3, -2, 9, 1, -40, 0, 2], np.int32)
    lo, hi = -2, 3
    inside = (q >= lo) & (q <= hi)
    symbols = np.where(inside, q - lo, hi - lo + 1).astype(np.uint16)
    recon = np.array([0.0, 0.75, 1.9]) if rounding == "nearest" else np.zeros(0)
    stream = rng.stream_seed(4, rng.STREAM_DITHER)
    out = np.empty(q.size, np.float32)
    status = quant._dequantize_symbols(
        symbols, lo, hi - lo + 1, q[~inside].astype(np.int64), mode, 0.25, recon, stream, out
    )
    assert status == 0
    ref = kernels.dequantize(
        q, 0.25, rounding=rounding, recon=recon if recon.size else None, seed=4
    )  # type: ignore[arg-type]
    np.testing.assert_array_equal(out, ref)
    # escape symbols and escaped levels must agree in number
    assert (
        quant._dequantize_symbols(
            symbols, lo, hi - lo + 1, np.zeros(1, np.int64), mode, 0.25, recon, stream, out
        )
        < 0
    )
    assert (
        quant._dequantize_symbols(
            symbols, lo, hi - lo + 1, np.zeros(3, np.int64), mode, 0.25, recon, stream, out
        )
        < 0
    )


@pytest.mark.parametrize("n", [0, 1, 5, 1000])
def test_count_symbols_matches_bincount(n: int) -> None:
    symbols = np.random.default_rng(n).integers(0, 7, n).astype(np.uint16)
    counts = np.zeros(7, np.int64)
    quant._count_symbols(symbols, counts)
    np.testing.assert_array_equal(counts, np.bincount(symbols, minlength=7))


def test_four_streams_refuse_an_empty_last_segment() -> None:
    from fedcodec.kernels import ans as kans

    freq = np.array([2**23, 2**23], np.uint32)
    cdf, lut = kernels.build_ans_tables(freq, 12)
    for n in (1, 2, 3, 5, 6, 9):
        symbols = np.zeros(n, np.uint16)
        counts = np.zeros(4, np.int64)
        buf = np.empty(64, np.uint32)
        assert kans._ans_encode4(symbols, cdf, freq, buf, counts) == kans.ERR_SEGMENTS
        assert kans._ans_decode4(buf[:0], counts, cdf, freq, lut, 12, symbols) == kans.ERR_SEGMENTS


@pytest.mark.parametrize("n", [4, 7, 8, 70_001])
def test_four_interleaved_streams_are_four_constriction_streams(n: int) -> None:
    from fedcodec.kernels import ans as kans

    g = np.random.default_rng(n)
    freq = random_model(g, 9)
    symbols = g.choice(9, size=n, p=freq / freq.sum()).astype(np.uint16)
    cdf, lut = kernels.build_ans_tables(freq, 12)
    buf = np.empty(n * 3 // 4 + 64, np.uint32)
    counts = np.zeros(4, np.int64)
    assert kans._ans_encode4(symbols, cdf, freq, buf, counts) == 0
    cap = buf.size // 4
    words = np.concatenate([buf[k * cap : k * cap + counts[k]] for k in range(4)])
    model = constriction.stream.model.Categorical(freq.astype(np.float64) - 1.0, perfect=False)
    seg = -(-n // 4)
    for k in range(4):
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(symbols[k * seg : (k + 1) * seg].astype(np.int32), model)
        np.testing.assert_array_equal(buf[k * cap : k * cap + counts[k]], coder.get_compressed())
    out = np.empty(n, np.uint16)
    assert kans._ans_decode4(words, counts, cdf, freq, lut, 12, out) == 0
    np.testing.assert_array_equal(out, symbols)
    words[0] ^= np.uint32(1)
    assert kans._ans_decode4(words, counts, cdf, freq, lut, 12, out) < 0


@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "dither"])
def test_rleg_decode_values_matches_decode_then_dequantize(rounding: str) -> None:
    from fedcodec.kernels import bits as kbits

    q = np.array([0, 0, 3, -1, 0, 0, 0, 7, 0], np.int32)
    data = np.frombuffer(kernels.rleg_encode(q), np.uint8)
    mode = kernels.rounding_mode(rounding)
    recon = np.array([0.0, 0.8]) if rounding == "nearest" else np.zeros(0)
    out = np.empty(q.size, np.float32)
    stream = rng.stream_seed(2, rng.STREAM_DITHER)
    assert (
        kbits._rleg_decode_values(data, out, kernels.MAX_ABS_LEVEL, mode, 0.5, recon, stream) == 0
    )
    ref = kernels.dequantize(q, 0.5, rounding=rounding, recon=recon if recon.size else None, seed=2)  # type: ignore[arg-type]
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("name", list(EDGE_VECTORS))
def test_max_abs_and_sumsq_matches_reference(name: str) -> None:
    x = EDGE_VECTORS[name]
    m, s, finite = kernels.max_abs_and_sumsq(x)
    assert m == (float(np.abs(x).max()) if x.size else 0.0)
    assert s == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)))
    assert finite
    for bad in (np.nan, np.inf, -np.inf):
        y = np.append(x, np.float32(bad))
        assert not kernels.max_abs_and_sumsq(y)[2]


@pytest.mark.parametrize("n", [0, 1, 3, 4, 7, 65_536, 100_003])
def test_dot_matches_reference(n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.standard_normal(n)
    b = rng.standard_normal(n).astype(np.float32)
    expected = float(np.sum(a * b.astype(np.float64)))  # numpy's pairwise sum, no BLAS
    assert kernels.dot(a, b) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert kernels.dot(a, a) == pytest.approx(float(np.sum(a * a)), rel=1e-12, abs=1e-12)


def test_dot_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="same length"):
        kernels.dot(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="dtype"):
        kernels.dot(np.ones(3, dtype=np.int64), np.ones(3))


def test_bit_length_flat_matches_python() -> None:
    values = list(range(1 << 12)) + [(1 << k) + d for k in range(12, 63) for d in (-1, 0, 1)]
    got = [quant._bit_length_flat(v) for v in values]
    assert got == [v.bit_length() for v in values]
    assert got == [quant._bit_length(v) for v in values]


def test_prefetch_is_a_hint_anywhere() -> None:
    """A prefetch of any index of any 1-D array (empty, strided, before its start or past
    its end) changes nothing and never faults; the streaming kernels that prefetch pages
    ahead give their reference results on updates many pages long."""

    @nb.njit
    def touch(a: np.ndarray, i: int) -> float:
        prefetch._prefetch(a, i)
        prefetch._prefetch_span(a, i, i + 3 * prefetch.PAGE_ELEMENTS)
        return float(a.sum()) if a.size else 0.0

    x = np.arange(10, dtype=np.float32)
    for a in (x, x[::3], np.zeros(0), np.zeros(5, np.int32)):
        for i in (-(1 << 40), -1, 0, 4, 1 << 20, 1 << 40):
            assert touch(a, i) == (float(a.sum()) if a.size else 0.0)
    n = 5 * prefetch.AHEAD + 17
    rng = np.random.default_rng(5)
    q = (rng.integers(-3, 4, n) * (rng.random(n) < 0.3)).astype(np.int32)
    out = np.zeros(4, np.int64)
    bits._rleg_runs(q, out)
    assert rleg.joined_bytes([out]) == len(kernels.rleg_encode(q))
    y = rng.standard_normal(n).astype(np.float32)
    m, s, finite = kernels.max_abs_and_sumsq(y)
    assert (m, finite) == (float(np.abs(y).max()), True)
    assert s == pytest.approx(float(np.sum(y.astype(np.float64) ** 2)), rel=1e-12)


# -- the ANS coder's model from a histogram (kernels.ans._estimate_model) ----------------------
def ref_take_from_the_largest(values: np.ndarray, amount: int) -> None:
    top = int(np.argmax(values))
    if values[top] - amount >= 1:
        values[top] -= amount
        return
    for j in np.argsort(-values, kind="stable"):
        take = max(0, min(amount, int(values[j]) - 1))
        values[j] -= take
        amount -= take
        if amount == 0:
            return
    raise AssertionError("too many symbols")


def ref_model(hist: np.ndarray, n_over: int, over_bits: int) -> tuple:
    """The model of a histogram, in NumPy as the format describes it (``fedcodec.coders.ans``)."""
    hk = (hist.shape[0] - 1) // 2
    frequent = np.flatnonzero(hist >= max(1, int(hist.sum()) >> 14))
    lo, hi = (int(frequent[0]) - hk, int(frequent[-1]) - hk) if frequent.size else (0, 0)
    if hi - lo + 1 > 8193:
        lo, hi = max(lo, -4096), min(hi, 4096)
    levels = np.arange(-hk, hk + 1)
    outside = (levels < lo) | (levels > hi)
    counts = np.append(hist[lo + hk : hi + hk + 1], hist[outside].sum() + n_over)
    gamma = lambda v: 2 * np.floor(np.log2(np.asarray(v, np.float64))).astype(np.int64) + 1  # noqa: E731
    zigzag = lambda v: np.where(np.asarray(v) >= 0, 2 * np.asarray(v), -2 * np.asarray(v) - 1)  # noqa: E731
    esc_bits = over_bits + int((hist[outside] * gamma(zigzag(levels[outside]) + 1)).sum())
    if counts.sum() == 0:  # an empty histogram: all on the escape symbol
        c16 = np.zeros(counts.size, np.int64)
        c16[-1] = 65536
    else:
        c16 = np.where(counts > 0, np.maximum(1, np.rint(counts * (65536 / counts.sum()))), 0)
        c16 = c16.astype(np.int64)
        ref_take_from_the_largest(c16, int(c16.sum()) - 65536)
    freq = c16 << 8
    zero = freq == 0
    freq[zero] = 1
    ref_take_from_the_largest(freq, int(zero.sum()))
    head = int(gamma([int(zigzag(lo)) + 1, hi - lo + 1]).sum() + gamma(c16 + 1).sum())
    return lo, hi, counts, freq, head, esc_bits


@pytest.mark.parametrize("seed", range(6))
def test_ans_model_kernel_matches_reference(seed: int) -> None:
    from fedcodec.kernels import ans

    gen = np.random.default_rng(seed)
    for trial in range(60):
        hk = int(gen.integers(1, 5000 if trial % 10 == 0 else 300))
        levels = np.arange(-hk, hk + 1)
        shapes = [
            gen.poisson(gen.exponential(300) * np.exp(-np.abs(levels) / gen.uniform(0.3, 40))),
            gen.integers(0, 3, levels.size),  # thousands of rare levels
            np.where(levels == 0, gen.integers(0, 10**6), 0),  # one level
            np.zeros(levels.size, np.int64),  # nothing
        ]
        hist = shapes[trial % 4].astype(np.int64)
        n_over = int(gen.integers(0, 4))
        got = ans._estimate_model(hist, n_over, 21 * n_over)
        assert got[-1]  # the counts could be made
        want = ref_model(hist, n_over, 21 * n_over)
        assert got[:2] == want[:2] and got[4:6] == want[4:6]
        np.testing.assert_array_equal(got[2], want[2])
        np.testing.assert_array_equal(got[3], want[3])
