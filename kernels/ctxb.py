"""Context-adaptive binary range coding of quantization levels in independent blocks (RDQ's
coder id 4, ``coder="ctx-blocks"``, and id 5, ``coder="ctx-wide"``, the default's blocks).

The levels' coding is the adaptive context coder's (``kernels.ctx``, id 2: the same
contexts, decisions, probabilities and range coder); what changes is where it starts and
stops. The levels are cut into blocks of whole rows (``fedcodec.coders.blocks``: about
``BLOCK_ELEMENTS`` elements each, fixed by the shapes alone), and each block is one range-coded
stream of its own, with every probability at 1/2 and every column's last sign unknown at its
start. The side information (row and column RMS indices) is the static-context coder's side
section, coded before the blocks, so a block needs nothing from another: blocks are coded and
decoded on several threads, with bytes that do not depend on the thread count. Id 5
(``wide``) makes the same decisions on a 64-bit range (``kernels.ctx._code_wide`` codes them,
``kernels.ctxw`` decodes them).
"""

from __future__ import annotations

import numpy as np

from . import ctxw
from ._config import jit
from .ctx import (
    CHUNK,
    ERR_CAPACITY,
    ERR_EXHAUSTED,
    ERR_INVALID,
    ERR_TRAILING,
    NUM_BINS,
    NUM_PROBS,
    PROB_ONE,
    WIDE_STATE,
    _decode_rows,
    _encode_rows,
    _flush,
    _runs_piece,
)
from .quant import NEAREST, _nearest_table

__all__ = ["ERR_CAPACITY", "ERR_EXHAUSTED", "ERR_INVALID", "ERR_TRAILING"]


