"""RDQ's context coder: the kernels against a slow pure-Python reference, round trips,
the choice of side information, and the codec end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
from common import check_encode_decode, check_mapping_round_trip, expect_decode_error, with_crc
from fedcodec.kernels import ctx as K
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rdq import structured

import fedcodec
from fedcodec import RDQ, container
from fedcodec.coders import ctx as ctx_coder

_NO_COUNTS = np.zeros(0, np.int64)


def decode_levels_kernel(data: np.ndarray, tensors: np.ndarray, back: np.ndarray) -> int:
    """The decoding kernel's status, its levels into ``back`` (an empty ``out``)."""
    return K._ctx_decode(
        data, tensors, 2**30, back, 0, 0.0, np.zeros(0), np.uint64(0), np.empty(0, np.float32)
    )


class RefEncoder:
    """LZMA's range encoder, written plainly (Python ints)."""

    def __init__(self) -> None:
        self.low, self.range, self.cache, self.csize = 0, 0xFFFFFFFF, 0, 1
        self.out = bytearray()

    def shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low >= 1 << 32:
            carry = self.low >> 32
            temp = self.cache
            while True:
                self.out.append((temp + carry) & 0xFF)
                temp = 0xFF
                self.csize -= 1
                if self.csize == 0:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.csize += 1
        self.low = (self.low & 0xFFFFFF) << 8

    def normalize(self) -> None:
        while self.range < K.TOP:
            self.range <<= 8
            self.shift_low()

    def bit(self, probs: list[int], i: int, bit: int) -> None:
        p = probs[i]
        bound = (self.range >> K.PROB_BITS) * p
        if bit:
            self.low += bound
            self.range -= bound
            probs[i] = p - (p >> K.MOVE_BITS)
        else:
            self.range = bound
            probs[i] = p + ((K.PROB_ONE - p) >> K.MOVE_BITS)
        self.normalize()

    def direct(self, value: int, nbits: int) -> None:
        for k in range(nbits - 1, -1, -1):
            self.range >>= 1
            if (value >> k) & 1:
                self.low += self.range
            self.normalize()

    def finish(self) -> bytes:
        for _ in range(5):
            self.shift_low()
        return bytes(self.out)


def side_index(sumsq: float, count: int) -> int:
    if sumsq <= 0:
        return 0
    return min(max(round(math.log2(sumsq / count)) + K.SIDE_OFFSET, 1), 127)


def reference_encode(q: np.ndarray, tensors: list[tuple[int, int]], use: list[int]) -> bytes:
    """The context coder as docs/format.md describes it, one element at a time."""
    enc = RefEncoder()
    probs = [K.PROB_ONE // 2] * K.NUM_PROBS
    start = 0
    for (rows, cols), side in zip(tensors, use, strict=True):
        m = q[start : start + rows * cols].astype(np.float64).reshape(rows, cols)
        enc.direct(side, 1)
        if side:
            total = side_index(float((m**2).sum()), rows * cols)
            row = [side_index(float((r**2).sum()), cols) for r in m]
            col = [side_index(float((c**2).sum()), rows) for c in m.T]
            enc.direct(total, K.SIDE_BITS)
            for v in row + col:
                node = 1
                for b in range(K.SIDE_BITS - 1, -1, -1):
                    enc.bit(probs, K.SIDE0 + node, (v >> b) & 1)
                    node = 2 * node + ((v >> b) & 1)
        col_last = [0] * cols
        for i in range(rows):
            lsign, flip = 0, 0
            if side and row[i] == 0:
                continue
            for j in range(cols):
                if side:
                    if col[j] == 0:
                        lsign = 0
                        continue
                    lp = row[i] + col[j] - total - K.SIDE_OFFSET
                    ctx = min(max(lp + K.BIN_OFFSET, 0), K.NUM_BINS - 1)
                else:
                    ctx = K.NUM_BINS
                v = int(m[i, j])
                enc.bit(probs, K.SIG0 + 2 * ctx + int(lsign != 0), int(v != 0))
                if v:
                    mag = abs(v) - 1
                    for k in range(min(mag, K.MAG_UNARY)):
                        enc.bit(probs, K.MAG0 + ctx * K.MAG_UNARY + k, 1)
                    if mag < K.MAG_UNARY:
                        enc.bit(probs, K.MAG0 + ctx * K.MAG_UNARY + mag, 0)
                    else:
                        w = mag - K.MAG_UNARY + 1
                        nb = w.bit_length() - 1
                        enc.direct((1 << (nb + 1)) - 2, nb + 1)
                        enc.direct(w & ((1 << nb) - 1), nb)
                    sign = -1 if v < 0 else 1
                    predicted = col_last[j] * flip  # rank-1 sign structure
                    enc.bit(probs, K.SIGN0 + (predicted + 1) * 3 + lsign + 1, int(v < 0))
                    if col_last[j]:
                        flip = sign * col_last[j]
                    col_last[j] = sign
                lsign = (-1 if v < 0 else 1) if v else 0
        start += rows * cols
    return enc.finish()


@st.composite
def level_tensors(draw: st.DrawFn) -> tuple[np.ndarray, list[tuple[int, int]], list[int]]:
    shapes = draw(
        st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=1, max_size=3)
    )
    n = sum(r * c for r, c in shapes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.floats(0.0, 1.0))
    scale = 10.0 ** draw(st.floats(-1, 4))
    q = np.rint(rng.laplace(size=n) * scale * (rng.random(n) < density))
    if draw(st.booleans()) and n:
        q[rng.integers(n)] = draw(st.sampled_from([2**30, -(2**30), 17, -300]))
    use = [draw(st.integers(0, 1)) for _ in shapes]
    return q.astype(np.int32), shapes, use


