"""RDQ's rate control, the measurement half: a point (step, rounding offset, coder) chosen
on the subsample, measured on the whole message and written with the coders it may use.

:class:`Measurement` is a mixin of :class:`fedcodec.rate_control.Solver`: it runs the
encoder's own passes over the whole update (quantize, count or code) and returns
:class:`~fedcodec.rate_points.Final` measurements; the search that picks the points, and
the levels chosen with the context coder's rates (``levels="rdoq"``), stay in the solver.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from . import kernels
from .coders import ans as ans_coder
from .coders import ctx as ctx_coder
from .coders import ctxb as ctxb_coder
from .coders import rleg as rleg_coder
from .coders import sctx as sctx_coder
from .kernels import quant as _quantize
from .kernels import rng as _rng
from .rate_modes import RateMode
from .rate_points import (
    _NO_RECON,
    _PAR_CHUNK,
    CODER_ANS,
    CODER_CTXB,
    CODER_CTXW,
    CODER_RLEG,
    CODER_SCTX,
    CONTEXT_CODERS,
    Final,
    Point,
    SolverCodec,
    adaptive_coder,
)
from .threads import default_threads, thread_map


class Measurement:
    """Exact measurements on the whole message (the solver's state is set by its
    ``__init__``: the message, its rounding and stream, the coders' tensors, threads)."""

    codec: SolverCodec
    x: Any  # a float32 vector, or a source read in pieces
    n: int
    mode: int
    stream: np.uint64
    threads: int | None
    step_only: bool
    rate: RateMode
    tensors: np.ndarray
    head_bits: float
    exact_sizes: bool
    #: the last :meth:`measure_levels` quantization, (step, offset, levels), which
    #: :meth:`rleg_bytes` counts instead of quantizing again; None once used
    kept_levels: tuple[float, float, np.ndarray] | None = None
    #: the run-length code's pieces of those levels, (step, offset, pieces), where the
    #: context coder in blocks counted them as it coded (:meth:`rleg_bytes` joins them)
    kept_runs: tuple[float, float, list[np.ndarray]] | None = None

    def forget_levels(self) -> None:
        """Drop the kept levels and their run-length pieces (another pass needs the
        memory, or another point is measured)."""
        self.kept_levels = None
        self.kept_runs = None

    def kept_rleg_bytes(self, p: Point) -> int | None:
        """The run-length code's body bytes at ``p`` from the pieces the context coder
        counted there, or None if it counted none at ``p``."""
        runs = self.kept_runs
        if runs is None or runs[:2] != (p.step, p.offset):
            return None
        return rleg_coder.joined_bytes(runs[2])

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
        return sum(thread_map(part, chunks, self.threads)) * p.step * p.step

    def over_chunks(self, part: Any) -> list[Any]:
        """``[part(a) ...]`` for the starts ``a`` of the message's chunks of ``_PAR_CHUNK``
        elements, on ``threads`` threads."""
        return thread_map(part, list(range(0, self.n, _PAR_CHUNK)), self.threads)

    def quantize_into(self, p: Point, q: np.ndarray) -> float:
        """The whole message's levels at ``p`` into int32 ``q`` (in chunks of
        ``_PAR_CHUNK`` elements on ``threads`` threads); returns the random roundings'
        squared error in step units, the chunks' summed in order (0 for nearest)."""
        inv = 1.0 / p.step
        if self.n <= _PAR_CHUNK:
            return float(_quantize._quantize(self.x, inv, self.mode, p.offset, self.stream, q))

        def part(a: int) -> float:
            b = min(a + _PAR_CHUNK, self.n)
            stream = _rng.shifted(self.stream, a)
            return float(_quantize._quantize(self.x[a:b], inv, self.mode, p.offset, stream, q[a:b]))

        return sum(self.over_chunks(part))

    def rleg_bytes(self, p: Point, limit: int | None = None) -> int:
        """The run-length code's body bytes for the whole message's levels at ``p``,
        exactly, without coding them: the message quantized and its runs counted in chunks
        of ``_PAR_CHUNK`` elements, ``threads`` chunks at a time on ``threads`` threads, the
        chunks joined in order. With ``limit``, stops once the chunks counted so far code
        to more than ``limit`` bytes (a prefix's code is never longer than the whole's)
        and returns that prefix's bytes. Where the context coder in blocks has just coded
        the levels at ``p``, the pieces it counted give the whole's bytes: no pass."""
        inv = 1.0 / p.step
        counted = self.kept_rleg_bytes(p)
        kept = self.kept_levels
        self.forget_levels()
        if counted is not None:
            return counted
        levels = kept[2] if kept is not None and kept[:2] == (p.step, p.offset) else None

        def part(a: int) -> np.ndarray:
            b = min(a + _PAR_CHUNK, self.n)
            if levels is not None:  # the levels the context coder's measurement wrote
                return rleg_coder.piece_runs(levels[a:b])
            q = np.empty(b - a, dtype=np.int32)
            stream = _rng.shifted(self.stream, a)
            _quantize._quantize(self.x[a:b], inv, self.mode, p.offset, stream, q)
            return rleg_coder.piece_runs(q)

        starts = list(range(0, self.n, _PAR_CHUNK))
        threads = default_threads() if self.threads is None else max(int(self.threads), 1)
        wave = len(starts) if limit is None else threads
        pieces: list[np.ndarray] = []
        size = 0
        for w in range(0, len(starts), wave):
            pieces += thread_map(part, starts[w : w + wave], self.threads)
            size = rleg_coder.joined_bytes(pieces)
            if limit is not None and size > limit:
                break
        return size

    def measure(self, p: Point, sse: float | None = None) -> Final:
        """Measure ``p`` on the whole message; ``sse``, when known, saves the error pass."""
        self.forget_levels()  # a pass of its own: the kept levels are not needed
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
            self.x, inv, self.mode, p.offset, self.stream, recon, p.lo, p.hi, exact, self.threads
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
        self.forget_levels()  # (no second message's levels alive at once)
        q = np.empty(self.n, dtype=np.int32)
        sse_random = self.quantize_into(p, q)
        self.kept_levels = (p.step, p.offset, q)
        if sse is None and self.mode != kernels.NEAREST:
            sse = sse_random * p.step * p.step
        elif sse is None and self.rate.exact_sse:
            sse = self.exact_sse(p)
        elif sse is None:
            sse = p.sse
        extra = self.extra_bits(p)
        finals = []
        for coder in coders:
            point = replace(p, coder=coder)
            if coder == CODER_RLEG:
                limit = None if math.isinf(beat) else max(int((slack * beat - extra) / 8.0), 0)
                if limit is not None and self.n > _PAR_CHUNK:
                    # a large message: its exact size (counted by the context coder in
                    # blocks as it coded, else in chunks on threads) says whether the
                    # (serial) coding is worth it
                    size = self.kept_rleg_bytes(point)
                    if size is None:
                        size = rleg_coder.joined_bytes(
                            self.over_chunks(lambda a: rleg_coder.piece_runs(q[a : a + _PAR_CHUNK]))
                        )
                    body = rleg_coder.encode(q, p.bits) if size <= limit else None
                else:
                    body = rleg_coder.encode(q, p.bits, limit)
                if body is not None:
                    finals.append(Final(point, 8.0 * len(body) + extra, sse, None, body))
            else:
                if coder == CODER_SCTX:
                    params, body = sctx_coder.encode(q, self.tensors, self.threads)
                elif coder in (CODER_CTXB, CODER_CTXW):
                    runs: list[np.ndarray] = []
                    params, body = ctxb_coder.encode(
                        q, self.tensors, self.threads, None, p.bits, runs, coder == CODER_CTXW
                    )
                    self.kept_runs = (p.step, p.offset, runs)
                else:
                    params, body = ctx_coder.encode(q, self.tensors, p.bits)
                finals.append(
                    Final(point, 8.0 * (len(body) + len(params)) + extra, sse, None, body, params)
                )
                beat = min(beat, finals[-1].bits)
        return finals

    def code_point(self, point: Point, coder: str) -> Final:
        """The levels of ``point`` (a step, rounding offset and reconstruction chosen for a
        whole update: a frame of it quantizes exactly as the whole would), written with
        the smallest of the coders ``coder`` allows."""
        todo = {
            "ans": (CODER_ANS,),
            "rleg": (CODER_RLEG,),
            "auto": (CODER_ANS, CODER_RLEG),
            "ctx-static": (CODER_ANS, CODER_SCTX, CODER_RLEG),
        }.get(coder, (CODER_ANS, adaptive_coder(coder, self.tensors), CODER_RLEG))
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
