"""RDQ: rate–distortion optimized uniform scalar quantization with entropy coding.

One step size Δ for the whole update, chosen per message by rate control, then an entropy
code for the integers. Follows Mitchell, Ballé, Charles and Konečný, "Optimizing the
Communication-Accuracy Trade-off in Federated Learning with Rate-Distortion Theory"
(arXiv:2201.02664), with an exact per-message rate solve instead of a vote among
candidates, a real entropy coder with the message's own model, and rate–distortion
optimized levels. Every option is described in ``docs/codecs/rdq.md``.
"""

from __future__ import annotations

import math
import secrets
import struct
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from . import _rotated, kernels
from .codec import Codec, register_codec
from .coders import ans as ans_coder
from .container import Reader
from .errors import DecodeError
from .kernels import bits as _bits
from .kernels import quant as _quantize
from .kernels import rng as _rng

ROUNDINGS = ("nearest", "stochastic", "dither")
LEVELS = ("rdo", "uniform")
CODERS = ("ans", "rleg", "auto")
RATE_PARAMS = ("bits_per_param", "nmse", "lmbda", "step", "step_rms")

_CODER_ANS, _CODER_RLEG = 0, 1
_HIST_HALF = 4096  # histogram of levels in [-4096, 4096]; larger ones are escapes
_SAMPLE = 1 << 14  # rate search runs on this many evenly spaced elements
_RDO_OFFSETS = (0.5, 0.4, 0.32, 0.25)  # rounding offsets tried by levels="rdo"
_MAX_RECON = 16  # levels 1..16 may get their conditional-mean reconstruction sent
_HEADER_BITS = 8.0 * 40  # container + parameters, for rate targets (payload ≈ body + this)
_BISECT_ITERS = 14
_RATE_TOLERANCE = 1.01  # bits_per_param: accept a full-message measurement within 1 %
_LN2_6 = math.log(2.0) / 6.0
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: The smallest positive float32 (a subnormal): the smallest step a payload can carry.
STEP_MIN = 2.0**-149


def max_step(max_abs: float) -> float:
    """Largest step whose reconstructions of values up to ``max_abs`` stay finite in
    float32 (every rounding reconstructs within 1.5 steps of the value; 2 leave margin)."""
    return (FLOAT32_MAX - max_abs) / 2.0


@dataclass
class _Point:
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
class _Final:
    """The chosen point measured exactly on the whole message, ready to be written."""

    point: _Point
    bits: float
    sse: float
    ans: ans_coder.FullPass | None
    rleg_body: bytes = b""


_NO_RECON = np.zeros(0)


