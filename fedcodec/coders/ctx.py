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

import numpy as np

from .. import kernels
from ..container import Reader, put_varint
from ..errors import DecodeError
from ..kernels import ctx as _ctx
from ..kernels import quant as _quantize

#: A tensor with fewer elements than this never sends side information.
MIN_SIDE_ELEMENTS = 64
#: The choice of side information for a larger tensor is made on a subset of its rows.
CHOICE_ELEMENTS = 1 << 16
_EMPTY_OUT = np.empty(0, dtype=np.uint8)  # the dry runs write nothing


def tensors_array(tensors: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(rows, cols) per tensor as an int64 ``(T, 2)`` array, empty tensors left out."""
    kept = [(r, c) for r, c in tensors if r * c > 0]
    return np.array(kept, dtype=np.int64).reshape(-1, 2)


def has_structure(tensors: np.ndarray) -> bool:
    """Whether any tensor is a matrix large enough to send side information."""
    return bool(
        np.any(
            (tensors[:, 0] >= 2)
            & (tensors[:, 1] >= 2)
            & (tensors.prod(axis=1) >= MIN_SIDE_ELEMENTS)
        )
    )


def _check(q: np.ndarray, tensors: np.ndarray) -> None:
    """The kernels' contract: 1-d int32 levels, (rows, cols) >= 1 adding up to them."""
    if not (isinstance(q, np.ndarray) and q.dtype == np.int32 and q.ndim == 1):
        raise ValueError("levels must be a one-dimensional int32 array")
    if tensors.ndim != 2 or tensors.shape[1] != 2 or (tensors.size and tensors.min() < 1):
        raise ValueError("tensors must be (rows, cols) pairs, each at least 1")
    if int((tensors[:, 0] * tensors[:, 1]).sum()) != q.shape[0]:
        raise ValueError(f"the tensors do not hold the {q.shape[0]} levels")


def choose_side(q: np.ndarray, tensors: np.ndarray) -> np.ndarray:
    """Per tensor, 1 where side information lowers its exact (ideal adaptive) cost.

    A tensor of more than ``CHOICE_ELEMENTS`` levels is judged on every k-th of its rows:
    the levels' cost and the rows' side information scale by k, the columns' do not."""
    _check(q, tensors)
    use = np.zeros(tensors.shape[0], dtype=np.int64)
    start = 0
    cost = np.zeros(2)
    for t, (rows, cols) in enumerate(tensors):
        size = int(rows * cols)
        if rows >= 2 and cols >= 2 and size >= MIN_SIDE_ELEMENTS:
            part = q[start : start + size]
            one = tensors[t : t + 1]
            stride = -(-size // CHOICE_ELEMENTS)
            if stride > 1 and rows >= 2 * stride:  # decide on every stride-th row
                part = np.ascontiguousarray(part.reshape(rows, cols)[::stride]).reshape(-1)
                one = np.array([[part.size // cols, cols]], dtype=np.int64)
            scale = rows / one[0, 0]
            _ctx._ctx_encode(part, one, np.array([0], np.int64), _EMPTY_OUT, cost)
            plain = cost[0] * scale
            _ctx._ctx_encode(part, one, np.array([1], np.int64), _EMPTY_OUT, cost)
            total, side = cost
            per_index = side / (one[0, 0] + cols)  # the tensor RMS's 7 bits are noise here
            with_side = (total - side) * scale + per_index * (rows + cols)
            use[t] = int(with_side < plain)
        start += size
    return use


def encode(q: np.ndarray, tensors: np.ndarray, size_hint_bits: float) -> tuple[bytes, bytes]:
    """Code int32 levels (``|q| <= 2**30``); returns (parameter bytes, body). The buffer
    is sized from ``size_hint_bits`` (an estimate); if that is short, a dry run gives the
    exact size, so the buffer never holds more than a little over the body."""
    use = choose_side(q, tensors)
    cap = int(size_hint_bits * 1.25 / 8) + 4096
    while True:
        out = np.empty(cap, dtype=np.uint8)
        nbytes = _ctx._ctx_encode(q, tensors, use, out, np.zeros(0))
        if nbytes >= 0:
            break
        cost = np.zeros(1)
        _ctx._ctx_encode(q, tensors, use, _EMPTY_OUT, cost)
        cap = int(cost[0] / 8 * 1.01) + 4096
    params = bytearray(put_varint(tensors.shape[0]))
    for rows, cols in tensors:
        params += put_varint(int(rows)) + put_varint(int(cols))
    return bytes(params), out[:nbytes].tobytes()


def decode(
    r: Reader,
    body: memoryview,
    out: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    stream: np.uint64,
) -> None:
    """Read the tensor shapes from ``r`` and decode the body into float32 ``out``."""
    n = out.shape[0]
    count = r.varint("tensor count", max(n, 1))
    tensors = np.empty((count, 2), dtype=np.int64)
    total = 0
    for t in range(count):
        rows = r.varint("rows", max(n, 1))
        cols = r.varint("columns", max(n, 1))
        if rows < 1 or cols < 1:
            raise DecodeError("rdq/ctx: a tensor with no rows or columns")
        total += rows * cols
        if total > n:
            raise DecodeError(f"rdq/ctx: tensors hold more than the {n} elements")
        tensors[t] = rows, cols
    r.finish()
    if total != n:
        raise DecodeError(f"rdq/ctx: tensors hold {total} elements, the payload {n}")
    q = np.empty(n, dtype=np.int32)
    status = _ctx._ctx_decode(
        np.frombuffer(body, dtype=np.uint8), tensors, kernels.MAX_ABS_LEVEL, q
    )
    if status < 0:
        raise DecodeError(f"rdq/ctx: invalid context-coded body (status {status})")
    _quantize._dequantize(q, step, mode, recon, stream, out)
