"""RDQ's rate control: one step Δ per message, chosen for the user's rate mode.

A :class:`Solver` searches on a subsample, then measures the chosen point on the whole
message; a :class:`RateMode` strategy per mode (``bits_per_param``, ``nmse``, ``lmbda``,
``step``, ``step_rms``) says what "best" means (its objective and Lagrange multiplier), how
to search, and how to correct the step once measured. Every mode keeps its guarantee
(``docs/codecs/rdq.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from . import kernels
from .codec import FLOAT32_MAX, _map
from .coders import ans as ans_coder
from .coders import ctx as ctx_coder
from .coders import rleg as rleg_coder
from .coders import sctx as sctx_coder
from .kernels import ctx as _ctx
from .kernels import quant as _quantize
from .kernels import rng as _rng


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


CODER_ANS, CODER_RLEG, CODER_CTX, CODER_SCTX = 0, 1, 2, 3
#: the coder options that use a context coder: static contexts (id 3), adaptive (id 2)
CONTEXT_CODERS = {"ctx": CODER_CTX, "ctx-static": CODER_SCTX}
_HIST_HALF = 4096  # histogram of levels in [-4096, 4096]; larger ones are escapes
#: the rate search runs on this many evenly spaced elements: 2**14, up to 2**16 for
#: messages above 2**20 (n / 64): its estimate then needs fewer corrections on the whole
#: message, and the corrections cost more than the search there
_SAMPLE_MIN, _SAMPLE_MAX = 1 << 14, 1 << 16
#: passes over a message of more elements run in chunks of this many (on threads)
_PAR_CHUNK = 1 << 22
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


# -- one strategy per rate mode ---------------------------------------------------------------
class RateMode:
    """What "best" means for one rate mode; ``value`` is the user's target."""

    #: whether the whole-message measurement needs the exact error (else the estimate's)
    exact_sse = False
    #: whether the chosen step is the same for every coder whose search runs on the
    #: memoryless estimate (the context coder's does): all modes but ``bits_per_param``,
    #: whose refinement chases each coder's exact bits. The context coder then codes the
    #: memoryless coder's point instead of searching it again.
    coder_independent_step = True

    def __init__(self, value: float) -> None:
        self.value = value

    def lam(self, s: Solver, step: float) -> float:
        """Lagrange multiplier in squared error per bit (high-rate slope at ``step``)."""
        return _LN2_6 * step * step

    def objective(self, s: Solver, bits: float, sse: float, step: float) -> float:
        return sse + self.lam(s, step) * bits

    def search(self, s: Solver, offset: float, coder: int, near: Point | None) -> Point:
        raise NotImplementedError

    def refine(self, s: Solver, p: Point) -> Final:
        """Measure the searched point ``p`` on the whole message, correcting its step until
        the target holds."""
        return s.measure(p)

    def zero_step(self, s: Solver) -> float:
        """The step written for an all-zero update."""
        return 1.0

    def met(self, s: Solver, f: Final) -> bool:
        """Whether the measured ``f`` keeps this mode's guarantee (only ``bits_per_param``'s
        can fail: a coder whose sizes move in steps too coarse for the target)."""
        return True

    def rdoq(self, s: Solver, f: Final) -> Final:
        """levels="rdoq": RDOQ levels for this mode, given the context coder's measured
        point ``f`` (by default at its step: fixed steps, and lmbda's trade-off there)."""
        return s.measure_rdoq(f.point.step)


class Step(RateMode):
    """``step``: the absolute Δ the user gave (the paper's default)."""

    def search(self, s: Solver, offset: float, coder: int, near: Point | None) -> Point:
        return s.evaluate(s.fixed_step(self.value), offset, coder)

    def zero_step(self, s: Solver) -> float:
        return s.fixed_step(self.value)


class StepRMS(RateMode):
    """``step_rms``: Δ relative to the update's RMS."""

    def search(self, s: Solver, offset: float, coder: int, near: Point | None) -> Point:
        rms = math.sqrt(s.sumsq / max(s.n, 1))
        return s.evaluate(s.fixed_step(self.value * rms), offset, coder)


