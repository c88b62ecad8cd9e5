"""Context-adaptive coding of an update's levels, tensor by tensor (RDQ's ``coder="ctx"``).

Each tensor is a ``rows × cols`` matrix (a conv kernel: out-channels × the rest; a vector:
one row). Where it pays, a tensor sends the RMS of each row and column of its levels as
side information, and each level is coded in the context of its predicted scale (row RMS ×
column RMS / tensor RMS) and of its left neighbour: the structure of real updates (inputs
that never fire give zero columns, inactive units zero rows) costs next to nothing. The
encoder chooses per tensor, from each choice's exact cost, whether side information pays.
The bitstream is one adaptive binary range-coded stream (``fedcodec.kernels.ctx``).

Parameters (after RDQ's): the tensor count, then each tensor's rows and columns (varints);
the body is the stream. Byte for byte in ``docs/format.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..container import Reader, put_varint
from ..errors import DecodeError
from ..kernels import ctx as _ctx
from ..threads import thread_map

#: A tensor with fewer elements than this never sends side information.
MIN_SIDE_ELEMENTS = 64
#: The choice of side information for a larger tensor is made on a subset of its rows.
CHOICE_ELEMENTS = 1 << 16
_EMPTY_OUT = np.empty(0, dtype=np.uint8)  # the dry runs write nothing
_NO_COUNTS = np.empty(0, dtype=np.int64)


def tensors_array(tensors: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(rows, cols) per tensor as an int64 ``(T, 2)`` array, empty tensors left out."""
    kept = [(r, c) for r, c in tensors if r * c > 0]
    return np.array(kept, dtype=np.int64).reshape(-1, 2)


def _check(q: np.ndarray, tensors: np.ndarray) -> None:
    """The kernels' contract: 1-d int32 levels, (rows, cols) >= 1 adding up to them."""
    if not (isinstance(q, np.ndarray) and q.dtype == np.int32 and q.ndim == 1):
        raise ValueError("levels must be a one-dimensional int32 array")
    if tensors.ndim != 2 or tensors.shape[1] != 2 or (tensors.size and tensors.min() < 1):
        raise ValueError("tensors must be (rows, cols) pairs, each at least 1")
    if int((tensors[:, 0] * tensors[:, 1]).sum()) != q.shape[0]:
        raise ValueError(f"the tensors do not hold the {q.shape[0]} levels")


@dataclass
class Sample:
    """A block of each tensor, for cost estimates: every k-th row (all columns), or for a
    tensor with few rows a contiguous block of columns (all rows), so that neighbours stay
    neighbours."""

    index: np.ndarray | None  # positions in the flat levels; None: all of them
    tensors: np.ndarray  # (T, 2) the sampled rows and columns
    full: np.ndarray  # (T, 2) the tensors' own

    def take(self, q: np.ndarray) -> np.ndarray:
        return q if self.index is None else q[self.index]


