"""Static-context rANS coding of an update's levels, in blocks (RDQ's coder id 3).

The contexts of the adaptive context coder (``fedcodec.coders.ctx``: row/column scale side
information where it pays, the left neighbour, rank-1 sign prediction) with a static model
per block, sent, and a multi-symbol range-variant ANS coder (``fedcodec.kernels.sctx``).
Blocks are whole rows of about ``BLOCK_ELEMENTS`` elements, fixed by the shapes alone
(small tensors share one); each is coded on its own, so ``threads`` threads code and
decode them side by side with the same bytes for any thread count.

Parameters (after RDQ's): the tensor count, then each tensor's rows and columns (varints),
as the adaptive coder's. Body: the side section's length and each block's (varints), then
the side section and the blocks. Byte for byte in ``docs/format.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..container import Reader, put_varint
from ..errors import DecodeError
from ..framing import _map
from ..kernels import quant as _quantize
from ..kernels import sctx as _k
from . import ctx as ctx_coder

_MODEL_BYTES = 8192  # room for any block's model (59 contexts of at most 16 symbols)


@dataclass
class Plan:
    """Where each tensor starts, its rows' and columns' offsets into the side arrays, and
    the blocks: ``blocks[b]`` is an int64 ``(k, 3)`` array of (tensor, first row, end
    row) segments."""

    tensors: np.ndarray
    starts: np.ndarray
    row_off: np.ndarray
    col_off: np.ndarray
    blocks: list[np.ndarray]
    sizes: list[int]


def plan(tensors: np.ndarray) -> Plan:
    """Cut the tensors' rows into blocks of at least ``BLOCK_ELEMENTS`` elements (the last
    may be smaller; a row is never cut): from the shapes alone."""
    sizes_t = tensors[:, 0] * tensors[:, 1]
    starts = np.concatenate([[0], np.cumsum(sizes_t)[:-1]]).astype(np.int64)
    row_off = np.concatenate([[0], np.cumsum(tensors[:, 0])[:-1]]).astype(np.int64)
    col_off = np.concatenate([[0], np.cumsum(tensors[:, 1])[:-1]]).astype(np.int64)
    blocks: list[np.ndarray] = []
    sizes: list[int] = []
    cur: list[tuple[int, int, int]] = []
    cur_n = 0
    for t, (rows, cols) in enumerate(tensors.tolist()):
        r = 0
        while r < rows:
            need = -(-(_k.BLOCK_ELEMENTS - cur_n) // cols)  # rows to fill the block
            take = min(rows - r, max(need, 1))
            cur.append((t, r, r + take))
            cur_n += take * cols
            r += take
            if cur_n >= _k.BLOCK_ELEMENTS:
                blocks.append(np.array(cur, np.int64).reshape(-1, 3))
                sizes.append(cur_n)
                cur, cur_n = [], 0
    if cur:
        blocks.append(np.array(cur, np.int64).reshape(-1, 3))
        sizes.append(cur_n)
    return Plan(tensors, starts, row_off, col_off, blocks, sizes)


def encode(
    q: np.ndarray, tensors: np.ndarray, threads: int | None = 1, use: np.ndarray | None = None
) -> tuple[bytes, bytes]:
    """Code int32 levels (``|q| <= 2**30``); returns (parameter bytes, body). ``use``: the
    tensors that send side information (default: where it pays, as the adaptive coder
    chooses)."""
    ctx_coder._check(q, tensors)
    if use is None:
        use = ctx_coder.choose_side(q, tensors)
    p = plan(tensors)
    t = tensors.shape[0]
    totals = np.zeros(t, np.int64)
    row_idx = np.zeros(max(int(tensors[:, 0].sum()), 1), np.int64)
    col_idx = np.zeros(max(int(tensors[:, 1].sum()), 1), np.int64)
    _k._side_indices(q, p.starts, tensors, use, totals, row_idx, col_idx, p.row_off, p.col_off)
    col_part = np.where(col_idx != 0, col_idx, -1)
    parts = [
        np.concatenate(
            [
                row_idx[p.row_off[i] : p.row_off[i] + tensors[i, 0]],
                col_idx[p.col_off[i] : p.col_off[i] + tensors[i, 1]],
            ]
        )
        for i in range(t)
        if use[i]
    ]
    indices = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    side = np.zeros(16 + t + _MODEL_BYTES // 4 + 4 * indices.size, np.uint8)
    nside = _k._side_encode(use, totals, indices, side)
    if nside < 0:
        raise AssertionError("sctx: the side section's buffer is short")

    def one(b: int) -> bytes:
        segs = p.blocks[b]
        n_el = p.sizes[b]
        lctx = np.empty(n_el, np.uint8)
        sctx = np.empty(n_el, np.uint8)
        counts = np.zeros((_k.NUM_CTX, _k.NSYM), np.int64)
        raw = _k._block_contexts(
            q, segs, p.starts, tensors, use, totals, row_idx, col_part,
            p.row_off, p.col_off, lctx, sctx, counts,
        )  # fmt: skip
        n_coded = int(counts[: _k.NUM_LEVEL_CTX].sum())
        alpha = np.full(_k.NUM_CTX, _k.NSYM, np.int64)
        alpha[_k.NUM_LEVEL_CTX :] = 2
        freq_p = np.zeros((_k.NUM_CTX, _k.NSYM), np.int64)
        prec = np.zeros(_k.NUM_CTX, np.int64)
        bits = _k._build_model(counts, alpha, freq_p, prec)
        model = np.zeros(_MODEL_BYTES, np.uint8)
        head = _k._model_section(freq_p, prec, model)
        shift = np.where(prec >= 0, _k.PREC - prec, 0)
        freq = freq_p << shift[:, None]
        cum = np.zeros_like(freq)
        cum[:, 1:] = np.cumsum(freq, axis=1)[:, :-1]
        rcp, rsh, bias = _k.reciprocals(freq, cum)
        cap = int(bits / 16.0 * 1.02) + 64 + raw
        for _ in range(2):
            words = np.empty(cap, np.uint16)
            x0, x1, pos = _k._block_encode(
                q, segs, p.starts, tensors, use, row_idx, col_part, p.row_off, p.col_off,
                lctx, sctx, freq, rcp, rsh, bias, n_coded, words,
            )  # fmt: skip
            if x0 >= 0:
                break
            cap = 2 * n_coded + 3 * raw + 64  # every push at most one word
        else:
            raise AssertionError("sctx: the block's buffer is short")
        state = np.array([x0 >> 16, x0 & 0xFFFF, x1 >> 16, x1 & 0xFFFF], "<u2").tobytes()
        return model[:head].tobytes() + state + words[pos:].astype("<u2").tobytes()

    blocks = _map(one, list(range(len(p.blocks))), threads)
    head = bytearray(put_varint(nside))
    for blk in blocks:
        head += put_varint(len(blk))
    params = bytearray(put_varint(t))
    for rows, cols in tensors:
        params += put_varint(int(rows)) + put_varint(int(cols))
    return bytes(params), bytes(head) + side[:nside].tobytes() + b"".join(blocks)


def decode_levels(
    r: Reader, body: memoryview, n: int, threads: int | None = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Read the tensor shapes from ``r`` and decode the body's ``n`` levels; returns
    (int32 levels, the ``(T, 2)`` tensors)."""
    tensors = ctx_coder.read_tensors(r, n, "rdq/sctx")
    p = plan(tensors)
    b = Reader(body, "rdq/sctx body")
    nside = b.varint("side section length", len(body))
    lengths = [b.varint("block length", len(body)) for _ in p.blocks]
    if b.pos + nside + sum(lengths) != len(body):
        raise DecodeError("rdq/sctx: the sections' lengths do not add up to the body")
    data = np.frombuffer(body, dtype=np.uint8)
    at = b.pos
    t = tensors.shape[0]
    use = np.zeros(t, np.int64)
    totals = np.zeros(t, np.int64)
    indices = np.zeros(int(tensors.sum()), np.int64)
    count = _k._side_decode(data[at : at + nside], tensors, use, totals, indices)
    if count < 0:
        raise DecodeError(f"rdq/sctx: invalid side section (status {count})")
    at += nside
    row_idx = np.zeros(max(int(tensors[:, 0].sum()), 1), np.int64)
    col_part = np.zeros(max(int(tensors[:, 1].sum()), 1), np.int64)
    k = 0
    for i in range(t):
        if use[i]:
            rows, cols = int(tensors[i, 0]), int(tensors[i, 1])
            row_idx[p.row_off[i] : p.row_off[i] + rows] = indices[k : k + rows]
            c = indices[k + rows : k + rows + cols]
            col_part[p.col_off[i] : p.col_off[i] + cols] = np.where(c != 0, c, -1)
            k += rows + cols
    q = np.empty(n, dtype=np.int32)
    offsets = np.concatenate([[at], at + np.cumsum(lengths)]).astype(np.int64)

    def one(j: int) -> int:
        section = data[offsets[j] : offsets[j + 1]]
        status = _k._block_decode(
            section, p.blocks[j], p.starts, tensors, use, totals, row_idx, col_part,
            p.row_off, p.col_off, kernels.MAX_ABS_LEVEL, q,
        )  # fmt: skip
        return int(status)

    for j, status in enumerate(_map(one, list(range(len(p.blocks))), threads)):
        if status < 0:
            raise DecodeError(f"rdq/sctx: invalid block {j} (status {status})")
    return q, tensors


def decode(
    r: Reader,
    body: memoryview,
    out: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    stream: np.uint64,
    threads: int | None = 1,
) -> None:
    """Read the tensor shapes from ``r`` and decode the body into float32 ``out``."""
    q, _ = decode_levels(r, body, out.shape[0], threads)
    _quantize._dequantize(q, step, mode, recon, stream, out)