@settings(max_examples=150, deadline=None)
@given(level_tensors())
def test_kernel_matches_the_reference_and_round_trips(
    case: tuple[np.ndarray, list[tuple[int, int]], list[int]],
) -> None:
    q, shapes, use = case
    tensors = np.array(shapes, np.int64)
    flags = np.array(use, np.int64)
    out = np.empty(8 * q.size + 64, np.uint8)
    nbytes = K._ctx_encode(q, tensors, flags, out, np.zeros(0), _NO_COUNTS)
    body = out[:nbytes].tobytes()
    assert body == reference_encode(q, shapes, use)
    back = np.empty(q.size, np.int32)
    assert decode_levels_kernel(out[:nbytes], tensors, back) == 0
    np.testing.assert_array_equal(back, q)
    cost = np.zeros(1)
    K._ctx_encode(q, tensors, flags, out, cost, _NO_COUNTS)
    assert abs(cost[0] / 8 - nbytes) <= 0.01 * nbytes + 6  # the dry run's ideal cost


def test_truncated_or_extended_streams_are_refused() -> None:
    q = np.rint(np.random.default_rng(1).laplace(size=500) * 3).astype(np.int32)
    tensors = np.array([[20, 25]], np.int64)
    body, _ = None, None
    out = np.empty(4000, np.uint8)
    nbytes = K._ctx_encode(q, tensors, np.array([1], np.int64), out, np.zeros(0), _NO_COUNTS)
    back = np.empty(500, np.int32)
    for cut in range(nbytes):
        assert decode_levels_kernel(out[:cut], tensors, back) < 0
    longer = np.concatenate([out[:nbytes], [0]]).astype(np.uint8)
    assert decode_levels_kernel(longer, tensors, back) == K.ERR_TRAILING
    assert body is None


@given(st.binary(max_size=200), st.integers(1, 40), st.integers(1, 40))
def test_decoder_on_random_bytes(data: bytes, rows: int, cols: int) -> None:
    back = np.empty(rows * cols, np.int32)
    status = decode_levels_kernel(
        np.frombuffer(data, np.uint8), np.array([[rows, cols]], np.int64), back
    )
    assert status in (0, K.ERR_EXHAUSTED, K.ERR_TRAILING, K.ERR_INVALID)
    if status == 0:
        assert np.abs(back.astype(np.int64)).max(initial=0) <= 2**30


def test_side_information_where_it_pays() -> None:
    x = structured(60, 200, seed=3)
    q = np.rint(x / (np.abs(x).max() / 20)).astype(np.int32).reshape(-1)
    assert list(ctx_coder.choose_side(q, np.array([[60, 200]], np.int64))) == [1]
    iid = np.rint(np.random.default_rng(2).laplace(size=12_000)).astype(np.int32)
    assert list(ctx_coder.choose_side(iid, np.array([[60, 200]], np.int64))) == [0]
    assert list(ctx_coder.choose_side(iid, np.array([[1, 12_000]], np.int64))) == [0]


