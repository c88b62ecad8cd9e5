"""Static-context rANS coding of an update's levels, in blocks (RDQ's coder id 3).

The contexts of the adaptive context coder (``fedcodec.coders.ctx``: row/column scale side
information where it pays, the left neighbour, rank-1 sign prediction) with a static model
per block, sent, and a multi-symbol range-variant ANS coder (``fedcodec.kernels.sctx``).
The blocks, the side section and the body's layout are ``fedcodec.coders.blocks``' (shared
with coder id 4): ``threads`` threads code and decode the blocks side by side with the same
bytes for any thread count.

Parameters (after RDQ's): the tensor count, then each tensor's rows and columns (varints),
as the adaptive coder's. Byte for byte in ``docs/format.md``.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..container import Reader
from ..kernels import rng as _rng
from ..kernels import sctx as _k
from ..threads import thread_map
from . import blocks
from . import ctx as ctx_coder

plan = blocks.plan  # the blocks, from the shapes alone


def encode(
    q: np.ndarray, tensors: np.ndarray, threads: int | None = 1, use: np.ndarray | None = None
) -> tuple[bytes, bytes]:
    """Code int32 levels (``|q| <= 2**30``); returns (parameter bytes, body). ``use``: the
    tensors that send side information (default: where it pays, as the adaptive coder
    chooses)."""
    ctx_coder._check(q, tensors)
    if use is None:
        use = ctx_coder.choose_side(q, tensors, threads)
    p = plan(tensors)
    side, side_bytes = blocks.side_section(q, p, use, threads)
    totals, row_idx, col_part = side.totals, side.row_idx, side.col_part

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
        model = np.zeros(blocks._MODEL_BYTES, np.uint8)
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

    return blocks.assemble(
        tensors, side_bytes, thread_map(one, list(range(len(p.blocks))), threads)
    )


def _kernel(
    tensors: np.ndarray, mode: int, step: float, recon: np.ndarray, stream: np.uint64
) -> blocks.BlockKernel:
    """The blocks' kernel call for :func:`blocks.decode_blocks` (levels: the update's)."""

    def run(
        section: np.ndarray,
        p: blocks.Plan,
        side: blocks.Side,
        j: int,
        a: int,
        q: np.ndarray,
        values: np.ndarray,
    ) -> int:
        status = _k._block_decode(
            section, p.blocks[j], p.starts, tensors, side.use, side.totals, side.row_idx,
            side.col_part, p.row_off, p.col_off, kernels.MAX_ABS_LEVEL, q, mode, step,
            recon, _rng.shifted(stream, a), values, a,
        )  # fmt: skip
        return int(status)

    return run


def decode_levels(
    r: Reader, body: memoryview, n: int, threads: int | None = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Read the tensor shapes from ``r`` and decode the body's ``n`` levels; returns
    (int32 levels, the ``(T, 2)`` tensors)."""
    tensors = ctx_coder.read_tensors(r, n, "rdq/sctx")
    q = np.empty(n, dtype=np.int32)
    run = _kernel(tensors, 0, 0.0, np.zeros(0), np.uint64(0))
    blocks.decode_blocks(tensors, body, "rdq/sctx", threads, q, None, run)
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
    """Read the tensor shapes from ``r`` and decode the body into float32 ``out``, each
    block in its own thread, dequantized row by row as it is decoded (one row's levels
    per block in flight are all that is held besides ``out``)."""
    tensors = ctx_coder.read_tensors(r, out.shape[0], "rdq/sctx")
    run = _kernel(tensors, mode, step, recon, stream)
    blocks.decode_blocks(tensors, body, "rdq/sctx", threads, None, out, run)
