"""Framing: how an update larger than a frame is cut, coded frame by frame on
threads and put back together (the framed payload of ``docs/format.md``).

:class:`FramedCodec` is the part of :class:`fedcodec.Codec` that runs a framed payload: the
plan (:func:`plan_frames`), each frame's seed (:func:`frame_seed`), the frames coded and
decoded on threads (:func:`fedcodec.threads.thread_map`). It calls the codec's own
``_encode``/``_decode`` and ``_decode_into`` (declared below for type checkers;
:mod:`fedcodec.codec` defines them).
Codecs whose frames share state (RDQ's one step for the whole update) override
``_plan``, ``_encode_frames``, ``_decode_frame`` and ``_shared_params``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from . import container
from .errors import DecodeError
from .kernels import max_abs_and_sumsq
from .layout import Layout
from .threads import default_threads, thread_map

__all__ = ["FramedCodec", "default_threads", "frame_seed", "plan_frames"]


def _tensors(layout: Layout | None, shape: tuple[int, ...], n: int) -> tuple[tuple[int, int], ...]:
    """(rows, cols) of each tensor: a conv kernel is out-channels × the rest, a vector one
    row; a mapping's tensors from its layout, an array as one tensor."""
    shapes = [s for _, s, _ in layout.entries] if layout is not None else [shape]
    out = []
    for s in shapes:
        size = int(np.prod(s, dtype=np.int64)) if s else 1
        rows = int(s[0]) if len(s) >= 2 and s[0] > 0 else 1
        out.append((rows, size // rows))
    if sum(r * c for r, c in out) != n:  # a shape that does not describe the vector
        return ((1, n),)
    return tuple(out)


def _zero_ranges(edges: np.ndarray, seg_max: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Merged (start, stop) ranges of the non-empty segments whose max |x| is zero."""
    ranges: list[tuple[int, int]] = []
    for j in np.flatnonzero((seg_max == 0.0) & (np.diff(edges) > 0)):
        start, stop = int(edges[j]), int(edges[j + 1])
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], stop)
        else:
            ranges.append((start, stop))
    return tuple(ranges)


def plan_frames(
    tensors: tuple[tuple[int, int], ...], n: int, frame_elements: int
) -> list[tuple[int, int, tuple[tuple[int, int], ...]]]:
    """Cut an update of ``n`` elements made of ``tensors`` into frames of at most
    ``frame_elements``: (start, stop, the frame's tensors). Frames end at tensor boundaries
    where they can; a larger tensor is cut by rows (a row longer than a frame into
    pieces of one row)."""
    frames: list[tuple[int, int, tuple[tuple[int, int], ...]]] = []
    cur: list[tuple[int, int]] = []
    start = pos = 0

    def close() -> None:
        nonlocal start, cur
        if pos > start:
            frames.append((start, pos, tuple(cur)))
        start, cur = pos, []

    for rows, cols in tensors:
        size = rows * cols
        if size == 0:
            continue
        if size <= frame_elements:
            if pos + size - start > frame_elements:
                close()
            cur.append((rows, cols))
            pos += size
            continue
        close()
        if cols <= frame_elements:
            per = frame_elements // cols
            for r in range(0, rows, per):
                block = min(per, rows - r)
                cur.append((block, cols))
                pos += block * cols
                close()
        else:
            for _ in range(rows):
                for c in range(0, cols, frame_elements):
                    piece = min(frame_elements, cols - c)
                    cur.append((1, piece))
                    pos += piece
                    close()
    close()
    if not frames and n:
        frames.append((0, n, ((1, n),)))
    return frames


def frame_seed(seed: int | None, start: int) -> int | None:
    """The seed of the frame at element ``start`` where frames use their own randomness
    (codecs that code frames independently; RDQ's rotation of a framed update)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed) & (2**63 - 1), 0xF4A3E, int(start)])
               .generate_state(1, np.uint32)[0])  # fmt: skip


class FramedCodec:
    """The framed-payload half of :class:`fedcodec.Codec` (a mixin; see the module text)."""

    codec_id: ClassVar[str]
    takes_tensors: ClassVar[bool] = False

    if TYPE_CHECKING:  # defined by fedcodec.codec.Codec

        def _encode(
            self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
        ) -> tuple[bytes, bytes]: ...

        def _decode(
            self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
        ) -> None: ...

        def _decode_into(
            self,
            env: container.Envelope,
            body: Any,
            *,
            out: np.ndarray | None = None,
            layout: Layout | None = None,
            threads: int | None = 1,
            finite: bool = False,
            zeroed: bool = False,
        ) -> np.ndarray: ...

    def _check_shared(self, f: container.Frame) -> None:
        mine = zlib.crc32(self._shared_params(f.env.params), zlib.crc32(self.codec_id.encode()))
        if mine != f.shared:
            raise DecodeError(f"frame {f.index}: its decode parameters are not the update's")

    def _frames(
        self,
        vector: np.ndarray,
        tensors: tuple[tuple[int, int], ...],
        frame_elements: int,
        threads: int | None,
        *,
        seed: int | None,
        max_abs: float,
        sumsq: float,
        dtype: np.dtype,
        shape: tuple[int, ...],
        fingerprint: int,
        zero_ranges: tuple[tuple[int, int], ...],
    ) -> Iterator[bytes]:
        """The frames of a framed payload, one at a time."""
        frames = self._plan(tensors, vector.size, frame_elements)
        shared, coded = self._encode_frames(
            vector, frames, seed=seed, max_abs=max_abs, sumsq=sumsq, threads=threads
        )
        shared_crc = zlib.crc32(shared, zlib.crc32(self.codec_id.encode()))
        uid = container.update_id(shared_crc, vector.size, fingerprint, coded[0][1])
        for index, ((start, stop, _), (params, body)) in enumerate(zip(frames, coded, strict=True)):
            zeros = tuple(
                (max(a, start) - start, min(b, stop) - start)
                for a, b in zero_ranges
                if a < stop and b > start
            )
            coded[index] = (b"", b"")  # what is yielded is the caller's
            yield container.pack_frame(
                self.codec_id, dtype, shape, fingerprint, uid, shared_crc, frame_elements,
                len(frames), index, start, stop - start, params, body, zeros,
            )  # fmt: skip

    def _plan(
        self, tensors: tuple[tuple[int, int], ...], n: int, frame_elements: int
    ) -> list[tuple[int, int, tuple[tuple[int, int], ...]]]:
        """How an update is cut into frames (:func:`plan_frames`)."""
        return plan_frames(tensors, n, frame_elements)

    def _encode_frames(
        self,
        x: np.ndarray,
        frames: list[tuple[int, int, tuple[tuple[int, int], ...]]],
        *,
        seed: int | None,
        max_abs: float,
        sumsq: float,
        threads: int | None,
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """(the decode parameters every frame shares, (parameters, body) of each frame).
        By default each frame is coded on its own (with :func:`frame_seed`)."""

        def one(frame: tuple[int, int, tuple[tuple[int, int], ...]]) -> tuple[bytes, bytes]:
            start, stop, tensors = frame
            part = x[start:stop]
            part_max, part_sumsq, _ = max_abs_and_sumsq(part)
            opts: dict[str, Any] = {"seed": frame_seed(seed, start)}
            if self.takes_tensors:
                opts["tensors"] = tensors
            return self._encode(part, max_abs=part_max, sumsq=part_sumsq, **opts)

        return b"", thread_map(one, frames, threads)

    def _decode_frame(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None, start: int
    ) -> None:
        """Decode the frame at element ``start`` into ``out`` (its slice)."""
        self._decode(params, body, out, seed=frame_seed(seed, start))

    def _shared_params(self, params: bytes) -> bytes:
        """The part of a frame's parameters every frame shares (see _encode_frames)."""
        return b""

    def _decode_frames(
        self,
        frames: list[container.Frame],
        *,
        seed: int | None,
        out: np.ndarray | None = None,
        layout: Layout | None = None,
        threads: int | None = None,
    ) -> np.ndarray:
        first = frames[0]
        for f in frames:
            self._check_shared(f)

        def body(flat: np.ndarray) -> None:
            def one(f: container.Frame) -> None:
                part = flat[f.start : f.start + f.length]
                self._decode_frame(f.env.params, f.env.body, part, seed=seed, start=f.start)
                for a, b in f.env.zero_ranges:
                    part[a:b] = 0.0

            thread_map(one, frames, threads)

        return self._decode_into(first.env, body, out=out, layout=layout, threads=threads)
