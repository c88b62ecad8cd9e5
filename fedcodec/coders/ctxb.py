"""Context-adaptive coding of an update's levels in independent blocks: RDQ's coder id 5
(``coder="ctx-wide"``, what the default ``coder="ctx"`` writes on updates of several blocks)
and id 4 (``coder="ctx-blocks"``: the same decisions on a 32-bit range, ``wide=False``).

The adaptive context coder's levels (``fedcodec.coders.ctx``, id 2: row/column scale side
information where it pays, the left neighbour, rank-1 sign prediction, adaptive binary
range coding), cut into the static-context coder's blocks with its side section
(``fedcodec.coders.blocks``): each block starts its probabilities afresh, so ``threads``
threads code and decode the blocks side by side, with the same bytes for any thread count
(``fedcodec.kernels.ctxb``).

Parameters (after RDQ's): the tensor count, then each tensor's rows and columns (varints),
as the other context coders'. Byte for byte in ``docs/format.md``.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..container import Reader
from ..kernels import ctxb as _k
from ..kernels import rng as _rng
from ..threads import thread_map
from . import blocks
from . import ctx as ctx_coder

_EMPTY_OUT = np.empty(0, dtype=np.uint8)


def encode(
    q: np.ndarray,
    tensors: np.ndarray,
    threads: int | None = 1,
    use: np.ndarray | None = None,
    size_hint_bits: float | None = None,
    runs: list[np.ndarray] | None = None,
    wide: bool = False,
) -> tuple[bytes, bytes]:
    """Code int32 levels (``|q| <= 2**30``); returns (parameter bytes, body). ``use``: the
    tensors that send side information (default: where it pays, as the adaptive coder
    chooses). Each block's buffer is sized from ``size_hint_bits`` (an estimate of the
    whole body, default 8 bits a level) in proportion to its elements; a block that
    overflows it is measured by a dry run and coded again. A list ``runs`` receives each
    block's piece of the levels' run-length gamma code, in block order
    (:func:`fedcodec.coders.rleg.joined_bytes` adds them up), counted as the blocks are
    coded."""
    ctx_coder._check(q, tensors)
    if use is None:
        use = ctx_coder.choose_side(q, tensors, threads)
    p = blocks.plan(tensors)
    side, side_bytes = blocks.side_section(q, p, use, threads)
    hint = 8.0 * q.size if size_hint_bits is None else size_hint_bits
    per_element = hint / max(q.size, 1)

    pieces = [np.zeros(4 if runs is not None else 0, np.int64) for _ in p.blocks]

    def one(b: int) -> bytes:
        segs = p.blocks[b]

        def run(out: np.ndarray, cost: np.ndarray) -> int:
            n = _k._block_encode(
                q, segs, p.starts, tensors, side.use, side.totals, side.row_idx,
                side.col_part, p.row_off, p.col_off, out, cost, pieces[b], wide,
            )  # fmt: skip
            return int(n)

        out = np.empty(int(per_element * p.sizes[b] * 1.25 / 8) + 4096, np.uint8)
        nbytes = run(out, np.zeros(0))
        if nbytes < 0:
            cost = np.zeros(1)
            run(_EMPTY_OUT, cost)
            out = np.empty(int(cost[0] / 8 * 1.01) + 4096, np.uint8)
            nbytes = run(out, np.zeros(0))
            if nbytes < 0:
                raise AssertionError("rdq/ctxb: the block's buffer is short")
        return out[:nbytes].tobytes()

    coded = thread_map(one, list(range(len(p.blocks))), threads)
    if runs is not None:
        runs[:] = pieces
    return blocks.assemble(tensors, side_bytes, coded)


def _kernel(
    tensors: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    stream: np.uint64,
    wide: bool,
    zeroed: bool = False,
) -> blocks.BlockKernel:
    """The blocks' kernel call for :func:`blocks.decode_blocks` (levels: the block's own
    part of the update's, from its first element)."""

    def run(
        section: np.ndarray,
        p: blocks.Plan,
        side: blocks.Side,
        j: int,
        a: int,
        q: np.ndarray,
        values: np.ndarray,
    ) -> int:
        if values.shape[0] == 0:
            q = q[a : a + p.sizes[j]]
        status = _k._block_decode(
            section, p.blocks[j], p.starts, tensors, side.use, side.totals, side.row_idx,
            side.col_part, p.row_off, p.col_off, kernels.MAX_ABS_LEVEL, a, q, mode, step,
            recon, _rng.shifted(stream, a), values, wide, zeroed,
        )  # fmt: skip
        return int(status)

    return run


def decode_levels(
    r: Reader, body: memoryview, n: int, threads: int | None = 1, wide: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Read the tensor shapes from ``r`` and decode the body's ``n`` levels; returns
    (int32 levels, the ``(T, 2)`` tensors)."""
    tensors = ctx_coder.read_tensors(r, n, "rdq/ctxb")
    q = np.empty(n, dtype=np.int32)
    run = _kernel(tensors, 0, 0.0, np.zeros(0), np.uint64(0), wide)
    blocks.decode_blocks(tensors, body, "rdq/ctxb", threads, q, None, run)
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
    wide: bool = False,
    zeroed: bool = False,
) -> None:
    """Read the tensor shapes from ``r`` and decode the body into float32 ``out``, each
    block in its own thread, dequantized row by row as it is decoded (one row's levels
    per block in flight are all that is held besides ``out``). ``zeroed``: ``out`` is all
    zeros (a fresh ``np.zeros``), so nearest rounding writes only the non-zero values."""
    tensors = ctx_coder.read_tensors(r, out.shape[0], "rdq/ctxb")
    run = _kernel(tensors, mode, step, recon, stream, wide, zeroed)
    blocks.decode_blocks(tensors, body, "rdq/ctxb", threads, None, out, run)
