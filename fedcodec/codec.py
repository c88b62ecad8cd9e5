"""The codec interface (numcodecs-style), the registry and the generic encode/decode path."""

from __future__ import annotations

import difflib
import inspect
import itertools
import json
import os
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np

from . import container
from .errors import DecodeError, UnknownCodecError
from .kernels import max_abs_and_sumsq, segment_max_abs_and_sumsq
from .layout import Layout, as_numpy, flatten

ENTRY_POINT_GROUP = "fedcodec.codecs"
#: The built-in codecs: id -> "module:Class". The one list: pyproject.toml's entry points
#: (``fedcodec.codecs`` and numcodecs' ``fedcodec.<id>``) and ``fedcodec.numcodecs`` follow
#: it, and tests/test_packaging.py checks that they do.
BUILTIN_CODECS: dict[str, str] = {
    "rdq": "fedcodec.rdq:RDQ",
    "identity": "fedcodec.identity:Identity",
    "fp16": "fedcodec.fp16:FP16",
    "bf16": "fedcodec.bf16:BF16",
    "int8": "fedcodec.int8:Int8",
    "topk": "fedcodec.topk:TopK",
    "qsgd": "fedcodec.qsgd:QSGD",
    "drive": "fedcodec.drive:Drive",
    "eden": "fedcodec.eden:Eden",
    "threelc": "fedcodec.threelc:ThreeLC",
}
#: Encoding an update with max |x| above this decodes its own payload to prove that every
#: reconstruction stays within float32's range (else ``ValueError``); real updates never
#: come close, so this costs nothing in practice.
VERIFY_ABOVE = 2.0**100
FLOAT16_MAX = float(np.finfo(np.float16).max)
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Under ``NUMBA_BOUNDSCHECK=1`` (the test suite's rerun) an out-of-bounds access in a kernel
#: raises IndexError; decoding then lets it through instead of reporting a payload defect.
BOUNDSCHECK = os.environ.get("NUMBA_BOUNDSCHECK") == "1"


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


def default_threads() -> int:
    """All usable cores."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _map(fn: Any, items: list[Any], threads: int | None) -> list[Any]:
    """``[fn(item) ...]`` on ``threads`` threads (the kernels release the GIL)."""
    threads = default_threads() if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if threads == 1 or len(items) < 2:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


class Codec(ABC):
    """Base class of every fedcodec codec.

    A codec's configuration is its constructor's keyword arguments (stored as attributes of
    the same names); :meth:`get_config`, :meth:`from_config`, equality and ``repr`` derive
    from it. Subclasses implement :meth:`_encode` (float32 vector → decode parameters and
    body) and :meth:`_decode` (the inverse, writing into a float32 vector), and the base
    class wraps them in the versioned container of ``docs/format.md``.

    Decoded updates have the original shape and dtype (float16, float32 or float64).
    """

    codec_id: ClassVar[str]
    #: One line shown by ``fedcodec.available_codecs()``.
    description: ClassVar[str] = ""
    #: Whether :meth:`_encode` takes ``tensors``: the (rows, cols) of each tensor of the
    #: update (a mapping's tensors, an array of ndim >= 2 as rows × the rest, else one row).
    takes_tensors: ClassVar[bool] = False
    #: whether ``_encode`` and ``_decode`` take ``threads`` (one frame coded in parallel)
    takes_threads: ClassVar[bool] = False

    # -- configuration -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """JSON-able configuration including ``"id"``."""
        config: dict[str, Any] = {"id": self.codec_id}
        for name in inspect.signature(type(self).__init__).parameters:
            if name != "self":
                config[name] = getattr(self, name)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Codec:
        """Rebuild a codec from :meth:`get_config`'s output (or any config a user wrote:
        an unknown option or a value of the wrong type is a ``ValueError`` that says what
        to write instead)."""
        kwargs = {k: v for k, v in config.items() if k != "id"}
        check_config(cls, kwargs)
        return cls(**kwargs)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Codec)
            and type(self) is type(other)
            and (self.get_config() == other.get_config())
        )

    def __hash__(self) -> int:
        return hash(json.dumps(self.get_config(), sort_keys=True))

    def __repr__(self) -> str:
        config = self.get_config()
        del config["id"]
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({args})"

    # -- public encode / decode ----------------------------------------------------------
    def encode(
        self,
        update: Any,
        *,
        seed: int | None = None,
        frame_elements: int | None = None,
        threads: int | None = None,
    ) -> bytes:
        """Compress ``update`` (array, torch tensor or mapping name → tensor) to bytes.

        ``seed`` is the randomness both sides share (e.g. derived from round and client);
        each codec's docstring says whether it needs one. An all-zero update, and every
        all-zero tensor of a mapping, decodes to exactly zero. An update of more than
        ``frame_elements`` (default ``fedcodec.container.FRAME_ELEMENTS``, 2**24) elements
        becomes a framed payload (a sequence of self-contained frames, coded on
        ``threads`` threads, default all cores; the bytes do not depend on ``threads``).
        """
        if isinstance(update, Mapping):
            vector, layout = flatten(update)
            return self.encode_vector(
                vector, layout=layout, seed=seed, frame_elements=frame_elements, threads=threads
            )
        arr = as_numpy(update)
        with np.errstate(over="ignore"):  # float64 beyond float32's range: reported below
            vector = np.ascontiguousarray(arr.reshape(-1), dtype=np.float32)
        return self.encode_vector(
            vector, dtype=arr.dtype, shape=tuple(arr.shape), seed=seed,
            frame_elements=frame_elements, threads=threads,
        )  # fmt: skip

    def encode_frames(
        self,
        update: Any,
        *,
        seed: int | None = None,
        frame_elements: int | None = None,
        threads: int | None = None,
    ) -> Iterator[bytes]:
        """:meth:`encode`, frame by frame: the frames of a framed payload (a transport can
        send each as it comes), or the one payload of a small update. Their concatenation
        is :meth:`encode`'s payload.

        Examples
        --------
        >>> import numpy as np, fedcodec
        >>> x = np.random.default_rng(0).laplace(size=10_000).astype(np.float32)
        >>> codec = fedcodec.RDQ(nmse=0.05)
        >>> frames = list(codec.encode_frames(x, frame_elements=4096))
        >>> len(frames), b"".join(frames) == codec.encode(x, frame_elements=4096)
        (3, True)
        >>> y = codec.decode_frames(iter(frames))
        >>> float(np.sum((x - y) ** 2) / np.sum(x**2)) <= 0.05
        True
        """
        if isinstance(update, Mapping):
            vector, layout = flatten(update)
            shape: tuple[int, ...] | None = None
            dtype: np.dtype | None = None
        else:
            arr = as_numpy(update)
            with np.errstate(over="ignore"):
                vector = np.ascontiguousarray(arr.reshape(-1), dtype=np.float32)
            layout, shape, dtype = None, tuple(arr.shape), arr.dtype
        pieces, max_abs = self._pieces(
            vector, 0, layout, dtype, shape, seed, frame_elements, threads
        )
        if max_abs > VERIFY_ABOVE:  # proven to decode before anything is handed out
            payload = b"".join(pieces)
            self._verify(payload, max_abs, seed)
            pieces = iter(container.split_frames(payload))
        yield from pieces

    def decode_frames(
        self,
        frames: Iterable[bytes | bytearray | memoryview],
        *,
        seed: int | None = None,
        out: np.ndarray | None = None,
        layout: Layout | None = None,
        max_elements: int | None = None,
    ) -> np.ndarray:
        """Decode frames as they arrive (any iterable: each checked as it comes, decoded
        into its slice of the result, then let go). A single version-1 payload is decoded
        as by :meth:`decode`."""
        it = iter(frames)
        head = next(it, None)
        if head is None:
            raise DecodeError("no frames")
        if not container.is_framed(head):
            if next(it, None) is not None:
                raise DecodeError("a version-1 payload is the whole update: no frames follow")
            return self.decode(head, seed=seed, out=out, layout=layout, max_elements=max_elements)
        bound = container.MAX_FRAMED_ELEMENTS if max_elements is None else max_elements
        stream = container.iter_frames(itertools.chain([head], it), bound)
        first = next(stream)
        self._check_shared(first)

        def body(flat: np.ndarray) -> None:
            for f in itertools.chain([first], stream):
                if f is not first:  # the first was checked before allocating
                    self._check_shared(f)
                part = flat[f.start : f.start + f.length]
                self._decode_frame(f.env.params, f.env.body, part, seed=seed, start=f.start)
                for a, b in f.env.zero_ranges:
                    part[a:b] = 0.0

        return self._decode_into(first.env, body, out=out, layout=layout)

    def _check_shared(self, f: container.Frame) -> None:
        mine = zlib.crc32(self._shared_params(f.env.params), zlib.crc32(self.codec_id.encode()))
        if mine != f.shared:
            raise DecodeError(f"frame {f.index}: its decode parameters are not the update's")

    def encode_vector(
        self,
        vector: np.ndarray,
        *,
        layout_fingerprint: int = 0,
        layout: Layout | None = None,
        dtype: np.dtype | None = None,
        shape: tuple[int, ...] | None = None,
        seed: int | None = None,
        frame_elements: int | None = None,
        threads: int | None = None,
    ) -> bytes:
        """Compress a flat contiguous float32 ``vector`` without copying it.

        For callers that build the flat update themselves (``fedcodec.torch``): pass the
        mapping's ``layout`` so that decoding checks its fingerprint and its all-zero
        tensors decode to exactly zero (``layout_fingerprint`` alone only sets the
        fingerprint). ``dtype`` and ``shape`` are what decoding restores (default: float32
        and the vector's length).
        """
        pieces, max_abs = self._pieces(
            vector, layout_fingerprint, layout, dtype, shape, seed, frame_elements, threads
        )
        payload = b"".join(pieces)
        self._verify(payload, max_abs, seed)
        return payload

    def _verify(self, payload: bytes, max_abs: float, seed: int | None) -> None:
        if max_abs > VERIFY_ABOVE:
            # near float32's limits a reconstruction can overflow: prove this one decodes
            try:
                self.decode(payload, seed=seed)
            except DecodeError as exc:
                raise ValueError(
                    f"{self.codec_id} cannot code this update within float32's range "
                    f"(max |x| = {max_abs:.4g}; {exc}): scale the update down (e.g. by "
                    "2**-64) before encoding and back up after decoding"
                ) from None

    def _pieces(
        self,
        vector: np.ndarray,
        layout_fingerprint: int,
        layout: Layout | None,
        dtype: np.dtype | None,
        shape: tuple[int, ...] | None,
        seed: int | None,
        frame_elements: int | None,
        threads: int | None,
    ) -> tuple[Iterator[bytes], float]:
        """The payload as pieces (one version-1 payload, or frames made as they are
        taken) and the update's max |x|."""
        if not (isinstance(vector, np.ndarray) and vector.dtype == np.float32 and vector.ndim == 1):
            raise TypeError("encode_vector takes a 1-d float32 numpy array")
        vector = np.ascontiguousarray(vector)
        dtype = np.dtype(np.float32) if dtype is None else np.dtype(dtype)
        shape = (vector.size,) if shape is None else shape
        fingerprint = layout_fingerprint
        frame_elements = container.FRAME_ELEMENTS if frame_elements is None else frame_elements
        if not 1 <= frame_elements <= container.MAX_ELEMENTS:
            raise ValueError(
                f"frame_elements must be in [1, {container.MAX_ELEMENTS}], got {frame_elements}"
            )
        if layout is not None:
            if layout.size != vector.size:
                raise ValueError(
                    f"layout describes {layout.size} elements, the vector has {vector.size}"
                )
            fingerprint = layout.fingerprint
            edges = layout.edges
            seg_max, max_abs, sumsq, finite = segment_max_abs_and_sumsq(vector, edges)
            zero_ranges = _zero_ranges(edges, seg_max)
        else:
            max_abs, sumsq, finite = max_abs_and_sumsq(vector)
            zero_ranges = ((0, vector.size),) if vector.size and max_abs == 0.0 else ()
        if not finite:
            raise ValueError(
                "update contains NaN or Inf (float64 values beyond float32's ±3.4e38 count as "
                "Inf: fedcodec codes float32): fix the training step, or scale the update "
                "down, before encoding"
            )
        tensors = _tensors(layout, shape, vector.size)
        if vector.size > frame_elements:
            frames = self._frames(
                vector, tensors, frame_elements, threads,
                seed=seed, max_abs=max_abs, sumsq=sumsq, dtype=dtype, shape=shape,
                fingerprint=fingerprint, zero_ranges=zero_ranges,
            )  # fmt: skip
            return frames, max_abs
        if self.takes_tensors:
            # the container's exact size around any params and body (a rate target counts it)
            def envelope(params_len: int, body_len: int) -> int:
                return container.envelope_bytes(
                    self.codec_id, dtype, shape, fingerprint, params_len, body_len, zero_ranges
                )

            params, body = self._encode(
                vector,
                seed=seed,
                max_abs=max_abs,
                sumsq=sumsq,
                tensors=tensors,  # type: ignore[call-arg]
                envelope=envelope,
                **({"threads": threads} if self.takes_threads else {}),
            )
        else:
            params, body = self._encode(vector, seed=seed, max_abs=max_abs, sumsq=sumsq)
        payload = container.pack(
            self.codec_id, dtype, shape, fingerprint, params, body, zero_ranges
        )
        return iter([payload]), max_abs

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

        return b"", _map(one, frames, threads)

    def _decode_frame(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None, start: int
    ) -> None:
        """Decode the frame at element ``start`` into ``out`` (its slice)."""
        self._decode(params, body, out, seed=frame_seed(seed, start))

    def _shared_params(self, params: bytes) -> bytes:
        """The part of a frame's parameters every frame shares (see _encode_frames)."""
        return b""

    def decode(
        self,
        payload: bytes | bytearray | memoryview | list[bytes],
        *,
        seed: int | None = None,
        out: np.ndarray | None = None,
        layout: Layout | None = None,
        max_elements: int | None = None,
        threads: int | None = None,
    ) -> np.ndarray:
        """Decompress a payload to an array of the original shape and dtype.

        For an update that was a mapping, pass its ``layout`` (from :func:`fedcodec.flatten`)
        to have the payload checked against it, and :func:`fedcodec.unflatten` the result.
        ``out`` (same shape, any float dtype) receives the result. Every defect of the
        payload raises :class:`fedcodec.DecodeError`. A framed payload (or a list of its
        frames) is decoded on ``threads`` threads; it may declare at most ``max_elements``
        elements (default ``fedcodec.container.MAX_FRAMED_ELEMENTS``), checked before
        anything is allocated.
        """
        if container.is_framed(payload):
            bound = container.MAX_FRAMED_ELEMENTS if max_elements is None else max_elements
            frames = container.unpack_frames(payload, bound)
            return self._decode_frames(frames, seed=seed, out=out, layout=layout, threads=threads)
        env = container.unpack(payload)  # type: ignore[arg-type]
        if max_elements is not None and env.count > max_elements:
            raise DecodeError(f"payload holds {env.count} elements, more than {max_elements}")
        return self._decode_envelope(env, seed=seed, out=out, layout=layout, threads=threads)

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

            _map(one, frames, threads)

        return self._decode_into(first.env, body, out=out, layout=layout)

    def _decode_envelope(
        self,
        env: container.Envelope,
        *,
        seed: int | None,
        out: np.ndarray | None = None,
        layout: Layout | None = None,
        threads: int | None = None,
    ) -> np.ndarray:
        """:meth:`decode` after the container is parsed and its checksum verified."""
        more = {"threads": threads} if self.takes_threads else {}

        def body(flat: np.ndarray) -> None:
            self._decode(env.params, env.body, flat, seed=seed, **more)
            for start, stop in env.zero_ranges:
                flat[start:stop] = 0.0

        return self._decode_into(env, body, out=out, layout=layout)

    def _decode_into(
        self,
        env: container.Envelope,
        body: Any,
        *,
        out: np.ndarray | None = None,
        layout: Layout | None = None,
    ) -> np.ndarray:
        """Check ``env`` against the caller's codec, layout and ``out``, run ``body(flat)``
        (which decodes into the float32 vector ``flat``) and return the result."""
        if env.codec_id != self.codec_id:
            raise DecodeError(
                f"payload was written by codec {env.codec_id!r}, not {self.codec_id!r}; "
                "use fedcodec.decode(payload) to pick the codec from the payload"
            )
        if layout is not None:
            if env.layout_fingerprint != layout.fingerprint or env.count != layout.size:
                raise DecodeError(
                    f"payload layout (fingerprint {env.layout_fingerprint:#010x}, "
                    f"{env.count} elements) does not match the given layout "
                    f"({layout.fingerprint:#010x}, {layout.size} elements)"
                )
        if out is not None and (not isinstance(out, np.ndarray) or out.shape != env.shape):
            shape = getattr(out, "shape", None)
            raise DecodeError(f"payload holds an array of shape {env.shape}, out has shape {shape}")
        direct = (out is not None and out.dtype == np.float32 and out.flags.c_contiguous) or None
        flat = out.reshape(-1) if direct and out is not None else np.empty(env.count, np.float32)
        try:
            # a forged scale can overflow float32: that is the payload's fault, found below
            with np.errstate(over="ignore", invalid="ignore"):
                body(flat)
        except DecodeError:
            raise
        except IndexError as exc:
            if BOUNDSCHECK:  # a kernel indexed out of bounds: a bug, not a payload defect
                raise
            raise DecodeError(f"{self.codec_id}: invalid payload ({exc})") from exc
        except (ValueError, OverflowError) as exc:  # defensive: never leak others
            raise DecodeError(f"{self.codec_id}: invalid payload ({exc})") from exc
        if not max_abs_and_sumsq(flat)[2]:
            raise DecodeError(f"{self.codec_id}: the payload decodes to NaN or Inf")
        if direct and out is not None:
            return out
        result = flat.reshape(env.shape)
        target = out.dtype if out is not None else env.dtype
        if target == np.float16:
            # a reconstruction a little beyond ±65504 (a quantizer's step above float16's
            # largest value) saturates instead of becoming Inf
            np.clip(flat, -FLOAT16_MAX, FLOAT16_MAX, out=flat)
        if out is not None:
            np.copyto(out, result, casting="unsafe")
        elif env.dtype != np.float32:
            result = result.astype(env.dtype)
        return out if out is not None else result

    # -- codec-specific --------------------------------------------------------------------
    @abstractmethod
    def _encode(
        self, x: np.ndarray, *, seed: int | None, max_abs: float, sumsq: float
    ) -> tuple[bytes, bytes]:
        """Encode a finite contiguous float32 vector; returns (decode parameters, body)."""

    @abstractmethod
    def _decode(
        self, params: bytes, body: memoryview, out: np.ndarray, *, seed: int | None
    ) -> None:
        """Decode into ``out`` (float32, the element count); raise DecodeError on defects."""


_REGISTRY: dict[str, type[Codec]] = {}
_entry_points_loaded = False


def register_codec(cls: type[Codec], codec_id: str | None = None) -> type[Codec]:
    """Register a codec class under ``codec_id`` (default ``cls.codec_id``); usable as decorator."""
    cid = codec_id or getattr(cls, "codec_id", None)
    if not cid:
        raise ValueError(f"{cls.__name__} has no codec_id")
    _REGISTRY[cid] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            register_codec(ep.load(), ep.name)


def registered_codecs() -> dict[str, type[Codec]]:
    """Every registered codec id and class (entry points included)."""
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def available_codecs() -> dict[str, str]:
    """Every registered codec id with its one-line description."""
    return {cid: cls.description for cid, cls in registered_codecs().items()}


def _accepts(kind: str, value: Any) -> bool:
    """Whether a config value fits one type name of an ``__init__`` annotation."""
    if kind == "None":
        return value is None
    if kind == "bool":
        return isinstance(value, bool | np.bool_)
    if isinstance(value, bool | np.bool_):
        return False  # True is an int to Python, never a number of a config
    if kind == "float":
        return isinstance(value, int | float | np.integer | np.floating)
    if kind == "int":
        return isinstance(value, int | np.integer) or (
            isinstance(value, float | np.floating) and float(value).is_integer()
        )
    if kind == "str":
        return isinstance(value, str)
    return True  # a type this check does not know: the codec's own checks decide


def check_config(cls: type[Codec], kwargs: Mapping[str, Any]) -> None:
    """Check a config's options against ``cls.__init__``'s keyword parameters and their
    annotated types (``float``, ``int``, ``str``, ``bool``, ``... | None``): an unknown
    option names the closest known one, a quoted number is refused with its fix."""
    params = {
        name: p
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    cid = getattr(cls, "codec_id", cls.__name__)
    for key, value in kwargs.items():
        if key not in params:
            close = difflib.get_close_matches(str(key), list(params), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(params) or "none"
            raise ValueError(f"codec {cid!r} has no option {key!r}{hint} (options: {known})")
        annotation = params[key].annotation
        if not isinstance(annotation, str):
            annotation = getattr(annotation, "__name__", str(annotation))
        kinds = [k.strip() for k in annotation.split("|")]
        if not any(_accepts(k, value) for k in kinds):
            words = {
                "None": "null",
                "float": "a number",
                "int": "an integer",
                "bool": "true or false",
            }
            wanted = " or ".join(words.get(k, f"a {k}") for k in kinds)
            fix = ""
            if isinstance(value, str):
                try:
                    parsed = json.loads(value)
                except ValueError:
                    parsed = None
                if isinstance(parsed, int | float):  # a quoted number (or true/false)
                    fix = f"; write {json.dumps(parsed)} without quotes"
            raise ValueError(
                f"codec {cid!r}: option {key!r} must be {wanted}, got {value!r} "
                f"({type(value).__name__}){fix}"
            )


def get_codec(config: Mapping[str, Any]) -> Codec:
    """Build a codec from a config such as ``{"id": "rdq", "bits_per_param": 2.0}``."""
    if not isinstance(config, Mapping) or "id" not in config:
        raise ValueError('a codec config is a mapping with an "id" key, e.g. {"id": "rdq"}')
    cid = config["id"]
    cls = _REGISTRY.get(cid)
    if cls is None:
        _load_entry_points()
        cls = _REGISTRY.get(cid)
    if cls is None:
        raise UnknownCodecError(
            f"unknown codec id {cid!r}; available: {', '.join(registered_codecs())}"
        )
    return cls.from_config(config)


def decode(
    payload: bytes | bytearray | memoryview | list[bytes],
    *,
    seed: int | None = None,
    max_elements: int | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Decode any payload (or a framed payload's frames) with the codec it names
    (decoding needs no configuration)."""
    if container.is_framed(payload):
        bound = container.MAX_FRAMED_ELEMENTS if max_elements is None else max_elements
        frames = container.unpack_frames(payload, bound)
        codec_id = frames[0].env.codec_id
    else:
        env = container.unpack(payload)  # type: ignore[arg-type]
        codec_id = env.codec_id
    cls = _REGISTRY.get(codec_id)
    if cls is None:
        _load_entry_points()
        cls = _REGISTRY.get(codec_id)
    if cls is None:
        raise DecodeError(f"payload names unknown codec {codec_id!r}")
    if container.is_framed(payload):
        return cls()._decode_frames(frames, seed=seed, threads=threads)
    if max_elements is not None and env.count > max_elements:
        raise DecodeError(f"payload holds {env.count} elements, more than {max_elements}")
    return cls()._decode_envelope(env, seed=seed, threads=threads)