@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "dither"])
@pytest.mark.parametrize(
    "rate", [{"bits_per_param": 1.0}, {"nmse": 0.02}, {"lmbda": 1e-3}, {"step": 1e-8}]
)
def test_rdq_with_the_context_coder(rounding: str, rate: dict) -> None:
    codec = RDQ(coder="ctx", rounding=rounding, **rate)
    x = structured(40, 150, seed=11)
    out = check_encode_decode(codec, x, seed=4)
    if "nmse" in rate and rounding == "nearest":
        assert np.sum((out - x) ** 2) <= 0.02 * np.sum(x.astype(np.float64) ** 2) * 1.001
    check_mapping_round_trip(codec, {"w": x, "b": x[0], "z": np.zeros((3, 5), np.float32)}, seed=4)


def test_structure_pays_against_the_memoryless_coders() -> None:
    update = {"fc.weight": structured(256, 400, seed=21), "fc.bias": structured(1, 256, seed=22)[0]}
    sizes = {
        coder: len(RDQ(nmse=0.02, coder=coder).encode(update)) for coder in ("ans", "auto", "ctx")
    }
    assert sizes["ctx"] < 0.8 * min(sizes["ans"], sizes["auto"]), sizes
    # the payload carries the tensor shapes: decoding needs nothing else
    payload = RDQ(nmse=0.02, coder="ctx").encode(update)
    assert fedcodec.decode(payload).shape == (256 * 400 + 256,)


@pytest.mark.parametrize(
    ("coder", "coder_id"),
    [("ctx", 2), ("ctx-static", 3), ("ctx-stream", 2), ("ctx-blocks", 4), ("ctx-wide", 5)],
)
def test_shapes_in_the_parameters_are_checked(coder: str, coder_id: int) -> None:
    x = structured(40, 150, seed=5)
    payload = RDQ(step=1e-8, coder=coder, levels="uniform").encode(x)
    env = container.unpack(payload)
    flags = env.params[0]
    assert (flags >> 3 & 3) | (flags >> 6 & 1) << 2 == coder_id  # the context coder was chosen
    head, shapes = env.params[:5], env.params[5:]
    assert shapes == b"\x01\x28\x96\x01"  # one tensor, 40 rows, 150 columns
    forgeries = (b"\x01\x28\x95\x01", b"\x01\x29\x96\x01", b"\x02\x28\x96\x01\x01\x01")
    for forged in (*forgeries, b"\x01\x00\x96\x01", b"", b"\x01\x28\x96\x01\x00"):
        data = container.pack("rdq", env.dtype, env.shape, 0, head + forged, bytes(env.body))
        with pytest.raises(fedcodec.DecodeError):
            RDQ().decode(data)
    expect_decode_error(RDQ(), with_crc(payload[:-9] + b"\xff" + payload[-8:]))


def test_context_entropy_of_a_known_source() -> None:
    """Levels 0/±1, each non-zero with probability p, random signs, one vector: no side
    information, one significance context per left-neighbour state, magnitude 1 costs
    nothing, a sign one bit: the ideal static cost is about n·(h(p) + p) bits."""
    rng = np.random.default_rng(3)
    n, p = 200_000, 0.1
    q = ((rng.random(n) < p) * rng.choice([-1, 1], n)).astype(np.int32)
    bits = ctx_coder.context_entropy_bits(q, np.array([[1, n]], np.int64))
    h = -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    assert bits / n == pytest.approx(h + p, rel=0.01)
    # the coder pays for adapting its probabilities (shift 5: they follow the last ~32
    # decisions, noise on a stationary source): a little more
    _, body = ctx_coder.encode(q, np.array([[1, n]], np.int64), 1e6)
    assert bits < 8 * len(body) < 1.05 * bits


@pytest.mark.parametrize(
    "coder", ["ans", "rleg", "ctx-stream", "ctx-static", "ctx-blocks", "ctx-wide"]
)
def test_decode_levels_returns_the_coded_integers(coder: str) -> None:
    x = structured(120, 250, seed=4).ravel()  # large enough for the static models
    codec = RDQ(step=float(np.abs(x).max()) / 200, levels="uniform", coder=coder)
    lv = codec.decode_levels(codec.encode(x.reshape(120, 250)))
    expected = np.trunc(x.astype(np.float64) / lv.step + np.copysign(0.5, x)).astype(np.int32)
    np.testing.assert_array_equal(lv.levels, expected)
    assert lv.coder == coder
    if coder.startswith("ctx"):
        assert lv.tensors is not None and lv.tensors.tolist() == [[120, 250]]
    with pytest.raises(fedcodec.DecodeError):
        codec.decode_levels(fedcodec.get_codec({"id": "int8"}).encode(x))