class Lmbda(RateMode):
    """``lmbda``: minimize NMSE + λ · bits/param."""

    def lam(self, s: Solver, step: float) -> float:
        return self.value * s.sumsq / max(s.n, 1)

    def search(self, s: Solver, offset: float, coder: int, near: Point | None) -> Point:
        return s.golden(offset, coder, near)


class BitsPerParam(RateMode):
    """``bits_per_param``: the least error whose payload lands within 1 % of the target."""

    coder_independent_step = False

    def rdoq(self, s: Solver, f: Final) -> Final:
        # RDOQ at the context coder's step spends fewer bits: smaller steps until the
        # payload is back at the target (secant on log bits over log step)
        goal = self.value * s.n
        trials = [f]
        step, slope = f.point.step * 0.85, -1.0
        best: Final | None = None
        for _ in range(4):
            t = s.measure_rdoq(step)
            if abs(t.bits - goal) <= (RATE_TOLERANCE - 1.0) * goal or t.bits < goal:
                if best is None or t.sse < best.sse:
                    best = t
            if abs(t.bits - goal) <= (RATE_TOLERANCE - 1.0) * goal:
                break
            prev = trials[-1]
            trials.append(t)
            if prev.bits > 0 < t.bits and prev.point.step != t.point.step:
                slope = math.log(t.bits / prev.bits) / math.log(t.point.step / prev.point.step)
            slope = min(max(slope, -3.0), -0.3)
            step = t.point.step * math.exp(math.log(goal / t.bits) / slope)
        return best if best is not None else f

    def met(self, s: Solver, f: Final) -> bool:
        goal = self.value * s.n
        return abs(f.bits - goal) <= (RATE_TOLERANCE - 1.0) * goal

    def objective(self, s: Solver, bits: float, sse: float, step: float) -> float:
        # points within the refinement's 1 % of the target compete on error alone
        over = max(0.0, bits - RATE_TOLERANCE * self.value * s.n) / max(s.n, 1)
        return sse + 1e30 * over

    def search(self, s: Solver, offset: float, coder: int, near: Point | None) -> Point:
        goal = self.value * s.n

        def closer(p: Point, best: Point | None) -> bool:
            return best is None or abs(p.bits - goal) < abs(best.bits - goal)

        if s.log_step_reach > s.log_step_max and near is None:
            widest = s.evaluate(2.0**s.log_step_max, offset, coder)
            if widest.bits > goal:  # random rounding still spends more there: go wider
                s.log_step_max = s.log_step_reach
        # the step is still small enough to spend the target
        return s.bisect(offset, coder, near, lambda p: p.bits >= goal, closer)

    def refine(self, s: Solver, p: Point) -> Final:
        f = s.measure(p)
        goal = self.value * s.n
        tolerance = (RATE_TOLERANCE - 1.0) * goal
        step_min = 2.0**s.log_step_min
        log_max = math.log(2.0) * s.log_step_max
        prev: Final | None = None
        measured = [f]
        for _ in range(10):
            # the payload will be these bits within a few bytes: 1% leaves room for them
            if abs(f.bits - goal) <= tolerance or f.point.step <= step_min:
                break
            if prev is not None and prev.bits != f.bits and prev.point.step != f.point.step:
                slope = math.log(f.bits / prev.bits) / math.log(f.point.step / prev.point.step)
            else:
                probe = s.evaluate(f.point.step * 1.05, p.offset, p.coder)
                base = s.evaluate(f.point.step, p.offset, p.coder)
                slope = math.log(probe.bits / base.bits) / math.log(1.05)
                if not slope < -1e-6 and prev is None:
                    # the subsample holds too few non-zero levels to tell (a sparse rate):
                    # start from the sparse regime's bits ∝ 1 / step; the measurements of
                    # the whole message correct it from the next pass on
                    slope = -1.0
            if slope < -1e-6:
                new = math.log(f.point.step) + math.log(goal / f.bits) / slope
            else:
                # sizes that move in whole bytes (or levels) can measure alike at two
                # steps: bisect between the closest measured steps on either side
                over = [m.point.step for m in measured if m.bits > goal]
                under = [m.point.step for m in measured if m.bits < goal]
                if not (over and under):
                    break
                new = 0.5 * (math.log(max(over)) + math.log(min(under)))
            new = min(max(new, math.log(step_min)), log_max)
            prev, f = f, s.measure(s.evaluate(math.exp(new), p.offset, p.coder))
            measured.append(f)
        if abs(f.bits - goal) <= tolerance:
            return f
        # out of passes: the measured point nearest the target
        return min(measured, key=lambda m: abs(m.bits - goal))


