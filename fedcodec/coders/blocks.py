"""What the block coders share (RDQ's coder ids 3 and 4): the blocks, the side section and
the body's layout.

Blocks are whole rows of about ``BLOCK_ELEMENTS`` elements, cut from the shapes alone
(small tensors share one), so each block is coded on its own and ``threads`` threads code
and decode them side by side with the same bytes for any thread count. The side
information (per tensor whether it sends row/column RMS indices, and those indices) is one
section before the blocks. Body: the side section's length and each block's (varints), then
the side section and the blocks. Byte for byte in ``docs/format.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..container import Reader, put_varint
from ..errors import DecodeError
from ..kernels import sctx as _k
from ..threads import default_threads, thread_map

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


@dataclass
class Side:
    """The side information as the block kernels read it: per tensor ``use`` (1: it sends
    indices) and ``totals`` (its RMS index); every tensor's rows' RMS indices
    (``row_idx``, 0: an all-zero row) and its columns' part of the context
    (``col_part``: the index, -1 for an all-zero column, 0 in a tensor without side
    information)."""

    use: np.ndarray
    totals: np.ndarray
    row_idx: np.ndarray
    col_part: np.ndarray


def _side(
    p: Plan, use: np.ndarray, totals: np.ndarray, row_idx: np.ndarray, col_idx: np.ndarray
) -> Side:
    col_part = np.where(col_idx != 0, col_idx, -1)
    for t in np.flatnonzero(use == 0):
        col_part[p.col_off[t] : p.col_off[t] + p.tensors[t, 1]] = 0
    return Side(use, totals, row_idx, col_part)


def side_sums(
    q: np.ndarray, p: Plan, use: np.ndarray, threads: int | None = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Every side tensor's rows' and columns' sums of squared levels (``use``: the tensors
    that send side information), block by block on ``threads`` threads: a block's rows
    are its own, its columns' partial sums are added up in block order (the levels are
    integers: their sums of squares are exact below 2**53, so the order does not change
    them). The blocks go in one wave when all their partial sums together are small
    beside the levels (matrices of many rows), else a wave of ``threads`` blocks at a
    time (each block of a very wide tensor holds a partial sum as wide as the tensor)."""
    tensors = p.tensors
    rsq = np.zeros(max(int(tensors[:, 0].sum()), 1))
    csq = np.zeros(max(int(tensors[:, 1].sum()), 1))
    todo = [j for j, segs in enumerate(p.blocks) if use[segs[:, 0]].any()]
    wave = max(1, default_threads() if threads is None else int(threads))
    touches = {j: np.unique(p.blocks[j][:, 0]) for j in todo}  # each block's tensors
    if 8 * sum(int(tensors[t, 1].sum()) for t in touches.values()) <= q.nbytes // 32:
        wave = max(len(todo), 1)  # the float64 partial sums: at most 1/32 more

    def one(j: int) -> tuple[np.ndarray, np.ndarray]:
        touched = touches[j]
        part_off = np.zeros(tensors.shape[0], np.int64)
        widths = tensors[touched, 1]
        part_off[touched] = np.concatenate([[0], np.cumsum(widths)[:-1]])
        part = np.zeros(int(widths.sum()))
        _k._side_sums(q, p.blocks[j], p.starts, tensors, use, p.row_off, part_off, rsq, part)
        return touched, part

    for w in range(0, len(todo), wave):
        for touched, part in thread_map(one, todo[w : w + wave], threads):
            at = 0
            for t in touched.tolist():
                cols, c = int(tensors[t, 1]), int(p.col_off[t])
                csq[c : c + cols] += part[at : at + cols]
                at += cols
    return rsq, csq


def side_section(
    q: np.ndarray, p: Plan, use: np.ndarray, threads: int | None = 1
) -> tuple[Side, bytes]:
    """The side information of levels ``q`` for the tensors in ``use``, and its section
    (the sums on ``threads`` threads)."""
    tensors = p.tensors
    t = tensors.shape[0]
    totals = np.zeros(t, np.int64)
    row_idx = np.zeros(max(int(tensors[:, 0].sum()), 1), np.int64)
    col_idx = np.zeros(max(int(tensors[:, 1].sum()), 1), np.int64)
    rsq, csq = side_sums(q, p, use, threads)
    _k._side_from_sums(tensors, use, rsq, csq, p.row_off, p.col_off, totals, row_idx, col_idx)
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
        raise AssertionError("the side section's buffer is short")
    return _side(p, use, totals, row_idx, col_idx), side[:nside].tobytes()


