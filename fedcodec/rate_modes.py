"""RDQ's rate modes: one strategy per mode (``bits_per_param``, ``nmse``, ``lmbda``,
``step``, ``step_rms``) saying what "best" means (its objective and Lagrange multiplier),
how to search, and how to correct the step once measured on the whole message. The solver
that runs them is :class:`fedcodec.rate_control.Solver`.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .rate_points import (
    _LN2_6,
    _NMSE_AIM,
    _NMSE_GROW,
    _RDOQ_TRIALS,
    RATE_TOLERANCE,
    Final,
    Point,
)
from .rate_points import SearchSolver as Solver


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
        goal = self.value * s.n
        context = s.estimates_context(p.coder)
        if context:
            # the context coder spends well below the memoryless estimate of ``p``: its
            # first pass goes where its own estimate meets the target
            p = s.evaluate(s.context_step(goal, p.step, p.offset), p.offset, p.coder)
        f = s.measure(p)
        tolerance = (RATE_TOLERANCE - 1.0) * goal
        step_min = 2.0**s.log_step_min
        log_max = math.log(2.0) * s.log_step_max
        prev: Final | None = None
        measured = [f]
        for _ in range(10):
            # the payload will be these bits within a few bytes: 1% leaves room for them
            if abs(f.bits - goal) <= tolerance or f.point.step <= step_min:
                break
            if context and prev is None:
                # the estimate scaled by what the pass measured (off by much less there)
                est = s.context_bits(f.point.step, p.offset)
                new = math.log(s.context_step(goal, f.point.step, p.offset, f.bits / est))
            else:
                next_step = self.secant(s, p, f, prev, measured, goal)
                if next_step is None:
                    break
                new = next_step
            new = min(max(new, math.log(step_min)), log_max)
            point = s.evaluate(math.exp(new), p.offset, p.coder)
            # only the last measurement keeps the ANS coder's symbols (an earlier one
            # chosen at the end is counted again, by the solver)
            prev = measured[-1] = replace(f, ans=None)
            del f
            f = s.measure(point)
            measured.append(f)
        if abs(f.bits - goal) <= tolerance:
            return f
        # out of passes: the measured point nearest the target
        return min(measured, key=lambda m: abs(m.bits - goal))

    @staticmethod
    def secant(
        s: Solver, p: Point, f: Final, prev: Final | None, measured: list[Final], goal: float
    ) -> float | None:
        """The next step to measure (its log) from the last measurement ``f``: a secant
        through the last two, or with one the subsample's slope; None when the
        measurements cannot tell."""
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
            return math.log(f.point.step) + math.log(goal / f.bits) / slope
        # sizes that move in whole bytes (or levels) can measure alike at two steps:
        # bisect between the closest measured steps on either side
        over = [m.point.step for m in measured if m.bits > goal]
        under = [m.point.step for m in measured if m.bits < goal]
        if not (over and under):
            return None
        return 0.5 * (math.log(max(over)) + math.log(min(under)))


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