class NMSE(RateMode):
    """``nmse``: the fewest bits whose NMSE, measured on the whole message, is at most it."""

    exact_sse = True

    def rdoq(self, s: Solver, f: Final) -> Final:
        return _rdoq_for_error(s, f, self.value * s.sumsq)

    def objective(self, s: Solver, bits: float, sse: float, step: float) -> float:
        infeasible = sse > self.value * s.sumsq
        return bits + (1e30 if infeasible else 0.0)

    def search(self, s: Solver, offset: float, coder: int, near: Point | None) -> Point:
        goal = self.value * s.sumsq

        def larger_feasible(p: Point, best: Point | None) -> bool:
            return p.sse <= goal and (best is None or p.step > best.step)

        return s.bisect(offset, coder, near, lambda p: p.sse <= goal, larger_feasible)

    def refine(self, s: Solver, p: Point) -> Final:
        # only the error decides here: each trial step costs an error pass, and only the
        # step finally kept is measured (coded or counted) on the whole message. The
        # search brackets the target: the largest feasible step so far and the smallest
        # infeasible one; a trial step follows the local slope of log(error) over log(step)
        # (from the subsample at first, then from measured pairs: below two where a dead
        # zone is wide), aiming just under the target.
        goal = self.value * s.sumsq
        step_min = 2.0**s.log_step_min
        probe = s.evaluate(p.step * 1.05, p.offset, p.coder)
        slope = math.log(probe.sse / p.sse) / math.log(1.05) if probe.sse > 0 < p.sse else 2.0
        ok: tuple[Point, float] | None = None  # feasible, largest step
        over: tuple[Point, float] | None = None  # infeasible, smallest step
        point, sse = p, s.exact_sse(p)
        last: tuple[Point, float] | None = None
        grows = 0
        for _ in range(30):
            if sse <= goal:
                if ok is None or point.step > ok[0].step:
                    ok = (point, sse)
            elif over is None or point.step < over[0].step:
                over = (point, sse)
            if ok is not None and (goal / ok[1] < _NMSE_GROW if ok[1] > 0 else False):
                break  # close enough under the target
            if ok is None and point.step <= step_min:
                return s.measure(point, sse)  # the smallest step is all there is
            if ok is not None:
                if grows == 3:
                    break
                grows += 1
            pair = (ok, over) if ok is not None and over is not None else (last, (point, sse))
            a, b = pair
            if a is not None and b is not None and a[1] > 0 < b[1] and a[0].step != b[0].step:
                slope = math.log(b[1] / a[1]) / math.log(b[0].step / a[0].step)
            alpha = min(max(slope if math.isfinite(slope) else 2.0, 0.3), 3.0)
            base = ok if ok is not None else (point, sse)
            target = math.log(_NMSE_AIM * goal / base[1]) / alpha if base[1] > 0 else math.log(2.0)
            step = base[0].step * math.exp(min(max(target, math.log(0.5)), math.log(2.0)))
            if ok is not None and over is not None:  # stay inside the bracket
                step = min(max(step, ok[0].step * 1.0005), over[0].step * 0.9995)
                if step <= ok[0].step:
                    break
            elif ok is None:
                step = min(step, point.step * 0.995)
            last = (point, sse)
            point = s.evaluate(step, p.offset, p.coder)
            sse = s.exact_sse(point)
        assert ok is not None or sse <= goal
        if ok is None:
            ok = (point, sse)
        return s.measure(ok[0], ok[1])


