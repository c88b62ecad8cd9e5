"""The codec interface (numcodecs-style): :class:`Codec`, :func:`get_codec` and
:func:`decode`.

A codec implements ``_encode``/``_decode`` on a flat float32 vector; :class:`Codec` wraps
them in the versioned container (checks, dtype and shape, all-zero tensors, layouts) and
its framed payloads come from :class:`fedcodec.framing.FramedCodec`. Which class a codec id
names is :mod:`fedcodec.registry`'s; its names (``register_codec``, ``BUILTIN_CODECS``, ...)
and the framing helpers are importable from here as before.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from . import container
from .errors import DecodeError, UnknownCodecError
from .framing import (
    FramedCodec,
    _tensors,
    _zero_ranges,
    frame_seed,
    plan_frames,
)
from .kernels import all_finite, max_abs_and_sumsq, segment_max_abs_and_sumsq
from .layout import Layout, as_numpy, flatten
from .registry import (
    BUILTIN_CODECS,
    ENTRY_POINT_GROUP,
    available_codecs,
    check_config,
    lookup,
    register_codec,
    registered_codecs,
)
from .threads import default_threads, thread_map

__all__ = [
    "BUILTIN_CODECS",
    "ENTRY_POINT_GROUP",
    "FLOAT16_MAX",
    "FLOAT32_MAX",
    "VERIFY_ABOVE",
    "Codec",
    "FramedCodec",
    "available_codecs",
    "check_config",
    "decode",
    "default_threads",
    "frame_seed",
    "get_codec",
    "plan_frames",
    "register_codec",
    "registered_codecs",
]

#: Encoding an update with max |x| above this decodes its own payload to prove that every
#: reconstruction stays within float32's range (else ``ValueError``); real updates never
#: come close, so this costs nothing in practice.
VERIFY_ABOVE = 2.0**100
FLOAT16_MAX = float(np.finfo(np.float16).max)
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Under ``NUMBA_BOUNDSCHECK=1`` (the test suite's rerun) an out-of-bounds access in a kernel
#: raises IndexError; decoding then lets it through instead of reporting a payload defect.
BOUNDSCHECK = os.environ.get("NUMBA_BOUNDSCHECK") == "1"


_FINITE_CHUNK = 1 << 20  # an update's statistics are taken in chunks of this many


def _update_stats(
    vector: np.ndarray, edges: np.ndarray | None, threads: int | None
) -> tuple[np.ndarray, float, float, bool]:
    """:func:`~fedcodec.kernels.segment_max_abs_and_sumsq` of an update (or, without
    ``edges``, :func:`~fedcodec.kernels.max_abs_and_sumsq` and no segments), in chunks of
    ``_FINITE_CHUNK`` on ``threads`` threads (the chunks' sums added in order: the same
    numbers for any thread count)."""

    def stats(x: np.ndarray, local: np.ndarray | None) -> tuple[np.ndarray, float, float, bool]:
        if local is None:
            return (np.zeros(0), *max_abs_and_sumsq(x))
        return segment_max_abs_and_sumsq(x, local)

    n = vector.shape[0]
    if n <= _FINITE_CHUNK:
        return stats(vector, edges)

    def part(a: int) -> tuple[np.ndarray, float, float, bool]:
        b = min(a + _FINITE_CHUNK, n)
        return stats(vector[a:b], None if edges is None else np.clip(edges, a, b) - a)

    parts = thread_map(part, list(range(0, n, _FINITE_CHUNK)), threads)
    seg_max = np.maximum.reduce([p[0] for p in parts])
    max_abs = max(p[1] for p in parts)
    return seg_max, max_abs, sum(p[2] for p in parts), all(p[3] for p in parts)


class Codec(FramedCodec, ABC):
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
            vector, layout = flatten(update, threads=threads)
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
            vector, layout = flatten(update, threads=threads)
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
            seg_max, max_abs, sumsq, finite = _update_stats(vector, edges, threads)
            zero_ranges = _zero_ranges(edges, seg_max)
        else:
            _, max_abs, sumsq, finite = _update_stats(vector, None, threads)
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

        def body(flat: np.ndarray, zeroed: bool = False) -> None:
            self._decode(env.params, env.body, flat, seed=seed, **more, **zero_flag(zeroed))
            for start, stop in env.zero_ranges:
                flat[start:stop] = 0.0

        finite = self._finite_by_params(env.params)
        zeroed = self._zeroed_by_params(env.params)
        return self._decode_into(
            env, body, out=out, layout=layout, threads=threads, finite=finite, zeroed=zeroed
        )

    def _finite_by_params(self, params: bytes) -> bool:
        """Whether every value a successful decode of one payload with these codec
        parameters writes is finite by construction, so that the scan for NaN and Inf can
        be skipped. False here (always scan); a codec proves it from its parameters."""
        return False

    def _zeroed_by_params(self, params: bytes) -> bool:
        """Whether the decode of one payload with these codec parameters writes only the
        non-zero values when told that its output is all zeros (``_decode(...,
        zeroed=True)``), so that a result allocated here is better allocated zeroed: a
        fresh ``np.zeros`` of a large array costs nothing (its pages come zeroed from the
        system) where the decoder's own fill costs a pass. False here; a codec whose
        ``_decode`` takes ``zeroed`` says when from its parameters."""
        return False

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
    ) -> np.ndarray:
        """Check ``env`` against the caller's codec, layout and ``out``, run ``body(flat)``
        (which decodes into the float32 vector ``flat``) and return the result, checked
        finite unless ``finite`` says the codec's parameters prove it
        (:meth:`_finite_by_params`). With ``zeroed`` (:meth:`_zeroed_by_params`), a result
        allocated here is a fresh ``np.zeros``, and ``body(flat, zeroed=True)`` is told
        so."""
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
        fresh_zeros = zeroed and not direct
        if direct and out is not None:
            flat = out.reshape(-1)
        else:
            flat = (np.zeros if fresh_zeros else np.empty)(env.count, np.float32)
        try:
            # a forged scale can overflow float32: that is the payload's fault, found below
            with np.errstate(over="ignore", invalid="ignore"):
                if fresh_zeros:
                    body(flat, zeroed=True)
                else:
                    body(flat)
        except DecodeError:
            raise
        except IndexError as exc:
            if BOUNDSCHECK:  # a kernel indexed out of bounds: a bug, not a payload defect
                raise
            raise DecodeError(f"{self.codec_id}: invalid payload ({exc})") from exc
        except (ValueError, OverflowError) as exc:  # defensive: never leak others
            raise DecodeError(f"{self.codec_id}: invalid payload ({exc})") from exc
        if not finite and not all_finite(flat):
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


def zero_flag(zeroed: bool) -> dict[str, bool]:
    """``_decode``'s keyword for an output proven zero: passed only when true, so that a
    codec whose ``_decode`` does not take it never sees it."""
    return {"zeroed": True} if zeroed else {}


def get_codec(config: Mapping[str, Any]) -> Codec:
    """Build a codec from a config such as ``{"id": "rdq", "bits_per_param": 2.0}``."""
    if not isinstance(config, Mapping) or "id" not in config:
        raise ValueError('a codec config is a mapping with an "id" key, e.g. {"id": "rdq"}')
    cid = config["id"]
    cls = lookup(cid)
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
    cls = lookup(codec_id)
    if cls is None:
        raise DecodeError(f"payload names unknown codec {codec_id!r}")
    if container.is_framed(payload):
        return cls()._decode_frames(frames, seed=seed, threads=threads)
    if max_elements is not None and env.count > max_elements:
        raise DecodeError(f"payload holds {env.count} elements, more than {max_elements}")
    return cls()._decode_envelope(env, seed=seed, threads=threads)