def sample(tensors: np.ndarray, budget: np.ndarray) -> Sample:
    """About ``budget[t]`` elements of tensor t (all of it if it is smaller)."""
    parts, shapes = [], []
    whole = True
    start = 0
    for (rows, cols), b in zip(tensors.tolist(), budget.tolist(), strict=True):
        size = rows * cols
        stride = -(-size // max(int(b), 1))
        if stride <= 1:
            r, c, idx = rows, cols, np.arange(start, start + size)
        elif rows >= 2 * stride:
            keep = np.arange(0, rows, stride)
            r, c = keep.size, cols
            idx = (start + keep[:, None] * cols + np.arange(cols)).ravel()
        else:
            c = -(-cols // stride)
            first = (cols - c) // 2
            r = rows
            idx = (start + np.arange(rows)[:, None] * cols + first + np.arange(c)).ravel()
        whole = whole and (r, c) == (rows, cols)
        parts.append(idx)
        shapes.append((r, c))
        start += size
    index = None if whole else np.concatenate(parts).astype(np.int64)
    return Sample(index, np.array(shapes, np.int64).reshape(-1, 2), tensors)


def grid_sample(tensors: np.ndarray, budget: np.ndarray) -> Sample:
    """About ``budget[t]`` elements of tensor t (all of it if it is smaller): a grid of
    evenly spaced rows and a contiguous block of columns in the middle, as many of each
    (about √budget) where the tensor allows, so that the sampled rows' and columns' RMS,
    and with them the contexts, come from many elements each (every k-th row, as
    :func:`sample` takes, leaves a column's RMS to a few of its elements: columns that
    look empty in those rows are free there and not in the tensor)."""
    parts, shapes = [], []
    start = 0
    for (rows, cols), b in zip(tensors.tolist(), budget.tolist(), strict=True):
        size = rows * cols
        b = max(int(b), 1)
        if size <= b:
            r, c, idx = rows, cols, np.arange(start, start + size)
        else:
            r = min(max(math.isqrt(b), 1), rows)
            c = min(max(b // r, 1), cols)
            r = min(max(b // c, 1), rows)
            keep = (np.arange(r) * (rows / r)).astype(np.int64)
            first = (cols - c) // 2
            idx = (start + keep[:, None] * cols + first + np.arange(c)).ravel()
        parts.append(idx)
        shapes.append((r, c))
        start += size
    index = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    return Sample(index, np.array(shapes, np.int64).reshape(-1, 2), tensors)


def eligible(tensors: np.ndarray) -> np.ndarray:
    """Per tensor, 1 where it may send side information (a large enough matrix)."""
    rows, cols = tensors[:, 0], tensors[:, 1]
    return ((rows >= 2) & (cols >= 2) & (rows * cols >= MIN_SIDE_ELEMENTS)).astype(np.int64)


def has_structure(tensors: np.ndarray) -> bool:
    """Whether any tensor is a matrix large enough to send side information."""
    return bool(eligible(tensors).any())


def costs(q: np.ndarray, s: Sample, threads: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Estimated bits of each whole tensor without and with side information (inf where it
    cannot send any), from the ideal adaptive costs of its sampled levels ``q``: the
    levels' cost scales with the elements, the side information's with rows + columns.
    The two dry runs run side by side on ``threads`` threads."""
    _check(q, s.tensors)
    t = s.tensors.shape[0]
    use = eligible(s.full) & eligible(s.tensors)
    choices = [np.zeros(t, np.int64)] + ([use] if use.any() else [])

    def dry(side: np.ndarray) -> np.ndarray:
        cost = np.zeros(1 + 2 * t)
        _ctx._ctx_encode(q, s.tensors, side, _EMPTY_OUT, cost, _NO_COUNTS)
        return cost

    runs = thread_map(dry, choices, threads)
    scale = s.full.prod(axis=1) / s.tensors.prod(axis=1)
    plain = runs[0][1::2] * scale
    side = np.full(t, np.inf)
    if len(runs) > 1:
        side_cost = runs[1]
        levels, info = side_cost[1::2] - side_cost[2::2], side_cost[2::2]
        per_index = info / s.tensors.sum(axis=1)  # the tensor RMS's 7 bits are noise here
        side = np.where(use == 1, levels * scale + per_index * s.full.sum(axis=1), np.inf)
    return plain, side


def choose_side(q: np.ndarray, tensors: np.ndarray, threads: int | None = 1) -> np.ndarray:
    """Per tensor, 1 where side information lowers its estimated cost (on a sample of
    ``CHOICE_ELEMENTS`` levels of each tensor, see :func:`costs`; its two dry runs on
    ``threads`` threads)."""
    _check(q, tensors)
    s = sample(tensors, np.full(tensors.shape[0], CHOICE_ELEMENTS))
    plain, side = costs(s.take(q), s, threads)
    return (side < plain).astype(np.int64)


def context_entropy_bits(q: np.ndarray, tensors: np.ndarray) -> float:
    """What an ideal static coder with this coder's contexts would spend on levels ``q``:
    per tensor, the empirical conditional entropy of the coder's binary decisions given
    their contexts (each context's bits at their frequencies in that tensor; side
    information and headers included, direct bits at one bit each), with the side
    information the encoder would choose. It leaves out the cost of learning or sending
    the probabilities; the coder's adaptive probabilities, which follow the levels as they
    drift along a tensor, can spend less.
    """
    use = choose_side(q, tensors)
    counts = np.zeros(2 * _ctx.NUM_PROBS + 1, dtype=np.int64)
    bits = 0.0
    start = 0
    for t in range(tensors.shape[0]):
        size = int(tensors[t, 0] * tensors[t, 1])
        counts[:] = 0
        one = tensors[t : t + 1]
        _ctx._ctx_encode(
            q[start : start + size], one, use[t : t + 1], _EMPTY_OUT, np.zeros(1), counts
        )
        pairs = counts[:-1].reshape(-1, 2).astype(np.float64)
        total = pairs.sum(axis=1, keepdims=True)
        safe = np.where(pairs > 0, pairs, 1.0)
        bits += float((pairs * np.log2(np.maximum(total, 1.0) / safe)).sum()) + float(counts[-1])
        start += size
    return bits


def encode(q: np.ndarray, tensors: np.ndarray, size_hint_bits: float) -> tuple[bytes, bytes]:
    """Code int32 levels (``|q| <= 2**30``); returns (parameter bytes, body). The buffer
    is sized from ``size_hint_bits`` (an estimate); if that is short, a dry run gives the
    exact size, so the buffer never holds more than a little over the body."""
    use = choose_side(q, tensors)
    cap = int(size_hint_bits * 1.25 / 8) + 4096
    while True:
        out = np.empty(cap, dtype=np.uint8)
        nbytes = _ctx._ctx_encode(q, tensors, use, out, np.zeros(0), _NO_COUNTS)
        if nbytes >= 0:
            break
        cost = np.zeros(1)
        _ctx._ctx_encode(q, tensors, use, _EMPTY_OUT, cost, _NO_COUNTS)
        cap = int(cost[0] / 8 * 1.01) + 4096
    params = bytearray(put_varint(tensors.shape[0]))
    for rows, cols in tensors:
        params += put_varint(int(rows)) + put_varint(int(cols))
    return bytes(params), out[:nbytes].tobytes()


def read_tensors(r: Reader, n: int, what: str) -> np.ndarray:
    """The parameters' tensor shapes (the last parameters): an int64 ``(T, 2)`` array of
    rows and columns, each at least 1, whose products add up to ``n``."""
    count = r.varint("tensor count", max(n, 1))
    tensors = np.empty((count, 2), dtype=np.int64)
    total = 0
    for t in range(count):
        rows = r.varint("rows", max(n, 1))
        cols = r.varint("columns", max(n, 1))
        if rows < 1 or cols < 1:
            raise DecodeError(f"{what}: a tensor with no rows or columns")
        total += rows * cols
        if total > n:
            raise DecodeError(f"{what}: tensors hold more than the {n} elements")
        tensors[t] = rows, cols
    r.finish()
    if total != n:
        raise DecodeError(f"{what}: tensors hold {total} elements, the payload {n}")
    return tensors


def decode_levels(r: Reader, body: memoryview, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Read the tensor shapes from ``r`` and decode the body's ``n`` levels; returns
    (int32 levels, the ``(T, 2)`` tensors)."""
    tensors = read_tensors(r, n, "rdq/ctx")
    q = np.empty(n, dtype=np.int32)
    _decode(body, tensors, q, 0, 0.0, _NO_RECON, _NO_STREAM, _NO_VALUES)
    return q, tensors


_NO_VALUES = np.empty(0, dtype=np.float32)
_NO_RECON = np.zeros(0)
_NO_STREAM = np.uint64(0)


def _decode(
    body: memoryview,
    tensors: np.ndarray,
    q: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    stream: np.uint64,
    out: np.ndarray,
) -> None:
    status = _ctx._ctx_decode(
        np.frombuffer(body, dtype=np.uint8), tensors, kernels.MAX_ABS_LEVEL, q, mode, step,
        recon, stream, out,
    )  # fmt: skip
    if status < 0:
        raise DecodeError(f"rdq/ctx: invalid context-coded body (status {status})")


def decode(
    r: Reader,
    body: memoryview,
    out: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    stream: np.uint64,
) -> None:
    """Read the tensor shapes from ``r`` and decode the body into float32 ``out``, each
    row dequantized as it is decoded (one row's levels held, not the update's)."""
    tensors = read_tensors(r, out.shape[0], "rdq/ctx")
    # a row's scratch (an empty out has no tensors: the kernel only checks the body's end)
    row = np.empty(int(tensors[:, 1].max(initial=1)), dtype=np.int32)
    _decode(body, tensors, row, mode, step, recon, stream, out)