def reference_rdoq(
    x: np.ndarray, inv_step: float, lam: float, tensors: list[tuple[int, int]], use: list[int]
) -> tuple[np.ndarray, float]:
    """RDOQ levels as docs/codecs/rdq.md describes them, one element at a time: the level
    of least squared error + lam · bits under the adaptive model as it stands."""
    probs = [K.PROB_ONE // 2] * K.NUM_PROBS
    cost = K.BIT_COST

    def bits(i: int, bit: int) -> float:
        return float(cost[K.PROB_ONE - probs[i]] if bit else cost[probs[i]])

    def adapt(i: int, bit: int) -> None:
        p = probs[i]
        probs[i] = p - (p >> K.MOVE_BITS) if bit else p + ((K.PROB_ONE - p) >> K.MOVE_BITS)

    def level_bits(sig: int, mag: int, k: int) -> float:
        if k == 0:
            return bits(sig, 0)
        b = bits(sig, 1) + 1.0  # the sign at one bit
        m = k - 1
        b += sum(bits(mag + j, 1) for j in range(min(m, K.MAG_UNARY)))
        if m < K.MAG_UNARY:
            return b + bits(mag + m, 0)
        nb = (m - K.MAG_UNARY + 1).bit_length() - 1
        return b + 2 * nb + 1

    q = np.zeros(x.size, np.int32)
    sse = 0.0
    start = 0
    for (rows, cols), side in zip(tensors, use, strict=True):
        v = np.abs(x[start : start + rows * cols].astype(np.float64)).reshape(rows, cols) * inv_step
        signs = x[start : start + rows * cols].reshape(rows, cols) < 0
        plain = np.floor(v + 0.5)  # the side information of plain rounding
        if side:
            total = side_index(float((plain**2).sum()), rows * cols)
            row = [side_index(float((r**2).sum()), cols) for r in plain]
            col = [side_index(float((c**2).sum()), rows) for c in plain.T]
        col_last = [0] * cols
        for i in range(rows):
            lsign, flip = 0, 0
            for j in range(cols):
                if side and (row[i] == 0 or col[j] == 0):
                    sse += v[i, j] ** 2
                    lsign = 0
                    continue
                if side:
                    lp = row[i] + col[j] - total - K.SIDE_OFFSET
                    ctx = min(max(lp + K.BIN_OFFSET, 0), K.NUM_BINS - 1)
                else:
                    ctx = K.NUM_BINS
                sig = K.SIG0 + 2 * ctx + int(lsign != 0)
                mag = K.MAG0 + ctx * K.MAG_UNARY
                kf = int(v[i, j])
                options = [0] + [k for k in (kf, kf + 1) if k >= 1]
                costs = [(v[i, j] - k) ** 2 + lam * level_bits(sig, mag, k) for k in options]
                best = options[int(np.argmin(costs))]
                sse += (v[i, j] - best) ** 2
                adapt(sig, int(best != 0))
                if best == 0:
                    lsign = 0
                    continue
                for k in range(min(best - 1, K.MAG_UNARY)):
                    adapt(mag + k, 1)
                if best - 1 < K.MAG_UNARY:
                    adapt(mag + best - 1, 0)
                sign = -1 if signs[i, j] else 1
                predicted = col_last[j] * flip if rows > 1 else 0
                adapt(K.SIGN0 + (predicted + 1) * 3 + lsign + 1, int(sign < 0))
                if rows > 1:
                    if col_last[j]:
                        flip = sign * col_last[j]
                    col_last[j] = sign
                lsign = sign
                q[start + i * cols + j] = sign * best
        start += rows * cols
    return q, sse


@settings(max_examples=60, deadline=None)
@given(level_tensors(), st.floats(0.0, 0.5))
def test_rdoq_kernel_matches_the_reference(
    case: tuple[np.ndarray, list[tuple[int, int]], list[int]], lam: float
) -> None:
    levels, shapes, use = case
    rng = np.random.default_rng(int(np.abs(levels).sum()) % 1000)
    x = (levels + rng.uniform(-0.5, 0.5, levels.size)).astype(np.float32) * 0.01
    inv = 100.0
    expected, sse = reference_rdoq(x, inv, lam, shapes, use)
    q = np.empty(x.size, np.int32)
    stats = np.zeros(3 * 17)
    got = K._ctx_rdoq(x, inv, lam, np.array(shapes, np.int64), np.array(use, np.int64), q, stats)
    np.testing.assert_array_equal(q, expected)
    assert got == pytest.approx(sse, rel=1e-9, abs=1e-9)
    # the statistics are those of the chosen non-zero levels
    v = np.abs(x.astype(np.float64)) * inv
    for k in range(1, 17):
        at = np.abs(q) == k
        assert stats[3 * k] == at.sum()
        assert stats[3 * k + 1] == pytest.approx(v[at].sum(), rel=1e-9, abs=1e-9)
        assert stats[3 * k + 2] == pytest.approx((v[at] ** 2).sum(), rel=1e-9, abs=1e-9)


def test_rdoq_spends_fewer_bits_at_the_same_error() -> None:
    """On a structured matrix, levels="rdoq" meets the NMSE target with fewer bits than
    plain rounding with the same coder, and decodes like any RDQ payload."""
    x = structured(200, 150, seed=5)
    a = fedcodec.measure(RDQ(nmse=0.05), x)
    b = fedcodec.measure(RDQ(nmse=0.05, levels="rdoq"), x)
    assert b["nmse"] <= 0.05 and b["bits"] < 0.99 * a["bits"]
    with pytest.raises(ValueError, match='levels="rdoq"'):
        RDQ(nmse=0.05, levels="rdoq", coder="ans")
    with pytest.raises(ValueError, match='levels="rdoq"'):
        RDQ(nmse=0.05, levels="rdoq", rounding="dither")


@pytest.mark.parametrize("kind", ["laplace", "frozen", "sparse"])
@pytest.mark.parametrize("rate", [{"nmse": 0.01}, {"nmse": 0.2}, {"lmbda": 0.02}])
def test_the_default_is_never_worse_than_auto_on_vectors(kind: str, rate: dict) -> None:
    """A vector has no matrix to exploit: the default coder must still match "auto"
    (including where run-length gamma's own step wins: a frozen 80 % of the update)."""
    rng = np.random.default_rng(1)
    x = rng.laplace(size=200_000).astype(np.float32)
    if kind == "frozen":
        x[:160_000] = 0.0
    elif kind == "sparse":
        x *= rng.random(x.size) < 0.02
    default = len(RDQ(**rate).encode(x))
    auto = len(RDQ(**rate, coder="auto").encode(x))
    assert default <= auto


@pytest.mark.parametrize("mode", [0, 1, 2])  # nearest, stochastic, dither
def test_values_decoded_row_by_row_are_the_levels_dequantized(mode: int) -> None:
    """``decode`` dequantizes each row as it is decoded (the levels never held whole): the
    same float32 numbers as the levels dequantized afterwards, element ``i`` at index ``i``
    of the random stream, with zero rows (side information) and large levels."""
    from fedcodec.kernels import quant as Q

    from fedcodec.container import Reader

    x = structured(40, 60, seed=8).reshape(-1).astype(np.float64)
    x = np.rint(x / np.sqrt(np.mean(x * x)) * 4.0)  # levels mostly within +-12
    q = np.concatenate([x, np.arange(-30, 30)]).astype(np.int32)
    q[:60] = 0  # a zero row
    q[300] = 40  # above the reconstruction table
    tensors = np.array([[40, 60], [1, 60]], np.int64)
    assert ctx_coder.choose_side(q, tensors).tolist() == [1, 0]  # the zero row is not coded
    recon = np.array([0.0, 0.9, 1.95, 3.0])
    step, stream = 0.25, np.uint64(99)
    expected = np.empty(q.size, np.float32)
    Q._dequantize(q, step, mode, recon, stream, expected)
    params, body = ctx_coder.encode(q, tensors, 8.0 * q.size)
    out = np.full(q.size, np.nan, np.float32)
    ctx_coder.decode(Reader(params, "p"), memoryview(body), out, mode, step, recon, stream)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(fedcodec.DecodeError):
        ctx_coder.decode(Reader(params, "p"), memoryview(body[:-3]), out, mode, step, recon, stream)