def _rdoq_for_error(s: Solver, f: Final, goal: float) -> Final:
    """The context coder's RDOQ payload at the largest step (of a few trials) whose error
    is at most ``goal``; ``f`` if none is. Trials start at the context coder's step (the
    refitted reconstruction points about make up for RDOQ's extra error there), follow the
    secant of log error over log step and stay inside the bracket of the largest feasible
    and smallest infeasible step (RDOQ's error is not quite monotone in the step). They
    share one buffer of levels (the best is recomputed if a later trial overwrote it)."""
    q = np.empty(s.n, dtype=np.int32)
    step = f.point.step
    trials: list[tuple[float, float]] = []
    best: tuple[float, np.ndarray | None, float] | None = None  # step, recon, error
    over = math.inf  # the smallest infeasible step
    for _ in range(_RDOQ_TRIALS):
        recon, sse = s.rdoq_levels(step, q)
        trials.append((step, sse))
        if sse <= goal:
            if best is None or step > best[0]:
                best = (step, recon, sse)
            if goal / max(sse, 1e-300) < _NMSE_GROW:
                break
        else:
            over = min(over, step)
        slope = 1.5
        if len(trials) >= 2:
            (s0, e0), (s1, e1) = trials[-2], trials[-1]
            if e0 > 0 < e1 and s0 != s1:
                slope = math.log(e1 / e0) / math.log(s1 / s0)
        slope = min(max(slope, 0.3), 3.0)
        factor = (_NMSE_AIM * goal / sse) ** (1.0 / slope) if sse > 0 else 2.0
        step *= min(max(factor, 0.5), 2.0)
        low = best[0] if best is not None else 0.0
        if not low < step < over:  # bisect the bracket instead
            step = math.sqrt(low * over) if low > 0 and math.isfinite(over) else step
            if not low < step < over:
                break
    if best is None:
        return f
    step, recon, sse = best
    if trials[-1][0] != step:  # the buffer holds a later trial's levels
        recon, sse = s.rdoq_levels(step, q)
    return s.final_levels(step, q, recon, sse)


RATE_MODES: dict[str, type[RateMode]] = {
    "bits_per_param": BitsPerParam,
    "nmse": NMSE,
    "lmbda": Lmbda,
    "step": Step,
    "step_rms": StepRMS,
}