@jit
def _block_encode(
    q: np.ndarray,
    segs: np.ndarray,
    starts: np.ndarray,
    tensors: np.ndarray,
    use_side: np.ndarray,
    totals: np.ndarray,
    row_idx: np.ndarray,
    col_part: np.ndarray,
    row_off: np.ndarray,
    col_off: np.ndarray,
    out: np.ndarray,
    cost: np.ndarray,
    piece: np.ndarray,
    wide: bool,
) -> int:
    """Code one block (``segs[k] = (tensor, first row, end row)``) of int32 levels into
    ``out``; returns the bytes written, or ERR_CAPACITY if ``out`` is too small. With a
    non-empty ``cost``, writes nothing, sets ``cost[0]`` to the ideal cost in bits and
    returns 0.

    ``row_idx`` and ``col_part`` hold every tensor's rows and columns (from ``row_off[t]``
    and ``col_off[t]``): a row's RMS index (0: its levels are all 0, not coded), and a
    column's part of the context: its RMS index, negative for a column not coded, 0 in a
    tensor without side information. The caller proves the segments, tensors and offsets
    (``fedcodec.coders.blocks``).

    A non-empty ``piece`` (4 entries) receives what the block's levels add to their
    run-length Elias-gamma code (``kernels.bits._rleg_runs``' piece), counted as they are
    coded: the run-length code's size at this point then costs no pass of its own.
    ``wide``: coder id 5's 64-bit range, else id 4's 32-bit range (the same decisions)."""
    dry = cost.shape[0] > 0
    cost[:] = 0.0
    es = np.zeros(WIDE_STATE if wide else 5, np.int64)
    es[1] = -1 if wide else 0xFFFFFFFF  # (the wide range's bits: 2**64 - 1)
    es[3] = 0 if wide else 1
    probs = np.full(NUM_PROBS, PROB_ONE // 2, np.int64)
    dec = np.empty(CHUNK, np.int64)
    counts = np.empty(0, np.int64)
    t0, t1 = segs[0, 0], segs[segs.shape[0] - 1, 0]
    block_start = starts[t0] + segs[0, 1] * tensors[t0, 1]
    block_end = starts[t1] + segs[segs.shape[0] - 1, 2] * tensors[t1, 1]
    runs = np.empty(3 if piece.shape[0] > 0 else 0, np.int64)
    if runs.shape[0] > 0:
        runs[0], runs[1], runs[2] = -1, 0, block_start - 1
    nd = 0
    for k in range(segs.shape[0]):
        t, r0, r1 = segs[k, 0], segs[k, 1], segs[k, 2]
        cols = tensors[t, 1]
        side = use_side[t]
        top = NUM_BINS - 1 if side else NUM_BINS
        parts = col_part[col_off[t] : col_off[t] + cols]  # this tensor's columns
        row_side = row_idx[row_off[t] + r0 : row_off[t] + r1] if side else row_idx[:0]
        nd = _encode_rows(
            q, starts[t] + r0 * cols, r1 - r0, cols, row_side, totals[t], parts, top,
            tensors[t, 0] > 1, dec, nd, es, probs, out, cost, counts, runs,
        )  # fmt: skip
    _flush(es, probs, dec, nd, out, cost, counts, True)
    if runs.shape[0] > 0:
        _runs_piece(runs, block_start, block_end, piece)
    if dry:
        return 0
    if es[4] > out.shape[0]:
        return ERR_CAPACITY
    return int(es[4])


@jit
def _block_decode(
    data: np.ndarray,
    segs: np.ndarray,
    starts: np.ndarray,
    tensors: np.ndarray,
    use_side: np.ndarray,
    totals: np.ndarray,
    row_idx: np.ndarray,
    col_part: np.ndarray,
    row_off: np.ndarray,
    col_off: np.ndarray,
    max_abs: int,
    origin: int,
    q: np.ndarray,
    mode: int,
    step: float,
    recon: np.ndarray,
    seed: np.uint64,
    out: np.ndarray,
    wide: bool,
    zeroed: bool,
) -> int:
    """Inverse of :func:`_block_encode`; returns 0, ERR_INVALID (a first byte that is not
    0, an initial code out of range, a level above ``max_abs``, an Exp-Golomb prefix too
    long), ERR_EXHAUSTED or ERR_TRAILING.

    Levels: with an empty ``out``, into int32 ``q``, which holds the block's elements from
    element ``origin`` (the block's first) on. Values: otherwise ``q`` is a row's scratch
    (at least the block's widest row) and each decoded row goes into float32 ``out`` (the
    block's elements from ``origin`` on) as reconstructions (``mode``, ``step``, ``recon``;
    element ``i`` of the block at index ``i`` of the random stream ``seed``), so that the
    block's levels are never held whole; in NEAREST mode each level's reconstruction goes
    into ``out`` as it is decoded, and ``q`` is not used. ``zeroed``: the caller proves
    ``out`` all zeros (a fresh ``np.zeros``), so NEAREST mode writes only the non-zero
    levels' values, without zeroing rows first. ``wide``: coder id 5's stream
    (``kernels.ctxw``), else id 4's.

    Safety: ``data`` may be any bytes (reads past its end give zeros and fail at the end);
    every loop is bounded by the block's elements or a constant; writes go to the block's
    own elements (the caller proves the segments, tensors and offsets, and that ``q``
    holds the block, or its widest row and ``out`` the block)."""
    values = out.shape[0] > 0
    direct = values and mode == NEAREST  # reconstructions written as decoded
    table = _nearest_table(recon, step)
    n_data = data.shape[0]
    ds = np.zeros(3, np.int64)  # (range, code, pos), for the rare helpers
    if wide:
        if n_data < ctxw.WIDE_HEAD:
            return ERR_INVALID
        wrng, wcode = ctxw._start(data)
        if wcode >= wrng:
            return ERR_INVALID
        pos = ctxw.WIDE_HEAD
    else:
        if n_data < 5 or data[0] != 0:
            return ERR_INVALID
        ds[0] = 0xFFFFFFFF
        ds[1] = (int(data[1]) << 24) | (int(data[2]) << 16) | (int(data[3]) << 8) | int(data[4])
        ds[2] = 5
        if ds[1] >= ds[0]:
            return ERR_INVALID
        wrng, wcode = np.uint64(0), np.uint64(0)
        pos = int(ds[2])
    rng, code = ds[0], ds[1]
    probs = np.full(NUM_PROBS, PROB_ONE // 2, np.int64)
    for k in range(segs.shape[0]):
        t, r0, r1 = segs[k, 0], segs[k, 1], segs[k, 2]
        cols = tensors[t, 1]
        side = use_side[t]
        top = NUM_BINS - 1 if side else NUM_BINS
        parts = col_part[col_off[t] : col_off[t] + cols]  # this tensor's columns
        row_side = row_idx[row_off[t] + r0 : row_off[t] + r1] if side else row_idx[:0]
        first = starts[t] + r0 * cols - origin
        multi = tensors[t, 0] > 1
        if wide:
            status, wrng, wcode, pos = ctxw._decode_rows(
                data, wrng, wcode, pos, probs, parts, row_side, totals[t], top, r1 - r0,
                multi, cols, first, max_abs, q, values, direct, not zeroed, mode, table,
                step, recon, seed, out,
            )  # fmt: skip
        else:
            status, rng, code, pos = _decode_rows(
                data, ds, rng, code, pos, probs, parts, row_side, totals[t], top, r1 - r0,
                multi, cols, first, max_abs, q, values, direct, not zeroed, mode, table,
                step, recon, seed, out,
            )  # fmt: skip
        if status < 0:
            return status
    if pos > n_data:
        return ERR_EXHAUSTED
    if pos != n_data:
        return ERR_TRAILING
    return 0
