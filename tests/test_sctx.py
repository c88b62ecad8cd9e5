"""RDQ's static-context coder (coder id 3): the kernels against a slow pure-Python
reference written from docs/format.md (contexts, models, two interleaved rANS states), round
trips across blocks and threads, hostile bytes, and the codec end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
from common import (
    check_mapping_round_trip,
    count_refused_bodies,
    expect_decode_error,
    with_crc,
)
from fedcodec.kernels import ctx as C
from fedcodec.kernels import sctx as K
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rdq import structured

import fedcodec
from fedcodec import RDQ, container
from fedcodec.coders import sctx as sctx_coder
from fedcodec.container import Reader, put_varint
from fedcodec.errors import DecodeError


# -- the reference ----------------------------------------------------------------------------
class Bits:
    """Bits packed least significant first."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def put(self, value: int, count: int) -> None:
        self.bits += [(value >> b) & 1 for b in range(count)]

    def gamma(self, v: int) -> None:
        """Elias-gamma as run-length gamma's: n - 1 zeros, a one, the low n - 1 bits."""
        n = v.bit_length()
        self.put(0, n - 1)
        self.put(1, 1)
        self.put(v - (1 << (n - 1)), n - 1)

    def to_bytes(self, align: int) -> bytes:
        """Padded with zeros to whole ``align``-byte units."""
        nbytes = -(-len(self.bits) // (8 * align)) * align
        out = bytearray(nbytes)
        for i, b in enumerate(self.bits):
            out[i >> 3] |= b << (i & 7)
        return bytes(out)


def side_index(sumsq: float, count: int) -> int:
    if sumsq <= 0:
        return 0
    return min(max(round(math.log2(sumsq / count)) + C.SIDE_OFFSET, 1), 127)


def quantize_freqs(counts: list[int], p: int) -> list[int] | None:
    total, scale = sum(counts), 1 << p
    if sum(c > 0 for c in counts) > scale:
        return None
    f = [max(1, (c * scale + total // 2) // total) if c else 0 for c in counts]
    while sum(f) != scale:
        big = f.index(max(f))
        if sum(f) < scale:
            f[big] += scale - sum(f)
        else:
            take = min(sum(f) - scale, f[big] - 1)
            if take <= 0:
                return None
            f[big] -= take
    return f


def gamma_len(v: int) -> int:
    return 2 * (v.bit_length() - 1) + 1


def model(counts: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Per context the precision of least model plus data bits (-1: unused) and the
    frequencies at it."""
    precs, freqs = [], []
    for row in counts:
        if not sum(row):
            precs.append(-1)
            freqs.append([0] * len(row))
            continue
        best, best_p, best_f = math.inf, -1, None
        for p in range(K.PREC + 1):
            f = quantize_freqs(row, p)
            if f is None:
                continue
            top = max(s for s in range(len(f)) if f[s])
            cost = 1.0 + 4.0 + gamma_len(top + 1)
            for s in range(top):
                cost += gamma_len(f[s] + 1)
            for s, c in enumerate(row):
                if c:
                    cost += c * (p - math.log2(f[s]))
            if cost < best:
                best, best_p, best_f = cost, p, f
        precs.append(best_p)
        freqs.append(best_f)  # type: ignore[arg-type]
    return precs, freqs


def write_model(bits: Bits, precs: list[int], freqs: list[list[int]]) -> None:
    for p, f in zip(precs, freqs, strict=True):
        bits.put(p >= 0, 1)
        if p < 0:
            continue
        bits.put(p, 4)
        top = max(s for s in range(len(f)) if f[s])
        bits.gamma(top + 1)
        for s in range(top):
            bits.gamma(f[s] + 1)


def rans(symbols: list[tuple[int, int]], states: int) -> tuple[list[int], list[int]]:
    """rANS with plain division: symbol i (``(freq, cum)`` out of ``2**PREC``) on state
    ``i % states``, pushed in reverse; (final states, words in reading order)."""
    x = [K.RANS_L] * states
    emitted = []
    for i in range(len(symbols) - 1, -1, -1):
        f, c = symbols[i]
        s = i % states
        if x[s] >= f << (31 - K.PREC):
            emitted.append(x[s] & 0xFFFF)
            x[s] >>= 16
        x[s] = ((x[s] // f) << K.PREC) + x[s] % f + c
    return x, emitted[::-1]


def u16(words: list[int]) -> bytes:
    return np.array(words, "<u2").tobytes()


def reference_encode(
    q: np.ndarray, shapes: list[tuple[int, int]], use: list[int], block: int
) -> tuple[bytes, bytes]:
    """(parameter bytes, body) of the coder as docs/format.md describes it, with blocks of
    at least ``block`` elements."""
    mats, start = [], 0
    for rows, cols in shapes:
        mats.append(q[start : start + rows * cols].astype(np.int64).reshape(rows, cols))
        start += rows * cols
    totals, rowi, coli = [], [], []
    for m, side in zip(mats, use, strict=True):
        sq = m.astype(np.float64) ** 2
        totals.append(side_index(float(sq.sum()), m.size) if side else 0)
        rowi.append([side_index(float(r.sum()), m.shape[1]) for r in sq] if side else [])
        coli.append([side_index(float(c.sum()), m.shape[0]) for c in sq.T] if side else [])
    # the side section
    bits = Bits()
    for t, side in enumerate(use):
        bits.put(side, 1)
        if side:
            bits.put(totals[t], C.SIDE_BITS)
    indices = [v for t in range(len(use)) if use[t] for v in rowi[t] + coli[t]]
    if not indices:
        side_section = bits.to_bytes(1)
    else:
        hist = [indices.count(s) for s in range(1 << C.SIDE_BITS)]
        precs, freqs = model([hist])
        write_model(bits, precs, freqs)
        f = [v << (K.PREC - precs[0]) for v in freqs[0]]
        cum = [sum(f[:s]) for s in range(len(f))]
        (x,), words = rans([(f[s], cum[s]) for s in indices], 1)
        side_section = bits.to_bytes(2) + u16([x >> 16, x & 0xFFFF, *words])
    # the blocks: whole rows, cut from the shapes alone
    blocks: list[list[tuple[int, int, int]]] = [[]]
    filled = 0
    for t, (rows, cols) in enumerate(shapes):
        r = 0
        while r < rows:
            take = min(rows - r, max(-(-(block - filled) // cols), 1))
            blocks[-1].append((t, r, r + take))
            filled += take * cols
            r += take
            if filled >= block:
                blocks.append([])
                filled = 0
    if not blocks[-1]:
        blocks.pop()
    sections = []
    for segs in blocks:
        # (context, symbol) in decoding order; a raw chunk as (-1, value, nbits)
        order: list[tuple[int, int, int]] = []
        for t, r0, r1 in segs:
            m, side, cols = mats[t], use[t], shapes[t][1]
            top = C.NUM_BINS - 1 if side else C.NUM_BINS
            col_last = [0] * cols  # reset at every segment: a block stands alone
            for i in range(r0, r1):
                if side and rowi[t][i] == 0:
                    continue
                lsign = flip = 0
                for j in range(cols):
                    if side and coli[t][j] == 0:
                        lsign = 0
                        continue
                    if side:
                        lp = rowi[t][i] + coli[t][j] - totals[t] - C.SIDE_OFFSET + C.BIN_OFFSET
                        ctx = min(max(lp, 0), top)
                    else:
                        ctx = C.NUM_BINS
                    lc = 2 * ctx + (lsign != 0)
                    v = int(m[i, j])
                    order.append((lc, min(abs(v), K.ESC), 0))
                    if v == 0:
                        lsign = 0
                        continue
                    if abs(v) >= K.ESC:
                        w = abs(v) - K.ESC + 1
                        nb = w.bit_length() - 1
                        low = w - (1 << nb)
                        order.append((-1, nb, K.NB_BITS))
                        if nb > K.CHUNK_BITS:
                            order.append((-1, low & ((1 << K.CHUNK_BITS) - 1), K.CHUNK_BITS))
                            order.append((-1, low >> K.CHUNK_BITS, nb - K.CHUNK_BITS))
                        elif nb:
                            order.append((-1, low, nb))
                    cl = col_last[j] if shapes[t][0] > 1 else 0
                    sign = -1 if v < 0 else 1
                    order.append((K.NUM_LEVEL_CTX + (cl * flip + 1) * 3 + lsign + 1, v < 0, 0))
                    if cl:
                        flip = sign * cl
                    if shapes[t][0] > 1:
                        col_last[j] = sign
                    lsign = sign
        counts = [[0] * K.NSYM for _ in range(K.NUM_LEVEL_CTX)]
        counts += [[0, 0] for _ in range(K.NUM_SIGN_CTX)]
        for c, s, _ in order:
            if c >= 0:
                counts[c][s] += 1
        precs, freqs = model(counts)
        bits = Bits()
        write_model(bits, precs, freqs)
        symbols = []
        for c, s, nbits in order:
            if c < 0:
                f = 1 << (K.PREC - nbits)
                symbols.append((f, s * f))
            else:
                f = [v << (K.PREC - precs[c]) for v in freqs[c]]
                symbols.append((f[s], sum(f[:s])))
        (x0, x1), words = rans(symbols, 2)
        sections.append(bits.to_bytes(2) + u16([x0 >> 16, x0 & 0xFFFF, x1 >> 16, x1 & 0xFFFF]))
        sections[-1] += u16(words)
    params = bytes(put_varint(len(shapes)))
    for rows, cols in shapes:
        params += bytes(put_varint(rows)) + bytes(put_varint(cols))
    head = bytes(put_varint(len(side_section)))
    for s in sections:
        head += bytes(put_varint(len(s)))
    return params, head + side_section + b"".join(sections)


# -- kernels against the reference ------------------------------------------------------------
@st.composite
def level_tensors(draw: st.DrawFn) -> tuple[np.ndarray, list[tuple[int, int]], list[int]]:
    shapes = draw(
        st.lists(st.tuples(st.integers(1, 14), st.integers(1, 14)), min_size=1, max_size=4)
    )
    n = sum(r * c for r, c in shapes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.floats(0.0, 1.0))
    scale = 10.0 ** draw(st.floats(-1, 3))
    q = np.rint(rng.laplace(size=n) * scale * (rng.random(n) < density))
    if draw(st.booleans()) and n:
        k = draw(st.integers(1, 3))
        q[rng.integers(n, size=k)] = draw(st.sampled_from([2**30, -(2**30), 17, -300, 70_000]))
    # side information only where the format allows it (rows, cols >= 2, 64 elements)
    use = [draw(st.integers(0, 1)) * (r >= 2 and c >= 2 and r * c >= 64) for r, c in shapes]
    return q.astype(np.int32), shapes, use


def decode_levels(params: bytes, body: bytes, n: int, threads: int = 1) -> np.ndarray:
    q, _ = sctx_coder.decode_levels(
        Reader(memoryview(params), "test"), memoryview(body), n, threads
    )
    return q


@settings(max_examples=120, deadline=None)
@given(level_tensors(), st.sampled_from([16, 50, 200, 1 << 20]))
def test_kernels_match_the_reference_and_round_trip(
    case: tuple[np.ndarray, list[tuple[int, int]], list[int]],
    block: int,
) -> None:
    q, shapes, use = case
    tensors = np.array(shapes, np.int64)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(K, "BLOCK_ELEMENTS", block)  # small blocks: many of them
        params, body = sctx_coder.encode(q, tensors, 1, np.array(use, np.int64))
        assert (params, body) == reference_encode(q, shapes, use, block)
        assert sctx_coder.encode(q, tensors, 3, np.array(use, np.int64)) == (params, body)
        for threads in (1, 3):
            np.testing.assert_array_equal(decode_levels(params, body, q.size, threads), q)


def test_blocks_are_whole_rows_of_at_least_block_elements() -> None:
    tensors = np.array([[3000, 700], [10, 10], [1, 5000]], np.int64)
    p = sctx_coder.plan(tensors)
    assert sum(p.sizes) == int((tensors[:, 0] * tensors[:, 1]).sum())
    assert all(size >= K.BLOCK_ELEMENTS for size in p.sizes[:-1])
    assert p.sizes[0] == 1498 * 700  # ceil(2**20 / 700) rows
    for segs, size in zip(p.blocks, p.sizes, strict=True):
        assert sum((r1 - r0) * tensors[t, 1] for t, r0, r1 in segs) == size


def test_truncated_extended_or_corrupted_bodies_are_refused() -> None:
    q = np.rint(structured(40, 60, seed=4).reshape(-1) / 2).astype(np.int32)
    tensors = np.array([[40, 60]], np.int64)
    params, body = sctx_coder.encode(q, tensors)
    refused = count_refused_bodies(lambda b: decode_levels(params, b, q.size), body)
    assert refused > 150  # a flip mostly breaks the states' return to 2**15


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 40), st.integers(1, 40))
def test_decoder_on_random_bytes(data: bytes, rows: int, cols: int) -> None:
    params = bytes(put_varint(1) + put_varint(rows) + put_varint(cols))
    try:
        back = decode_levels(params, data, rows * cols)
    except DecodeError:
        return
    assert np.abs(back.astype(np.int64)).max(initial=0) <= 2**30


# -- the codec --------------------------------------------------------------------------------
def test_rdq_codes_a_multi_block_update_and_decodes_it_on_threads() -> None:
    x = structured(1200, 1000, seed=7)  # 1.2M elements: two blocks
    codec = RDQ(nmse=0.05, coder="ctx-static")
    payload = codec.encode_vector(x.reshape(-1), layout=fedcodec.flatten({"w": x})[1])
    assert coder_id(payload) == 3  # the static coder won
    assert (
        codec.encode_vector(x.reshape(-1), layout=fedcodec.flatten({"w": x})[1], threads=2)
        == payload
    )
    one, two = codec.decode(payload), codec.decode(payload, threads=2)
    np.testing.assert_array_equal(one, two)
    err = float(
        ((one.astype(np.float64) - x.reshape(-1)) ** 2).sum() / (x.astype(np.float64) ** 2).sum()
    )
    assert err <= 0.05 * 1.001


def coder_id(payload: bytes) -> int:
    return container.unpack(payload).params[0] >> 3 & 3  # flags bits 3-4


def test_rdq_round_trips_many_small_tensors() -> None:
    rng = np.random.default_rng(3)
    update = {}
    for i in range(40):
        w = structured(30 + i, 40 + 2 * i, seed=i)
        update[f"layer{i}.weight"] = w / np.sqrt(np.mean(w.astype(np.float64) ** 2))
    update |= {f"layer{i}.bias": rng.laplace(size=30 + i).astype(np.float32) for i in range(40)}
    codec = RDQ(nmse=0.05, coder="ctx-static")
    assert coder_id(codec.encode(update)) == 3
    check_mapping_round_trip(codec, update)


def test_a_corrupted_rdq_payload_raises_decode_error() -> None:
    x = structured(120, 250, seed=90)
    codec = RDQ(nmse=0.02, coder="ctx-static")
    payload = codec.encode(x)
    assert coder_id(payload) == 3
    start = len(payload) - 4 - len(container.unpack(payload).body)
    rng = np.random.default_rng(1)
    refused = 0
    for _ in range(100):
        bad = bytearray(payload)
        bad[int(rng.integers(start, len(bad) - 4))] ^= 1 << int(rng.integers(8))
        try:
            out = codec.decode(with_crc(bytes(bad)))
        except DecodeError:
            refused += 1
        else:
            assert out.shape == x.shape and np.isfinite(out).all()
    assert refused > 50
    for cut in (5, 40, len(payload) // 2):
        expect_decode_error(codec, with_crc(payload[:-cut]))


@pytest.mark.parametrize("second", [0, 1])
@pytest.mark.parametrize("big", [0, 1 << 21, 1 << 27])
def test_side_sums_are_the_squares_summed_in_order(big: int, second: int) -> None:
    """The side information's sums of squared levels, per row and per column of each side
    tensor of a block, are the float64 sums in element order, also where a row holds levels
    above 2**20 (their squares no longer add up exactly) or sums past 2**53; a tensor
    without side information leaves its sums untouched, and one after another goes to its
    own rows and columns (``second``)."""
    from fedcodec.coders import blocks

    q2d = np.rint(structured(30, 50, seed=11) * 3.0).astype(np.int32)
    q2d[4] = 1
    q2d[4, 0] = big  # then ones: in floats, each lost past 2**53
    q2d[9, 3] = -big
    tail = np.arange(-20, 20, dtype=np.int32)
    q = np.concatenate([q2d.reshape(-1), tail])
    tensors = np.array([[30, 50], [1, 40]], np.int64)
    p = blocks.plan(tensors)
    use = np.array([1, second], np.int64)
    rsq = np.zeros(int(tensors[:, 0].sum()))
    csq = np.zeros(int(tensors[:, 1].sum()))
    for segs in p.blocks:
        K._side_sums(q, segs, p.starts, tensors, use, p.row_off, p.col_off, rsq, csq)
    squares = q2d.astype(np.float64) ** 2
    rows = [float(np.cumsum(r)[-1]) for r in squares]  # cumsum: in order
    np.testing.assert_array_equal(rsq[:30], rows)
    np.testing.assert_array_equal(csq[:50], np.cumsum(squares, axis=0)[-1])
    if second:
        np.testing.assert_array_equal(rsq[30:], [float((tail.astype(np.float64) ** 2).sum())])
        np.testing.assert_array_equal(csq[50:], tail.astype(np.float64) ** 2)
    else:
        assert not rsq[30:].any() and not csq[50:].any()  # no side information: untouched


@pytest.mark.parametrize("mode", [0, 1, 2])  # nearest, stochastic, dither
def test_values_decoded_row_by_row_are_the_levels_dequantized(
    mode: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``decode`` dequantizes each row as it is decoded, in each block's thread: the same
    float32 numbers as the levels dequantized afterwards (element ``i`` at index ``i`` of
    the random stream), across four blocks, with a zero row and large levels."""
    from fedcodec.kernels import quant as Q

    monkeypatch.setattr(K, "BLOCK_ELEMENTS", 1000)
    x = structured(50, 70, seed=1).reshape(-1).astype(np.float64)
    x = np.rint(x / np.sqrt(np.mean(x * x)) * 4.0)  # levels mostly within +-12
    q = np.concatenate([x, np.arange(-150, 150), np.arange(72) % 5 - 2]).astype(np.int32)
    q[:70] = 0  # a zero row
    q[500] = 40  # above the reconstruction table
    tensors = np.array([[50, 70], [1, 300], [9, 8]], np.int64)
    assert len(sctx_coder.plan(tensors).blocks) == 4
    recon = np.array([0.0, 0.9, 1.95, 3.0])
    step, stream = 0.25, np.uint64(4321)
    expected = np.empty(q.size, np.float32)
    Q._dequantize(q, step, mode, recon, stream, expected)
    for use in ([1, 0, 1], [0, 0, 0]):
        params, body = sctx_coder.encode(q, tensors, 1, np.array(use, np.int64))
        for threads in (1, 3):
            out = np.full(q.size, np.nan, np.float32)
            r = Reader(params, "p")
            sctx_coder.decode(r, memoryview(body), out, mode, step, recon, stream, threads)
            np.testing.assert_array_equal(out, expected)