# -- the solver ----------------------------------------------------------------------------------
class Solver:
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
            self.sample_index = ((np.arange(k) + 0.5) * (n / k)).astype(np.int64)
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

    # -- estimates on the subsample ------------------------------------------------------
    def lam(self, step: float) -> float:
        """Lagrange multiplier in squared error per bit."""
        return self.rate.lam(self, step)

    def objective(self, p: Point | Final) -> float:
        step = p.point.step if isinstance(p, Final) else p.step
        return self.rate.objective(self, p.bits, p.sse, step)

    def evaluate(self, step: float, offset: float, coder: int) -> Point:
        # the kernels index by level: they need a finite step with |x| / step + 1 <= 2**30
        # (a search may probe outside its range; a NaN step once indexed out of bounds)
        if not step >= self.kernel_step_min:
            step = self.kernel_step_min
        step = float(np.float32(min(step, self.step_cap)))
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

    # -- exact measurement on the whole message ------------------------------------------
    def exact_sse(self, p: Point) -> float:
        """The squared error of ``p`` on the whole message (one pass, nothing coded; in
        chunks of ``_PAR_CHUNK`` elements on ``threads`` threads, summed in order: the
        same number for any thread count)."""
        inv = 1.0 / p.step
        recon = _NO_RECON if p.recon is None else p.recon

        def part(bounds: tuple[int, int]) -> float:
            a, b = bounds
            xs = self.x[a:b]
            if self.mode == kernels.NEAREST:
                return float(_quantize._sse_nearest(xs, inv, p.offset, recon))
            q = np.empty(b - a, dtype=np.int32)
            stream = _rng.shifted(self.stream, a)
            return float(_quantize._quantize(xs, inv, self.mode, p.offset, stream, q))

        bounds = getattr(self.x, "bounds", None)  # a source read in its own pieces
        if bounds is None and self.n <= _PAR_CHUNK:
            return part((0, self.n)) * p.step * p.step
        chunks = bounds or [(a, min(a + _PAR_CHUNK, self.n)) for a in range(0, self.n, _PAR_CHUNK)]
        return sum(_map(part, chunks, self.threads)) * p.step * p.step

    def measure(self, p: Point, sse: float | None = None) -> Final:
        """Measure ``p`` on the whole message; ``sse``, when known, saves the error pass."""
        if self.step_only:
            # only the step is wanted (the caller codes it): nothing to count
            return Final(p, p.bits, p.sse if sse is None else sse, None)
        if p.coder != CODER_ANS:
            (final,) = self.measure_levels(p, (p.coder,), sse)
            return final
        inv = 1.0 / p.step
        recon = _NO_RECON if p.recon is None else p.recon
        # only the NMSE target needs the exact error of the whole message; the other modes
        # keep the subsample's estimate (exact anyway for the random roundings)
        exact = self.rate.exact_sse and sse is None
        fp = ans_coder.full_pass(
            self.x, inv, self.mode, p.offset, self.stream, recon, p.lo, p.hi, exact
        )
        if sse is None:
            sse = fp.sse * p.step * p.step if exact or self.mode != kernels.NEAREST else p.sse
        bits = fp.bits
        if self.exact_sizes:  # the coder's real bytes, not its estimate
            ans_params, body = ans_coder.encode(fp, self.codec.ans_backend)
            bits = 8.0 * (len(ans_params) + len(body))
        return Final(p, bits + self.extra_bits(p), sse, fp)

    def extra_bits(self, p: Point) -> float:
        return self.head_bits + (0.0 if p.recon is None else 8.0 * p.recon.size)

    def measure_levels(
        self,
        p: Point,
        coders: tuple[int, ...],
        sse: float | None = None,
        beat: float = math.inf,
        slack: float = 1.0,
    ) -> list[Final]:
        """Quantize once at ``p`` and write the levels with each of ``coders`` (run-length
        gamma, context): their length is the measurement. ``sse``, when known (the ANS
        coder's measurement of the same point), saves the error pass. The run-length code
        gives up once it is longer than ``slack`` times ``beat`` bits or a coder before it
        (it is left out)."""
        inv = 1.0 / p.step
        recon = _NO_RECON if p.recon is None else p.recon
        q = np.empty(self.n, dtype=np.int32)
        sse_random = _quantize._quantize(self.x, inv, self.mode, p.offset, self.stream, q)
        if sse is None and self.mode != kernels.NEAREST:
            sse = sse_random * p.step * p.step
        elif sse is None and self.rate.exact_sse:
            sse = _quantize._sse_nearest(self.x, inv, p.offset, recon) * p.step * p.step
        elif sse is None:
            sse = p.sse
        extra = self.extra_bits(p)
        finals = []
        for coder in coders:
            point = replace(p, coder=coder)
            if coder == CODER_RLEG:
                limit = None if math.isinf(beat) else max(int((slack * beat - extra) / 8.0), 0)
                body = rleg_coder.encode(q, p.bits, limit)
                if body is not None:
                    finals.append(Final(point, 8.0 * len(body) + extra, sse, None, body))
            else:
                if coder == CODER_SCTX:
                    params, body = sctx_coder.encode(q, self.tensors, self.threads)
                else:
                    params, body = ctx_coder.encode(q, self.tensors, p.bits)
                finals.append(
                    Final(point, 8.0 * (len(body) + len(params)) + extra, sse, None, body, params)
                )
                beat = min(beat, finals[-1].bits)
        return finals

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
            "ctx": [CODER_ANS, CODER_CTX, CODER_RLEG],
            "ctx-static": [CODER_ANS, CODER_SCTX, CODER_RLEG],
        }
        offsets = RDO_OFFSETS if codec.levels in ("rdo", "rdoq") else (0.5,)
        todo = coders[codec.coder]
        if codec.coder in CONTEXT_CODERS and not ctx_coder.has_structure(self.tensors):
            todo = coders["auto"]  # vectors and 1-d tensors: the best of today's codes
        if self.step_only:
            # the caller codes the point itself (a framed update's frames, which correct a
            # rate target by their exact sizes): the memoryless coder's search gives it
            todo = [CODER_ANS]
        finals: list[Final] = []
        for c in todo:
            if c != CODER_ANS and codec.coder in CONTEXT_CODERS:
                ans = finals[0]
                assert ans.ans is not None
                floor = rleg_coder.lower_bound_bits(ans.ans.model.lo, ans.ans.counts[:-1])
                hopeless = floor + self.extra_bits(ans.point) >= ans.bits
                if self.rate.coder_independent_step:
                    # their searches would repeat the memoryless coder's: one quantization
                    # of that coder's point, written with each of the others
                    rest = tuple(k for k in todo if k != CODER_ANS)
                    if hopeless:  # the run-length code cannot win
                        rest = tuple(k for k in rest if k != CODER_RLEG)
                    if not rest:
                        break
                    # the others' levels replace the ANS symbols in memory (counted
                    # again below if ANS wins)
                    finals[0] = replace(ans, ans=None)
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
                    # (a point that missed the target gives no such answer: search on)
                    ctx = finals[-1]
                    if not self.measure_levels(ctx.point, (CODER_RLEG,), ctx.sse, ctx.bits):
                        continue
            finals.append(self.search_and_refine(c, offsets))
        if codec.levels == "rdoq" and self.allow_rdoq and ctx_coder.has_structure(self.tensors):
            measured = [f for f in finals if f.point.coder in (CODER_CTX, CODER_SCTX)]
            if measured:
                finals.append(self.rate.rdoq(self, measured[0]))
        best = min(finals, key=self.objective)
        if best.point.coder == CODER_ANS and best.ans is None:
            best = self.measure(best.point, best.sse)  # its symbols, dropped above
        return best

    def code_point(self, point: Point, coder: str) -> Final:
        """The levels of ``point`` (a step, rounding offset and reconstruction chosen for a
        whole update: a frame of it quantizes exactly as the whole would), written with
        the smallest of the coders ``coder`` allows."""
        todo = {
            "ans": (CODER_ANS,),
            "rleg": (CODER_RLEG,),
            "auto": (CODER_ANS, CODER_RLEG),
            "ctx": (CODER_ANS, CODER_CTX, CODER_RLEG),
            "ctx-static": (CODER_ANS, CODER_SCTX, CODER_RLEG),
        }[coder]
        if coder in CONTEXT_CODERS and not ctx_coder.has_structure(self.tensors):
            todo = (CODER_ANS, CODER_RLEG)
        finals: list[Final] = []
        if CODER_ANS in todo:
            finals.append(self.measure(replace(point, coder=CODER_ANS), point.sse))
        rest = tuple(c for c in todo if c != CODER_ANS)
        if rest:
            beat = finals[0].bits if finals else math.inf
            finals += self.measure_levels(point, rest, point.sse, beat)
        return min(finals, key=lambda f: f.bits)

    def search_and_refine(self, coder: int, offsets: tuple[float, ...]) -> Final:
        """The coder's best point on the subsample over the rounding offsets, measured on
        the whole message and refined for the rate mode."""
        first = self.rate.search(self, offsets[0], coder, None)
        candidates = [first] + [self.rate.search(self, off, coder, first) for off in offsets[1:]]
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
        """The context coder's payload for levels ``q`` at ``step``."""
        step = float(np.float32(min(max(step, self.kernel_step_min), self.step_cap)))
        p = Point(step, 0.5, CODER_CTX, 0.0, sse, recon)
        params, body = ctx_coder.encode(q, self.tensors, 8.0 * q.size)
        bits = 8.0 * (len(body) + len(params)) + self.extra_bits(p)
        return Final(replace(p, bits=bits), bits, sse, None, body, params)
