"""RDQ's rate control, the shared vocabulary: the coder ids, the constants of the search,
an operating point (:class:`Point`) and a measured one (:class:`Final`), and what the
solver reads from its codec (:class:`SolverCodec`) and a rate mode from the solver
(:class:`SearchSolver`). Imported by :mod:`.rate_modes` and :mod:`.rate_control`; imports
neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .codec import FLOAT32_MAX
from .coders import ans as ans_coder
from .coders import blocks


class SolverCodec(Protocol):
    """What the solver reads from the codec it serves (``fedcodec.rdq.RDQ``; a protocol,
    so that this module does not import the codec that imports it)."""

    coder: str
    levels: str
    ans_backend: str
    _mode: int
    _rate_mode: str
    _rate_value: float

    def _header_bytes(self, point: Point, seed: int, coder: int) -> bytearray: ...


CODER_ANS, CODER_RLEG, CODER_CTX, CODER_SCTX, CODER_CTXB, CODER_CTXW = 0, 1, 2, 3, 4, 5
#: the adaptive context coders: one stream (id 2), blocks (id 4), blocks with the wide
#: (64-bit) range coder (id 5)
ADAPTIVE_CODERS = (CODER_CTX, CODER_CTXB, CODER_CTXW)
#: the coder options that use a context coder: adaptive (id 2 or 5, see
#: :func:`adaptive_coder`), adaptive in blocks (id 4), adaptive in wide blocks (id 5),
#: adaptive in one stream (id 2), static contexts (id 3)
CONTEXT_CODERS = ("ctx", "ctx-blocks", "ctx-wide", "ctx-stream", "ctx-static")


def adaptive_coder(option: str, tensors: np.ndarray) -> int:
    """The id of the adaptive context coder that writes a message's levels under coder
    ``option``: ``"ctx-blocks"`` blocks (id 4), ``"ctx-wide"`` wide blocks (id 5),
    ``"ctx-stream"`` one stream (id 2); the others wide blocks where the tensors hold more
    than one block, else one stream (a single block gains nothing from threads, and the
    blocks' side section costs a few bytes more on small updates)."""
    if option == "ctx-stream":
        return CODER_CTX
    if option == "ctx-blocks":
        return CODER_CTXB
    if option == "ctx-wide" or len(blocks.plan(tensors).blocks) > 1:
        return CODER_CTXW
    return CODER_CTX


_HIST_HALF = 4096  # histogram of levels in [-4096, 4096]; larger ones are escapes
#: the rate search runs on this many evenly spaced elements: 2**14, up to 2**16 for
#: messages above 2**20 (n / 64): its estimate then needs fewer corrections on the whole
#: message, and the corrections cost more than the search there
_SAMPLE_MIN, _SAMPLE_MAX = 1 << 14, 1 << 16
#: bits_per_param with the adaptive context coder on a message of more than
#: ``_ESTIMATE_FROM`` elements: its first coding pass goes to the step where the coder's
#: costs on a grid of ``_ESTIMATE_ELEMENTS`` elements (at least ``_ESTIMATE_MIN`` a
#: tensor) meet the target, and the correction to where they do once scaled by what the
#: pass measured; a secant search of at most ``_ESTIMATE_STEPS`` estimates, done within
#: ``_ESTIMATE_CLOSE`` (log bits) of its goal. Above ``_ESTIMATE_FROM`` elements the
#: subsample's places also move within their strata (see ``Solver``)
_ESTIMATE_FROM, _ESTIMATE_ELEMENTS, _ESTIMATE_MIN = 1 << 19, 1 << 17, 1 << 12
_ESTIMATE_STEPS, _ESTIMATE_CLOSE = 5, 0.002
#: the control variate's exponent: the grid's estimate is scaled by (the whole message's
#: memoryless bits / the grid's) ** 0.6, the context coder's bits following the sampled
#: rows' and columns' scales less than the memoryless coder's (fitted by hand on the first
#: passes of bench/ctx_speed.py's three structured 10M updates; with 1.0 the estimate ran
#: high there; passes per encode: bench/rate_passes.py)
_ESTIMATE_CV = 0.6
#: passes over a message of more elements run in chunks of this many (on threads)
_PAR_CHUNK = 1 << 20
RDO_OFFSETS = (0.5, 0.4, 0.32, 0.25)  # rounding offsets tried by levels="rdo" (and "rdoq")
#: levels="rdoq": squared error (in steps²) one bit is worth when choosing levels: about
#: the high-rate slope (ln 2 / 6 ≈ 0.116); 0.06, 0.1, 0.15 and 0.22 came within 1 % of each
#: other on real CNN and LSTM updates, 0.1 the best (bench/rdoq_gain.py)
RDOQ_LAMBDA = 0.1
MAX_RECON = 16  # levels 1..16 may get their conditional-mean reconstruction sent
_HEADER_BITS = 8.0 * 40  # container + parameters, for rate targets (payload ≈ body + this)
_BISECT_ITERS = 14
RATE_TOLERANCE = 1.01  # bits_per_param: accept a full-message measurement within 1 %
_NMSE_AIM = 0.998  # nmse: a corrected step aims this fraction of the target error
_NMSE_GROW = 1.01  # nmse: grow the step while the error is this far below the target
#: coder="ctx": run-length gamma within this factor of the best at the memoryless coder's
#: step also gets its own step search (as under "auto")
_RLEG_CLOSE = 1.03
_RDOQ_TRIALS = 6  # levels="rdoq" with nmse: RDOQ passes at most
_LN2_6 = math.log(2.0) / 6.0
#: The smallest positive float32 (a subnormal): the smallest step a payload can carry.
STEP_MIN = 2.0**-149


def max_step(max_abs: float) -> float:
    """Largest step whose reconstructions of values up to ``max_abs`` stay finite in
    float32 (every rounding reconstructs within 1.5 steps of the value; 2 leave margin)."""
    return (FLOAT32_MAX - max_abs) / 2.0


@dataclass
class Point:
    """An operating point (step, rounding offset, coder) estimated on the subsample."""

    step: float
    offset: float
    coder: int
    bits: float  # predicted payload bits
    sse: float  # absolute squared error, extrapolated to the whole message
    recon: np.ndarray | None
    lo: int = 0  # ANS level range chosen from the subsample
    hi: int = 0


@dataclass
class Final:
    """The chosen point measured exactly on the whole message, ready to be written."""

    point: Point
    bits: float
    sse: float
    ans: ans_coder.FullPass | None
    body: bytes = b""  # run-length gamma or context-coded body
    params: bytes = b""  # the context coder's parameters


_NO_RECON = np.zeros(0)


class SearchSolver(Protocol):
    """What a rate mode asks of the solver (:class:`fedcodec.rate_control.Solver`)."""

    n: int
    sumsq: float
    log_step_min: float
    log_step_max: float
    log_step_reach: float

    def evaluate(self, step: float, offset: float, coder: int) -> Point: ...

    def bisect(
        self,
        offset: float,
        coder: int,
        near: Point | None,
        ok: Callable[[Point], bool],
        better: Callable[[Point, Point | None], bool],
    ) -> Point: ...

    def golden(self, offset: float, coder: int, near: Point | None = None) -> Point: ...

    def fixed_step(self, step: float) -> float: ...

    def estimates_context(self, coder: int) -> bool: ...

    def context_bits(self, step: float, offset: float) -> float: ...

    def context_step(
        self, goal: float, step: float, offset: float, scale: float = 1.0
    ) -> float: ...

    def exact_sse(self, p: Point) -> float: ...

    def measure(self, p: Point, sse: float | None = None) -> Final: ...

    def measure_rdoq(self, step: float) -> Final: ...

    def rdoq_levels(self, step: float, q: np.ndarray) -> tuple[np.ndarray | None, float]: ...

    def final_levels(
        self, step: float, q: np.ndarray, recon: np.ndarray | None, sse: float
    ) -> Final: ...
