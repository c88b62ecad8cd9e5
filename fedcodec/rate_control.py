"""RDQ's rate control: one step Δ per message, chosen for the user's rate mode.

A :class:`Solver` searches on a subsample, then measures the chosen point on the whole
message (the measurement half is :mod:`.rate_measure`'s mixin); a strategy per mode
(:mod:`.rate_modes`: ``bits_per_param``, ``nmse``, ``lmbda``, ``step``, ``step_rms``) says
what "best" means (its objective and Lagrange multiplier), how to search, and how to
correct the step once measured. Every mode keeps its guarantee (``docs/codecs/rdq.md``).
The points, constants and coder ids both use are :mod:`.rate_points`' (importable from
here, as before).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from . import kernels
from .codec import FLOAT32_MAX
from .coders import ans as ans_coder
from .coders import ctx as ctx_coder
from .coders import ctxb as ctxb_coder
from .coders import rleg as rleg_coder
from .kernels import ctx as _ctx
from .kernels import quant as _quantize
from .rate_measure import Measurement
from .rate_modes import RATE_MODES
from .rate_points import (
    _BISECT_ITERS,
    _ESTIMATE_CLOSE,
    _ESTIMATE_CV,
    _ESTIMATE_ELEMENTS,
    _ESTIMATE_FROM,
    _ESTIMATE_MIN,
    _ESTIMATE_STEPS,
    _HEADER_BITS,
    _HIST_HALF,
    _RLEG_CLOSE,
    _SAMPLE_MAX,
    _SAMPLE_MIN,
    ADAPTIVE_CODERS,
    CODER_ANS,
    CODER_CTX,
    CODER_CTXB,
    CODER_CTXW,
    CODER_RLEG,
    CODER_SCTX,
    CONTEXT_CODERS,
    MAX_RECON,
    RATE_TOLERANCE,
    RDO_OFFSETS,
    RDOQ_LAMBDA,
    STEP_MIN,
    Final,
    Point,
    SolverCodec,
    adaptive_coder,
    max_step,
)
from .threads import thread_map

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@functools.lru_cache(maxsize=8)
def _sample_index(n: int, k: int) -> np.ndarray:
    """The subsample's positions, remembered per size (an update of the same size every
    round computes them once); shared, so never written (left writable: a read-only array
    is another type to the kernels, compiled anew)."""
    place = np.full(k, 0.5)
    if n > _ESTIMATE_FROM:
        place = (0.5 + np.arange(k) * _GOLDEN) % 1.0
    return ((np.arange(k) + place) * (n / k)).astype(np.int64)


def _memoryless_bits(q: np.ndarray) -> float:
    """The empirical entropy of levels ``q``, in bits (all of them)."""
    counts = np.bincount(q - q.min()) if q.size else np.zeros(0, np.int64)
    counts = counts[counts > 0].astype(np.float64)
    return float(-(counts * np.log2(counts / q.size)).sum())


# -- the solver ----------------------------------------------------------------------------------
class Solver(Measurement):
    """Per-message rate control: search on a subsample, then measure on the whole message.

    A subsample evaluation is one pass of the statistics kernel over up to ``_SAMPLE_MAX``
    evenly spaced elements: a histogram of the levels predicts the ANS size (model
    included), the same pass counts the run-length gamma bits, and per-level sums give the
    squared error for any reconstruction points. The chosen point is then measured exactly
    on the whole message by the encoder's own pass (quantize, map to symbols, count), and
    the rate mode corrects the step with these exact measurements; the last pass's symbols
    are what the ANS coder writes.
    """

    def __init__(
        self,
        codec: SolverCodec,
        x: np.ndarray,
        max_abs: float,
        sumsq: float,
        stream: np.uint64,
        tensors: tuple[tuple[int, int], ...] = (),
        rdoq: bool = True,
        rate_value: float | None = None,
        step_only: bool = False,
        threads: int | None = 1,
        envelope: Callable[[int, int], int] | None = None,
    ) -> None:
        self.codec = codec
        self.step_only = step_only  # solve() need not measure the coders it will not write
        self.threads = threads  # for the passes over the whole message
        self.allow_rdoq = rdoq  # levels="rdoq" (its levels depend on the whole message)
        self.tensors = ctx_coder.tensors_array(tensors or ((1, x.size),))
        value = codec._rate_value if rate_value is None else rate_value
        self.rate = RATE_MODES[codec._rate_mode](value)
        self.x = x
        self.n = x.size
        self.max_abs = max_abs
        self.sumsq = sumsq
        self.stream = stream
        self.mode = codec._mode
        n = self.n
        k = min(_SAMPLE_MAX, max(_SAMPLE_MIN, n >> 6))
        if n > 2 * k:
            # one element in each of k equal strata: its middle, or above _ESTIMATE_FROM
            # elements a place in it that moves by the golden ratio from one stratum to the
            # next (a fixed stride aliases with some layouts: on 610-column matrices a
            # stride of 152.5 elements sees 4 columns)
            self.sample_index = _sample_index(n, k)
            self.sample = x[self.sample_index]
        else:
            self.sample_index = np.empty(0, dtype=np.int64)
            self.sample = x
            if not isinstance(x, np.ndarray):  # a source read in pieces, small: read it
                self.sample = x[np.arange(n)]
        self.scale = n / max(self.sample.size, 1)
        # the bytes around the levels' code: a typical size, or (``envelope``: the
        # container's exact size around given params and body lengths) the exact container
        # and RDQ parameters, the length fields' sizes taken at the target's payload size;
        # then the ANS coder's measurements are its real bytes too (one more coding pass)
        self.head_bits = _HEADER_BITS
        self.exact_sizes = envelope is not None  # and the ANS coder's sizes are measured
        if envelope is not None:
            # RDQ's own parameter bytes (flags, step, seed check) as its writer lays them out
            bare = Point(1.0, 0.5, CODER_ANS, 0.0, 0.0, None)
            rdq_head = len(codec._header_bytes(bare, 0, CODER_ANS))
            body_guess = int(value * n / 8) if codec._rate_mode == "bits_per_param" else n // 8
            self.head_bits = 8.0 * (envelope(rdq_head + 32, max(body_guess, 1)) + rdq_head)
        # smallest step that keeps levels within the kernels' bound (and is a float32 above
        # zero), largest that zeroes all or still reconstructs within float32's range
        top = max(max_abs, STEP_MIN)
        step_cap = max_step(max_abs)
        self.log_step_min = math.log2(max(top * 4.0 / kernels.MAX_ABS_LEVEL, STEP_MIN))
        if step_cap < 2.0**self.log_step_min:
            raise ValueError(
                f"max |x| = {max_abs:.9g} leaves no headroom below float32's largest value "
                f"({FLOAT32_MAX:.9g}) for rdq's reconstruction: scale the update down (e.g. "
                "by 0.5) before encoding"
            )
        # nearest rounding zeroes every value at a step of 4 max|x|, so no larger step is
        # needed; dithered and stochastic rounding still send a level where |x| / step
        # beats the random offset (probability |x| / step), so their rate reaches 0.01
        # bit/param only at steps of up to ~10**3 max|x| (a constant update: 1 / 1250).
        # A bits_per_param target out of reach at 4 max|x| widens the search to 2**14 max|x|
        # (``log_step_reach``); the other modes' optima lie far below (their error grows
        # with the step squared).
        self.log_step_max = math.log2(min(top * 4.0, step_cap))
        self.log_step_reach = self.log_step_max
        if self.mode != kernels.NEAREST:
            self.log_step_reach = math.log2(min(top * 2.0**14, step_cap))
        self.step_cap = step_cap
        # float32 rounding of the step stays within 2**-23 of it: 2**-20 leaves margin
        self.kernel_step_min = max(max_abs / (kernels.MAX_ABS_LEVEL - 1) * (1 + 2.0**-20), STEP_MIN)
        self.grid: ctx_coder.Sample | None = None  # context_bits' sample, made when needed
        self.grid_x = np.zeros(0, dtype=np.float32)
        self.grid_bits: dict[tuple[float, float], float] = {}  # its estimates so far
        self.grid_scale = 1.0  # the control variate's factor
        #: the memoryless coder's measurement (step, offset, bits of its levels' code)
        self.anchor: tuple[float, float, float] | None = None
        self.searched: dict[tuple[float, bool, float | None], Point] = {}  # see search()

    # -- estimates on the subsample ------------------------------------------------------
    def lam(self, step: float) -> float:
        """Lagrange multiplier in squared error per bit."""
        return self.rate.lam(self, step)

    def objective(self, p: Point | Final) -> float:
        step = p.point.step if isinstance(p, Final) else p.step
        return self.rate.objective(self, p.bits, p.sse, step)

    def kernel_step(self, step: float) -> float:
        """``step`` as the kernels take it: a float32 that keeps every level within their
        bound (|x| / step + 1 <= 2**30; a search may probe outside its range, and a NaN
        step once indexed out of bounds) and every reconstruction finite."""
        if not step >= self.kernel_step_min:
            step = self.kernel_step_min
        return float(np.float32(min(step, self.step_cap)))

    def evaluate(self, step: float, offset: float, coder: int) -> Point:
        step = self.kernel_step(step)
        inv = 1.0 / step
        hk = int(min(_HIST_HALF, self.max_abs * inv + 2.0))
        hist = np.zeros(2 * hk + 1, dtype=np.int64)
        sum_abs = np.zeros(hk + 1)
        sum_sq = np.zeros(hk + 1)
        n_over, over_bits, sse_other, rleg_bits = _quantize._stats(
            self.sample,
            self.sample_index,
            inv,
            self.mode,
            offset,
            self.stream,
            coder == CODER_RLEG,
            hist,
            sum_abs,
            sum_sq,
        )
        recon = None
        if self.mode == kernels.NEAREST:
            counts = hist[hk:].copy()
            counts[1:] += hist[hk - 1 :: -1]
            k = np.arange(hk + 1, dtype=np.float64)
            # squared error with reconstruction at k (uniform levels)
            sse = float(np.sum(sum_sq - 2.0 * k * sum_abs + counts * k * k)) + sse_other
            if self.codec.levels in ("rdo", "rdoq"):
                recon, sse = self.reconstruction(counts, sum_abs, sum_sq, sse, step)
        else:
            sse = sse_other
        extra = self.head_bits + (0.0 if recon is None else 8.0 * recon.size)
        lo = hi = 0
        if coder == CODER_RLEG:
            bits = rleg_bits * self.scale + 8.0
        else:  # the context coder's search starts from the memoryless estimate
            bits, lo, hi = ans_coder.estimate_bits(hist, n_over, over_bits, self.scale)
        return Point(
            step, offset, coder, bits + extra, sse * step * step * self.scale, recon, lo, hi
        )

    def reconstruction(
        self,
        counts: np.ndarray,
        sum_abs: np.ndarray,
        sum_sq: np.ndarray,
        sse_uniform: float,
        step: float,
        scale: float | None = None,
    ) -> tuple[np.ndarray | None, float]:
        """Conditional-mean reconstruction of levels 1..K, if it pays for its bytes (the
        statistics are of the subsample, extrapolated by ``scale``: by default the
        subsample's)."""
        scale = self.scale if scale is None else scale
        top = int(np.flatnonzero(counts)[-1]) if counts.any() else 0
        kmax = min(MAX_RECON, top)
        if kmax < 1:
            return None, sse_uniform
        k = np.arange(1, kmax + 1, dtype=np.float64)
        c = counts[1 : kmax + 1]
        mean = np.where(c > 0, sum_abs[1 : kmax + 1] / np.maximum(c, 1), k)
        t = np.clip(np.rint((mean - k) * 128.0), -128, 127)
        rho = k + t / 128.0
        s1, s2 = sum_abs[1 : kmax + 1], sum_sq[1 : kmax + 1]
        gain = float(np.sum((s2 - 2 * k * s1 + c * k * k) - (s2 - 2 * rho * s1 + c * rho * rho)))
        if gain * step * step * scale <= self.lam(step) * 8.0 * (kmax + 1):
            return None, sse_uniform
        return np.concatenate([[0.0], rho]), sse_uniform - gain

    def estimates_context(self, coder: int) -> bool:
        """Whether :meth:`context_bits` estimates ``coder``'s size: the adaptive context
        coder on a message in memory of more than ``_ESTIMATE_FROM`` elements (below, a
        coding pass costs less than the estimates)."""
        return (
            coder in ADAPTIVE_CODERS and self.n > _ESTIMATE_FROM and isinstance(self.x, np.ndarray)
        )

    def context_bits(self, step: float, offset: float) -> float:
        """The adaptive context coder's payload bits at ``step``, estimated from the ideal
        costs of a grid of each tensor's rows and columns (``_ESTIMATE_ELEMENTS`` elements
        in all, shared in proportion to the tensors' sizes: see
        :func:`~fedcodec.coders.ctx.grid_sample`), scaled by how the whole message's
        memoryless bits, measured at the ANS coder's point (:attr:`anchor`), compare with
        the grid's (a control variate for a grid that samples the row and column scales
        unevenly). Within a few percent on structured 10M updates, and off by much less
        between nearby steps: the measurement on the whole message calibrates it."""
        if self.grid is None:
            sizes = self.tensors[:, 0] * self.tensors[:, 1]
            budget = np.maximum(sizes * _ESTIMATE_ELEMENTS // max(self.n, 1), _ESTIMATE_MIN)
            grid = ctx_coder.grid_sample(self.tensors, budget)
            self.grid_x = self.x[grid.index]
            # its values gathered, the grid keeps its shapes only (its int64 positions
            # weigh twice its values)
            self.grid = ctx_coder.Sample(None, grid.tensors, grid.full)
            if self.anchor is not None:
                a_step, a_offset, a_bits = self.anchor
                grid_bits = _memoryless_bits(self.grid_levels(a_step, a_offset))
                if a_bits > 0.0 < grid_bits:
                    ratio = a_bits / (grid_bits * self.n / self.grid_x.size)
                    self.grid_scale = ratio**_ESTIMATE_CV
        step = self.kernel_step(step)
        known = self.grid_bits.get((step, offset))
        if known is not None:
            return known
        plain, side = ctx_coder.costs(self.grid_levels(step, offset), self.grid, self.threads)
        bits = float(np.minimum(plain, side).sum()) * self.grid_scale + self.head_bits
        self.grid_bits[step, offset] = bits
        return bits

    def measured_levels_bits(self, f: Final) -> tuple[float, float, float]:
        """(step, offset, bits of the levels' code) of a measurement: an :attr:`anchor`."""
        return f.point.step, f.point.offset, f.bits - self.extra_bits(f.point)

    def grid_levels(self, step: float, offset: float) -> np.ndarray:
        """The levels of :meth:`context_bits`' grid at ``step``."""
        q = np.empty(self.grid_x.size, dtype=np.int32)
        inv = 1.0 / self.kernel_step(step)
        _quantize._quantize(self.grid_x, inv, self.mode, offset, self.stream, q)
        return q

    def context_step(self, goal: float, step: float, offset: float, scale: float = 1.0) -> float:
        """The step at which ``scale`` × :meth:`context_bits` is ``goal`` bits: a secant
        search on log bits over log step from ``step``, a few estimates long."""
        log_goal = math.log(goal / scale)
        a = math.log(step)
        fa = math.log(self.context_bits(step, offset))
        slope = -1.0  # the sparse regime's bits ∝ 1 / step, until two estimates tell
        lo, hi = math.log(2.0) * self.log_step_min, math.log(2.0) * self.log_step_reach
        for _ in range(_ESTIMATE_STEPS):
            if abs(fa - log_goal) <= _ESTIMATE_CLOSE:
                break
            b = min(max(a + (log_goal - fa) / slope, lo), hi)
            if b == a:
                break
            fb = math.log(self.context_bits(math.exp(b), offset))
            if fb != fa:
                slope = min(max((fb - fa) / (b - a), -4.0), -0.25)
            a, fa = b, fb
        return math.exp(a)

    # -- searches the rate modes use -------------------------------------------------------
    def bisect(
        self,
        offset: float,
        coder: int,
        near: Point | None,
        ok: Callable[[Point], bool],
        better: Callable[[Point, Point | None], bool],
    ) -> Point:
        """Bisection on log2(step) (bits fall and squared error rises with the step):
        ``ok(p)`` moves the lower end up; ``better(p, best)`` keeps a point. ``near`` (a
        solution for another offset) narrows the search to one octave around it."""
        lo, hi = self.log_step_min, self.log_step_max
        iters = _BISECT_ITERS
        if near is not None:
            centre = math.log2(near.step)
            lo, hi = max(lo, centre - 0.5), min(hi, centre + 0.5)
            iters = _BISECT_ITERS // 2
        best: Point | None = None
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            p = self.evaluate(2.0**mid, offset, coder)
            if better(p, best):
                best = p
            lo, hi = (mid, hi) if ok(p) else (lo, mid)
        if best is None:  # a target below what the smallest step reaches
            best = self.evaluate(2.0**self.log_step_min, offset, coder)
        return best

    def golden(self, offset: float, coder: int, near: Point | None = None) -> Point:
        """Minimize the objective over log(step): a coarse scan of the whole range (or one
        octave around ``near``), then golden-section search around the best point."""
        if near is None:
            grid = np.linspace(self.log_step_min, self.log_step_max, 17)
            points = [self.evaluate(2.0**g, offset, coder) for g in grid]
            i = int(np.argmin([self.objective(p) for p in points]))
            a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
            best = points[i]
            iters = 10
        else:
            centre = math.log2(near.step)
            a, b = centre - 0.5, centre + 0.5
            best = self.evaluate(near.step, offset, coder)
            iters = 6
        ratio = (math.sqrt(5.0) - 1.0) / 2.0
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        pc, pd = self.evaluate(2.0**c, offset, coder), self.evaluate(2.0**d, offset, coder)
        for _ in range(iters):
            if self.objective(pc) < self.objective(pd):
                b, d, pd = d, c, pc
                c = b - ratio * (b - a)
                pc = self.evaluate(2.0**c, offset, coder)
            else:
                a, c, pc = c, d, pd
                d = a + ratio * (b - a)
                pd = self.evaluate(2.0**d, offset, coder)
        return min([best, pc, pd], key=self.objective)

    def fixed_step(self, step: float) -> float:
        # every float32 is a multiple of 2**-149: a smaller step (step_rms on subnormal
        # data) is raised to it, which reconstructs such data exactly
        step = float(np.float32(max(step, STEP_MIN)))
        if step > max_step(self.max_abs):
            raise ValueError(
                f"step {step:g} is too large for this update (max |x| = {self.max_abs:g}): "
                f"reconstructions would pass float32's largest value {FLOAT32_MAX:g}; use a "
                "smaller step or a rate target, or scale the update down"
            )
        if self.max_abs / step + 1.0 > kernels.MAX_ABS_LEVEL:
            raise ValueError(
                f"step {step:g} is too small for this update (max |x| = {self.max_abs:g}): "
                "levels would exceed 2**30; use a larger step or a rate target"
            )
        return step

    def solve(self) -> Final:
        codec = self.codec
        if self.n == 0 or self.max_abs == 0.0:
            # nothing to send (the container marks an all-zero update as zeros); the step
            # the user asked for is the step written
            coder = CODER_RLEG if codec.coder == "rleg" else CODER_ANS
            return self.measure(self.evaluate(self.rate.zero_step(self), 0.5, coder))
        coders = {
            "ans": [CODER_ANS],
            "rleg": [CODER_RLEG],
            "auto": [CODER_ANS, CODER_RLEG],
            # the context coder, or today's codes where they are smaller (very sparse or
            # tiny updates, where side information and adaptation cost more than they save):
            # never worse than "auto"
            "ctx-static": [CODER_ANS, CODER_SCTX, CODER_RLEG],
        }
        if codec.coder in ("ctx", "ctx-blocks", "ctx-wide", "ctx-stream"):
            coders[codec.coder] = [CODER_ANS, adaptive_coder(codec.coder, self.tensors), CODER_RLEG]
        offsets = RDO_OFFSETS if codec.levels in ("rdo", "rdoq") else (0.5,)
        todo = coders[codec.coder]
        if codec.coder in CONTEXT_CODERS and not ctx_coder.has_structure(self.tensors):
            todo = coders["auto"]  # vectors and 1-d tensors: the best of today's codes
        if self.step_only:
            # the caller codes the point itself (a framed update's frames, which correct a
            # rate target by their exact sizes): the memoryless coder's search gives it
            todo = [CODER_ANS]
        finals: list[Final] = []
        hopeless = False
        for c in todo:
            if c != CODER_ANS and codec.coder in CONTEXT_CODERS:
                ans = finals[0]
                if ans.ans is not None:
                    floor = rleg_coder.lower_bound_bits(ans.ans.model.lo, ans.ans.counts[:-1])
                    hopeless = floor + self.extra_bits(ans.point) >= ans.bits
                    # a context coder's passes (or the shared quantization below) hold
                    # levels of their own: keep the ANS measurement, not its symbols
                    # (counted again below if ANS wins)
                    contexts = {CODER_SCTX, *ADAPTIVE_CODERS} & set(todo)
                    if contexts or self.rate.coder_independent_step:
                        finals[0] = ans = replace(ans, ans=None)
                if self.rate.coder_independent_step:
                    # their searches would repeat the memoryless coder's: one quantization
                    # of that coder's point, written with each of the others
                    rest = tuple(k for k in todo if k != CODER_ANS)
                    if hopeless:  # the run-length code cannot win
                        rest = tuple(k for k in rest if k != CODER_RLEG)
                    if not rest:
                        break
                    shared = self.measure_levels(
                        ans.point, rest, ans.sse, ans.bits, slack=_RLEG_CLOSE
                    )
                    finals += shared
                    if any(f.point.coder == CODER_RLEG for f in shared):
                        # run-length gamma is close to the best at that step: its own step
                        # may win, as under "auto" (zero runs a subsample cannot see)
                        finals.append(self.search_and_refine(CODER_RLEG, offsets))
                    break
                if c == CODER_RLEG and self.rate.met(self, finals[-1]):
                    if hopeless:
                        continue
                    # at the context coder's step (its error), is the run-length code even
                    # shorter? If not, its own point for the target has a larger error
                    # (a point that missed the target gives no such answer: search on).
                    # Its exact size, counted in parallel, answers without coding it
                    ctx = finals[-1]
                    limit = max(int((ctx.bits - self.extra_bits(ctx.point)) / 8.0), 0)
                    if (
                        8.0 * self.rleg_bytes(ctx.point, limit) + self.extra_bits(ctx.point)
                        > ctx.bits
                    ):
                        continue
            finals.append(self.search_and_refine(c, offsets))
            if c == CODER_ANS:  # (no local name: the symbols are dropped above)
                self.anchor = self.measured_levels_bits(finals[-1])
        self.forget_levels()  # (the RDOQ pass below holds levels of its own)
        if codec.levels == "rdoq" and self.allow_rdoq and ctx_coder.has_structure(self.tensors):
            measured = [f for f in finals if f.point.coder in (CODER_SCTX, *ADAPTIVE_CODERS)]
            if measured:
                finals.append(self.rate.rdoq(self, measured[0]))
        best = min(finals, key=self.objective)
        if best.point.coder == CODER_ANS and best.ans is None:
            best = self.measure(best.point, best.sse)  # its symbols, dropped above
        return best

    def search(self, offset: float, coder: int, near: Point | None) -> Point:
        """The rate mode's search on the subsample for ``coder``, remembered: the memoryless
        and the context coders search on the same estimate (the memoryless one), so a
        context coder's search after the memoryless coder's is that search's result."""
        key = (offset, coder == CODER_RLEG, None if near is None else near.step)
        if key not in self.searched:
            self.searched[key] = self.rate.search(self, offset, coder, near)
        return replace(self.searched[key], coder=coder)

    def search_and_refine(self, coder: int, offsets: tuple[float, ...]) -> Final:
        """The coder's best point on the subsample over the rounding offsets, measured on
        the whole message and refined for the rate mode."""
        first = self.search(offsets[0], coder, None)
        # the other offsets' searches, each around the first's point, on threads
        others = thread_map(
            lambda off: self.search(off, coder, first), list(offsets[1:]), self.threads
        )
        candidates = [first, *others]
        # each coder's best point is measured on the whole message: a strided subsample
        # cannot see zero runs, which is what the run-length code exploits
        return self.rate.refine(self, min(candidates, key=self.objective))

    # -- levels chosen with the context coder's rates (levels="rdoq") ----------------------
    def rdoq_levels(self, step: float, q: np.ndarray) -> tuple[np.ndarray | None, float]:
        """RDOQ levels at ``step`` into int32 ``q``: (reconstruction table or None,
        squared error)."""
        step = float(np.float32(min(max(step, self.kernel_step_min), self.step_cap)))
        stats = np.zeros(3 * (MAX_RECON + 1))
        use = ctx_coder.eligible(self.tensors)
        sse_uniform = _ctx._ctx_rdoq(self.x, 1.0 / step, RDOQ_LAMBDA, self.tensors, use, q, stats)
        counts, sum_abs, sum_sq = stats[0::3], stats[1::3], stats[2::3]
        recon, sse = self.reconstruction(counts, sum_abs, sum_sq, sse_uniform, step, scale=1.0)
        return recon, sse * step * step

    def measure_rdoq(self, step: float) -> Final:
        """The context coder's payload for RDOQ levels at ``step``."""
        q = np.empty(self.n, dtype=np.int32)
        recon, sse = self.rdoq_levels(step, q)
        return self.final_levels(step, q, recon, sse)

    def final_levels(
        self, step: float, q: np.ndarray, recon: np.ndarray | None, sse: float
    ) -> Final:
        """The adaptive context coder's payload for levels ``q`` at ``step`` (in blocks or
        one stream: :func:`~fedcodec.rate_points.adaptive_coder`)."""
        step = float(np.float32(min(max(step, self.kernel_step_min), self.step_cap)))
        coder = adaptive_coder(self.codec.coder, self.tensors)
        p = Point(step, 0.5, coder, 0.0, sse, recon)
        if coder == CODER_CTX:
            params, body = ctx_coder.encode(q, self.tensors, 8.0 * q.size)
        else:
            wide = coder == CODER_CTXW
            params, body = ctxb_coder.encode(q, self.tensors, self.threads, wide=wide)
        bits = 8.0 * (len(body) + len(params)) + self.extra_bits(p)
        return Final(replace(p, bits=bits), bits, sse, None, body, params)


#: what other modules import from here (some defined in rate_points and rate_modes)
__all__ = [
    "CODER_ANS",
    "CODER_CTX",
    "CODER_CTXB",
    "CODER_CTXW",
    "CODER_RLEG",
    "CODER_SCTX",
    "CONTEXT_CODERS",
    "MAX_RECON",
    "RATE_MODES",
    "RATE_TOLERANCE",
    "RDOQ_LAMBDA",
    "STEP_MIN",
    "Final",
    "Point",
    "Solver",
    "SolverCodec",
    "max_step",
]