def assemble(tensors: np.ndarray, side: bytes, blocks: list[bytes]) -> tuple[bytes, bytes]:
    """(parameter bytes: the tensor count and shapes, body: the lengths, the side section
    and the blocks)."""
    head = bytearray(put_varint(len(side)))
    for blk in blocks:
        head += put_varint(len(blk))
    params = bytearray(put_varint(tensors.shape[0]))
    for rows, cols in tensors:
        params += put_varint(int(rows)) + put_varint(int(cols))
    return bytes(params), bytes(head) + side + b"".join(blocks)


def read_body(body: memoryview, p: Plan, what: str) -> tuple[np.ndarray, Side, np.ndarray]:
    """Split a body (``what`` names the coder in errors): (its bytes, the side
    information, the blocks' offsets into the bytes: block j is ``[off[j], off[j + 1])``)."""
    tensors = p.tensors
    b = Reader(body, f"{what} body")
    nside = b.varint("side section length", len(body))
    lengths = [b.varint("block length", len(body)) for _ in p.blocks]
    if b.pos + nside + sum(lengths) != len(body):
        raise DecodeError(f"{what}: the sections' lengths do not add up to the body")
    data = np.frombuffer(body, dtype=np.uint8)
    at = b.pos
    t = tensors.shape[0]
    use = np.zeros(t, np.int64)
    totals = np.zeros(t, np.int64)
    indices = np.zeros(int(tensors.sum()), np.int64)
    count = _k._side_decode(data[at : at + nside], tensors, use, totals, indices)
    if count < 0:
        raise DecodeError(f"{what}: invalid side section (status {count})")
    row_idx = np.zeros(max(int(tensors[:, 0].sum()), 1), np.int64)
    col_idx = np.zeros(max(int(tensors[:, 1].sum()), 1), np.int64)
    k = 0
    for i in np.flatnonzero(use):
        rows, cols = int(tensors[i, 0]), int(tensors[i, 1])
        row_idx[p.row_off[i] : p.row_off[i] + rows] = indices[k : k + rows]
        col_idx[p.col_off[i] : p.col_off[i] + cols] = indices[k + rows : k + rows + cols]
        k += rows + cols
    offsets = np.concatenate([[at + nside], at + nside + np.cumsum(lengths)]).astype(np.int64)
    return data, _side(p, use, totals, row_idx, col_idx), offsets


def check_blocks(statuses: list[int], what: str) -> None:
    """Raise ``DecodeError`` for the first block whose kernel failed."""
    for j, status in enumerate(statuses):
        if status < 0:
            raise DecodeError(f"{what}: invalid block {j} (status {status})")


#: ``run(section, p, side, j, a, q, values)``: a coder's kernel on block ``j`` (its first
#: element ``a``, its bytes ``section``); returns the kernel's status.
BlockKernel = Callable[[np.ndarray, Plan, Side, int, int, np.ndarray, np.ndarray], int]

_NO_VALUES = np.empty(0, dtype=np.float32)


def decode_blocks(
    tensors: np.ndarray,
    body: memoryview,
    what: str,
    threads: int | None,
    levels: np.ndarray | None,
    out: np.ndarray | None,
    run: BlockKernel,
) -> None:
    """Decode a body of blocks on ``threads`` threads with ``run``: into int32 ``levels``
    (the whole update's; ``values`` empty), or else into float32 ``out`` (``values`` the
    block's part of it, ``q`` a row's scratch: the widest row of the block), so that a
    block's thread holds one row's levels. Raises ``DecodeError`` for a failed block."""
    p = plan(tensors)
    data, side, offsets = read_body(body, p, what)
    edges = np.concatenate([[0], np.cumsum(p.sizes)]).astype(np.int64)

    def one(j: int) -> int:
        a, b = int(edges[j]), int(edges[j + 1])
        if out is None:
            assert levels is not None
            q, values = levels, _NO_VALUES
        else:
            q = np.empty(int(tensors[p.blocks[j][:, 0], 1].max(initial=1)), dtype=np.int32)
            values = out[a:b]
        return int(run(data[offsets[j] : offsets[j + 1]], p, side, j, a, q, values))

    check_blocks(thread_map(one, list(range(len(p.blocks))), threads), what)