class _Solver:
    """Per-message rate control: search on a subsample, then measure on the whole message.

    A subsample evaluation is one pass of the statistics kernel over up to ``_SAMPLE``
    evenly spaced elements: a histogram of the levels predicts the ANS size (model
    included), the same pass counts the run-length gamma bits, and per-level sums give the
    squared error for any reconstruction points. The chosen point is then measured exactly
    on the whole message by the encoder's own pass (quantize, map to symbols, count), and
    rate targets are met by secant steps on log(step) using these exact measurements; the
    last pass's symbols are what the ANS coder writes.
    """

    def __init__(
        self, codec: RDQ, x: np.ndarray, max_abs: float, sumsq: float, stream: np.uint64
    ) -> None:
        self.codec = codec
        self.x = x
        self.n = x.size
        self.max_abs = max_abs
        self.sumsq = sumsq
        self.stream = stream
        self.mode = codec._mode
        n = self.n
        if n > 2 * _SAMPLE:
            self.sample_index = ((np.arange(_SAMPLE) + 0.5) * (n / _SAMPLE)).astype(np.int64)
            self.sample = x[self.sample_index]
        else:
            self.sample_index = np.empty(0, dtype=np.int64)
            self.sample = x
        self.scale = n / max(self.sample.size, 1)
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
        self.log_step_max = math.log2(min(top * 4.0, step_cap))
        self.step_cap = step_cap
        # float32 rounding of the step stays within 2**-23 of it: 2**-20 leaves margin
        self.kernel_step_min = max(max_abs / (kernels.MAX_ABS_LEVEL - 1) * (1 + 2.0**-20), STEP_MIN)

    # -- estimates on the subsample ------------------------------------------------------
    def lam(self, step: float) -> float:
        """Lagrange multiplier in squared error per bit."""
        if self.codec._rate_mode == "lmbda":
            return self.codec._rate_value * self.sumsq / max(self.n, 1)
        return _LN2_6 * step * step

    def evaluate(self, step: float, offset: float, coder: int) -> _Point:
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
            coder == _CODER_RLEG,
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
            if self.codec.levels == "rdo":
                recon, sse = self.reconstruction(counts, sum_abs, sum_sq, sse, step)
        else:
            sse = sse_other
        extra = _HEADER_BITS + (0.0 if recon is None else 8.0 * recon.size)
        lo = hi = 0
        if coder == _CODER_ANS:
            bits, lo, hi = ans_coder.estimate_bits(hist, n_over, over_bits, self.scale)
        else:
            bits = rleg_bits * self.scale + 8.0
        return _Point(
            step, offset, coder, bits + extra, sse * step * step * self.scale, recon, lo, hi
        )

    def reconstruction(
        self,
        counts: np.ndarray,
        sum_abs: np.ndarray,
        sum_sq: np.ndarray,
        sse_uniform: float,
        step: float,
    ) -> tuple[np.ndarray | None, float]:
        """Conditional-mean reconstruction of levels 1..K, if it pays for its bytes."""
        top = int(np.flatnonzero(counts)[-1]) if counts.any() else 0
        kmax = min(_MAX_RECON, top)
        if kmax < 1:
            return None, sse_uniform
        k = np.arange(1, kmax + 1, dtype=np.float64)
        c = counts[1 : kmax + 1]
        mean = np.where(c > 0, sum_abs[1 : kmax + 1] / np.maximum(c, 1), k)
        t = np.clip(np.rint((mean - k) * 128.0), -128, 127)
        rho = k + t / 128.0
        s1, s2 = sum_abs[1 : kmax + 1], sum_sq[1 : kmax + 1]
        gain = float(np.sum((s2 - 2 * k * s1 + c * k * k) - (s2 - 2 * rho * s1 + c * rho * rho)))
        if gain * step * step * self.scale <= self.lam(step) * 8.0 * (kmax + 1):
            return None, sse_uniform
        return np.concatenate([[0.0], rho]), sse_uniform - gain

    def objective(self, p: _Point | _Final) -> float:
        bits = p.bits
        sse = p.sse
        step = p.point.step if isinstance(p, _Final) else p.step
        mode = self.codec._rate_mode
        target = self.codec._rate_value
        if mode == "bits_per_param":
            # points within the refinement's 1 % of the target compete on error alone
            over = max(0.0, bits - _RATE_TOLERANCE * target * self.n) / max(self.n, 1)
            return sse + 1e30 * over
        if mode == "nmse":
            infeasible = sse > target * self.sumsq
            return bits + (1e30 if infeasible else 0.0)
        return sse + self.lam(step) * bits

    def search(self, offset: float, coder: int, near: _Point | None = None) -> _Point:
        """Best point for one (offset, coder); ``near`` (a solution for another offset)
        narrows the bisection to one octave around it."""
        mode = self.codec._rate_mode
        target = self.codec._rate_value
        if mode == "step":
            return self.evaluate(self.fixed_step(target), offset, coder)
        if mode == "step_rms":
            rms = math.sqrt(self.sumsq / max(self.n, 1))
            return self.evaluate(self.fixed_step(target * rms), offset, coder)
        if mode == "lmbda":
            return self.golden(offset, coder, near)
        # bisection on log2(step): bits fall and squared error rises with the step
        lo, hi = self.log_step_min, self.log_step_max
        iters = _BISECT_ITERS
        if near is not None:
            centre = math.log2(near.step)
            lo, hi = max(lo, centre - 0.5), min(hi, centre + 0.5)
            iters = _BISECT_ITERS // 2
        best: _Point | None = None
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            p = self.evaluate(2.0**mid, offset, coder)
            if mode == "bits_per_param":
                ok = p.bits >= target * self.n  # step still small enough to spend the target
                if best is None or abs(p.bits - target * self.n) < abs(best.bits - target * self.n):
                    best = p
            else:
                ok = p.sse <= target * self.sumsq
                if ok and (best is None or p.step > best.step):
                    best = p
            lo, hi = (mid, hi) if ok else (lo, mid)
        if best is None:  # nmse target below what the smallest step reaches
            best = self.evaluate(2.0**self.log_step_min, offset, coder)
        return best

    def golden(self, offset: float, coder: int, near: _Point | None = None) -> _Point:
        """Minimize D + λR over log(step): a coarse scan of the whole range (or one octave
        around ``near``), then golden-section search around the best point."""
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
    def measure(self, p: _Point) -> _Final:
        inv = 1.0 / p.step
        recon = _NO_RECON if p.recon is None else p.recon
        extra = _HEADER_BITS + (0.0 if p.recon is None else 8.0 * p.recon.size)
        if p.coder == _CODER_ANS:
            # only the NMSE target needs the exact error of the whole message; the other
            # modes keep the subsample's estimate
            exact = self.codec._rate_mode == "nmse"
            fp = ans_coder.full_pass(
                self.x, inv, self.mode, p.offset, self.stream, recon, p.lo, p.hi, exact
            )
            sse = fp.sse * p.step * p.step if exact or self.mode != kernels.NEAREST else p.sse
            return _Final(p, fp.bits + extra, sse, fp)
        # the run-length gamma code is written right away: its length is the measurement
        q = np.empty(self.n, dtype=np.int32)
        sse_random = _quantize._quantize(self.x, inv, self.mode, p.offset, self.stream, q)
        if self.mode != kernels.NEAREST:
            sse = sse_random * p.step * p.step
        elif self.codec._rate_mode == "nmse":  # as for ANS: exact only where it is the target
            sse = _quantize._sse_nearest(self.x, inv, p.offset, recon) * p.step * p.step
        else:
            sse = p.sse
        cap = int(p.bits * 1.25 / 8) + 1024
        while True:
            out = np.empty(cap, dtype=np.uint8)
            nbytes = _bits._rleg_encode(q, out)
            if nbytes >= 0:
                break
            cap = 17 * self.n + 64  # worst case: 127 bits per element
        body = out[:nbytes].tobytes()
        return _Final(p, 8.0 * nbytes + extra, sse, None, body)

    def refine(self, p: _Point) -> _Final:
        """Measure ``p`` on the whole message and correct the step until the target holds."""
        mode = self.codec._rate_mode
        target = self.codec._rate_value
        f = self.measure(p)
        step_min = 2.0**self.log_step_min
        if mode == "bits_per_param":
            goal = target * self.n
            prev: _Final | None = None
            for _ in range(8):
                # the payload will be these bits within a few bytes: 1% leaves room for them
                if abs(f.bits - goal) <= (_RATE_TOLERANCE - 1.0) * goal or f.point.step <= step_min:
                    break
                if prev is not None and prev.bits != f.bits and prev.point.step != f.point.step:
                    slope = math.log(f.bits / prev.bits) / math.log(f.point.step / prev.point.step)
                else:
                    probe = self.evaluate(f.point.step * 1.05, p.offset, p.coder)
                    base = self.evaluate(f.point.step, p.offset, p.coder)
                    slope = math.log(probe.bits / base.bits) / math.log(1.05)
                if not slope < -1e-6:
                    break
                new = math.log(f.point.step) + math.log(goal / f.bits) / slope
                new = min(max(new, math.log(step_min)), math.log(2.0) * self.log_step_max)
                prev, f = f, self.measure(self.evaluate(math.exp(new), p.offset, p.coder))
        elif mode == "nmse":
            goal = target * self.sumsq
            for _ in range(30):  # shrink until feasible (the sample may be optimistic)
                if f.sse <= goal or f.point.step <= step_min:
                    break
                factor = min(0.995, max(0.5, math.sqrt(goal / f.sse) if f.sse > 0 else 0.5))
                f = self.measure(self.evaluate(f.point.step * factor, p.offset, p.coder))
            for _ in range(3):  # and grow while it stays feasible and the gain is worth a pass
                ratio = math.sqrt(goal / f.sse) if f.sse > 0 else 2.0
                if ratio < 1.01:
                    break
                trial = self.measure(
                    self.evaluate(f.point.step * min(ratio, 2.0) ** 0.9, p.offset, p.coder)
                )
                if trial.sse > goal:
                    break
                f = trial
        return f

    def solve(self) -> _Final:
        codec = self.codec
        if self.n == 0 or self.max_abs == 0.0:
            # nothing to send (the container marks an all-zero update as zeros); the step
            # the user asked for is the step written
            coder = _CODER_RLEG if codec.coder == "rleg" else _CODER_ANS
            step = self.fixed_step(codec._rate_value) if codec._rate_mode == "step" else 1.0
            return self.measure(self.evaluate(step, 0.5, coder))
        coders = {"ans": [_CODER_ANS], "rleg": [_CODER_RLEG], "auto": [_CODER_ANS, _CODER_RLEG]}
        offsets = _RDO_OFFSETS if codec.levels == "rdo" else (0.5,)
        finals = []
        for c in coders[codec.coder]:
            first = self.search(offsets[0], c)
            candidates = [first] + [self.search(off, c, near=first) for off in offsets[1:]]
            # each coder's best point is measured on the whole message: a strided
            # subsample cannot see zero runs, which is what the run-length code exploits
            finals.append(self.refine(min(candidates, key=self.objective)))
        return min(finals, key=self.objective)


class RDQ(Codec):
    """Rate–distortion optimized quantization with an ANS or run-length gamma code.

    Parameters
    ----------
    bits_per_param, nmse, lmbda, step, step_rms : float, optional
        Rate control; set exactly one (default ``bits_per_param=1.0``).
        ``bits_per_param``: target rate, the payload lands within 2% of it for updates of
        100k params or more; ``nmse``: the smallest rate whose NMSE does not exceed it;
        ``lmbda``: minimize ``nmse + lmbda * bits_per_param``; ``step``: absolute Δ (the
        paper's default); ``step_rms``: Δ relative to the update's RMS.
    rounding : {"nearest", "stochastic", "dither"}
        ``stochastic`` and ``dither`` are unbiased; ``dither`` is subtractive dither from
        the shared seed (error independent of the input).
    levels : {"rdo", "uniform"}, optional
        ``uniform``: x̂ = qΔ with plain rounding (the paper's quantizer). ``rdo`` (default
        for ``nearest``, only valid with it): rounding threshold (dead zone) and
        reconstruction points (conditional means, sent when they pay for themselves)
        chosen to minimize D + λR for this message.
    rotate : bool
        Randomized Hadamard rotation from the shared seed before quantizing.
    coder : {"ans", "rleg", "auto"}
        ``ans``: ANS with the message's own model (constriction-compatible stream);
        ``rleg``: the paper's run-length Elias-gamma code (byte-identical with TFC);
        ``auto``: whichever is smaller for this message.
    ans_backend : {"numba", "constriction"}
        Who runs the ANS coder; both produce and read identical bytes.

    Notes
    -----
    Needs a ``seed`` (the same on both sides) when ``rotate=True`` or
    ``rounding="dither"``; the payload holds a 32-bit check of it so a wrong seed raises
    ``DecodeError``. ``stochastic`` uses ``seed`` only to make the encoder reproducible.

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.random.default_rng(0).laplace(size=200_000).astype(np.float32)
    >>> codec = fedcodec.RDQ(bits_per_param=1.0)
    >>> payload = codec.encode(x)
    >>> abs(8 * len(payload) / x.size - 1.0) < 0.02
    True
    >>> x_hat = codec.decode(payload)
    >>> x_hat.shape == x.shape and float(np.sum((x - x_hat) ** 2) / np.sum(x**2)) < 0.5
    True
    """

    codec_id: ClassVar[str] = "rdq"
    description: ClassVar[str] = (
        "rate-distortion optimized scalar quantization + ANS or run-length gamma code"
    )

    def __init__(
        self,
        *,
        bits_per_param: float | None = None,
        nmse: float | None = None,
        lmbda: float | None = None,
        step: float | None = None,
        step_rms: float | None = None,
        rounding: str = "nearest",
        levels: str | None = None,
        rotate: bool = False,
        coder: str = "ans",
        ans_backend: str = "numba",
    ) -> None:
        rates = {
            "bits_per_param": bits_per_param,
            "nmse": nmse,
            "lmbda": lmbda,
            "step": step,
            "step_rms": step_rms,
        }
        chosen = {k: v for k, v in rates.items() if v is not None}
        if not chosen:
            chosen = {"bits_per_param": 1.0}
        if len(chosen) > 1:
            raise ValueError(f"set exactly one rate control of {RATE_PARAMS}, got {sorted(chosen)}")
        ((self._rate_mode, value),) = chosen.items()
        value = float(value)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{self._rate_mode} must be a finite positive number, got {value}")
        if self._rate_mode == "step" and not STEP_MIN <= value <= FLOAT32_MAX:
            raise ValueError(
                f"step {value:g} cannot be sent as a float32: use a step in "
                f"[{STEP_MIN:.3g}, {FLOAT32_MAX:.3g}]"
            )
        if self._rate_mode == "nmse" and value >= 1.0:
            raise ValueError("nmse must be below 1 (NMSE 1 is reached by sending nothing)")
        self.bits_per_param = value if self._rate_mode == "bits_per_param" else None
        self.nmse = value if self._rate_mode == "nmse" else None
        self.lmbda = value if self._rate_mode == "lmbda" else None
        self.step = value if self._rate_mode == "step" else None
        self.step_rms = value if self._rate_mode == "step_rms" else None
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        if levels is None:
            levels = "rdo" if rounding == "nearest" else "uniform"
        if levels not in LEVELS:
            raise ValueError(f"levels must be one of {LEVELS}, got {levels!r}")
        if levels == "rdo" and rounding != "nearest":
            raise ValueError(
                'levels="rdo" needs rounding="nearest": stochastic and dither rounding stay '
                'unbiased only with levels="uniform"'
            )
        if coder not in CODERS:
            raise ValueError(f"coder must be one of {CODERS}, got {coder!r}")
        if ans_backend not in ans_coder.BACKENDS:
            raise ValueError(
                f"ans_backend must be one of {ans_coder.BACKENDS}, got {ans_backend!r}"
            )
        self.rounding = rounding
        self.levels = levels
        self.rotate = bool(rotate)
        self.coder = coder
        self.ans_backend = ans_backend
        self._mode = kernels.rounding_mode(rounding)
        self._rate_value = value

    # -- encoding ------------------------------------------------------------------------
    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        needs_seed = self.rotate or self.rounding == "dither"
        if needs_seed and seed is None:
            raise ValueError(
                "rdq with rotate=True or rounding='dither' needs the seed both sides share: "
                "call encode(update, seed=...) and decode(payload, seed=...) with the same seed"
            )
        if seed is None:
            seed = secrets.randbits(63) if self.rounding == "stochastic" else 0
        stream = _rng.stream_seed(seed, _rng.STREAM_DITHER)
        work = x
        if self.rotate:
            work = _rotated.rotated(x, seed, max_abs)
            max_abs = kernels.max_abs_and_sumsq(work)[0]
        final = _Solver(self, work, max_abs, sumsq, stream).solve()
        point = final.point

        flags = (
            self._mode | (self.rotate << 2) | (point.coder << 3) | ((point.recon is not None) << 5)
        )
        params = bytearray(struct.pack("<Bf", flags, point.step))
        if needs_seed:
            params += struct.pack("<I", _rng.seed_check(seed))
        if point.recon is not None:
            t = np.rint((point.recon[1:] - np.arange(1, point.recon.size)) * 128.0)
            params += bytes([point.recon.size - 1]) + t.astype(np.int8).tobytes()
        if final.ans is not None:
            ans_params, body = ans_coder.encode(final.ans, self.ans_backend)
            return bytes(params + ans_params), body
        return bytes(params), final.rleg_body

    # -- decoding ------------------------------------------------------------------------
    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        r = Reader(params, "rdq parameters")
        flags = r.u8("flags")
        mode, rotate, coder, has_recon = (
            flags & 3,
            (flags >> 2) & 1,
            (flags >> 3) & 3,
            (flags >> 5) & 1,
        )
        if mode > 2 or coder > 1 or flags >> 6:
            raise DecodeError(f"rdq: invalid flags {flags:#04x}")
        (step,) = r.unpack("<f", "step")
        if not (math.isfinite(step) and step > 0):
            raise DecodeError(f"rdq: invalid step {step}")
        if rotate or mode == kernels.DITHER:
            (check,) = r.unpack("<I", "seed check")
            if seed is None:
                raise DecodeError(
                    "rdq: this payload was encoded with a shared seed (rotation or dither); "
                    "pass the same seed to decode"
                )
            if _rng.seed_check(seed) != check:
                raise DecodeError(
                    "rdq: the seed does not match the one the payload was encoded with"
                )
        recon = np.zeros(0)
        if has_recon:
            k = r.u8("reconstruction count")
            if not 1 <= k <= _MAX_RECON or mode != kernels.NEAREST:
                raise DecodeError("rdq: invalid reconstruction table")
            t = np.frombuffer(r.take(k, "reconstruction table"), dtype=np.int8)
            recon = np.concatenate([[0.0], np.arange(1, k + 1) + t / 128.0])
        stream = _rng.stream_seed(seed if seed is not None else 0, _rng.STREAM_DITHER)
        if coder == _CODER_ANS:
            ans_coder.decode(r, body, out, mode, step, recon, stream, self.ans_backend)
        else:
            r.finish()
            status = _bits._rleg_decode_values(
                np.frombuffer(body, dtype=np.uint8),
                out,
                kernels.MAX_ABS_LEVEL,
                mode,
                step,
                recon,
                stream,
            )
            if status < 0:
                raise DecodeError(f"rdq/rleg: invalid run-length gamma body (status {status})")
        if rotate:
            assert seed is not None  # checked with the seed check above
            # levels are at most 2**30 (the decoders check), reconstructions within a step
            _rotated.rotate(out, seed, bound=(kernels.MAX_ABS_LEVEL + 2) * step, inverse=True)


register_codec(RDQ)
