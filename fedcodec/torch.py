"""torch helpers: compress a model's state-dict update, and a DDP communication hook.

Needs the ``torch`` extra. Everything runs on CPU tensors (a CUDA tensor is copied to the
CPU once, since the codecs are numba kernels).

Examples
--------
>>> import torch, fedcodec
>>> from fedcodec.torch import encode_state_dict, decode_state_dict
>>> old = {"w": torch.zeros(1000, 10), "b": torch.zeros(10), "steps": torch.tensor(3)}
>>> new = {"w": torch.randn(1000, 10), "b": torch.ones(10), "steps": torch.tensor(4)}
>>> codec = fedcodec.get_codec({"id": "rdq", "bits_per_param": 4.0})
>>> payload = encode_state_dict(codec, new, old, seed=1)
>>> restored = decode_state_dict(codec, payload, old, seed=1)
>>> list(restored), restored["w"].dtype, bool(((restored["w"] - new["w"]) ** 2).mean() < 0.01)
(['w', 'b', 'steps'], torch.float32, True)
>>> int(restored["steps"])  # integer entries travel exactly (their new values)
4
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .codec import Codec
from .container import MAGIC, Reader, put_varint
from .error_feedback import ErrorFeedback
from .errors import DecodeError
from .layout import Layout
from .seeds import UPLINK, derive_seed

__all__ = ["DDPHookState", "ddp_hook", "decode_state_dict", "encode_state_dict", "update_layout"]


def _float_items(state: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()]


def _integer_items(state: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """Tensor entries that are not floating point: integer and bool buffers (BatchNorm's
    ``num_batches_tracked``, step counters, masks)."""
    return [
        (k, v)
        for k, v in state.items()
        if torch.is_tensor(v) and not v.is_floating_point() and not v.is_complex()
    ]


# -- the state-dict message: integer entries, exactly, beside the codec's payload ---------
#: Magic of a state-dict message (a state dict with integer entries); a state dict with
#: none is the codec's payload itself (``b"FEDC"``), as before.
STATE_MAGIC = b"FEDS"
STATE_VERSION = 1
#: Integer dtypes a message may carry, by code (docs/format.md, "State-dict messages").
_INT_DTYPES = {
    1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.int64, 5: torch.uint8, 6: torch.bool
}  # fmt: skip
_INT_CODES = {v: k for k, v in _INT_DTYPES.items()}
_MAX_NAME = 1024
_MAX_NDIM = 32


def _pack_state(integers: list[tuple[str, torch.Tensor]], payload: bytes) -> bytes:
    out = [STATE_MAGIC, bytes([STATE_VERSION]), put_varint(len(integers))]
    for name, t in integers:
        code = _INT_CODES.get(t.dtype)
        if code is None:
            raise TypeError(f"state entry {name!r} has dtype {t.dtype}, which cannot be sent")
        raw = name.encode()
        if not 0 < len(raw) <= _MAX_NAME:
            raise ValueError(f"state entry names are 1-{_MAX_NAME} bytes, got {name!r}")
        values = t.detach().cpu().contiguous().numpy()
        data = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
        out += [put_varint(len(raw)), raw, bytes([code, t.dim()])]
        out += [put_varint(d) for d in t.shape]
        out += [data]
    out += [put_varint(len(payload)), payload]
    body = b"".join(out)
    return body + struct.pack("<I", zlib.crc32(body))


def _unpack_state(
    message: bytes | bytearray | memoryview, expected: list[tuple[str, torch.Tensor]]
) -> tuple[dict[str, torch.Tensor], memoryview]:
    """The integer entries of a state-dict message (checked against ``expected``: the old
    state's integer entries, names, dtypes and shapes) and the codec payload inside it."""
    data = memoryview(bytes(message))
    if len(data) < 9:
        raise DecodeError("state-dict message truncated")
    if zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
        raise DecodeError("state-dict message: checksum mismatch (corrupted or truncated)")
    r = Reader(data[:-4], "state-dict message")
    if bytes(r.take(4, "magic")) != STATE_MAGIC:
        raise DecodeError("not a state-dict message")
    version = r.u8("version")
    if version != STATE_VERSION:
        raise DecodeError(f"state-dict message version {version}; this fedcodec reads 1")
    count = r.varint("entry count", 1 << 20)
    if count != len(expected):
        raise DecodeError(
            f"state-dict message carries {count} integer entries, the old state has {len(expected)}"
        )
    out: dict[str, torch.Tensor] = {}
    for name, old in expected:
        got = bytes(r.take(r.varint("name length", _MAX_NAME), "name")).decode(errors="replace")
        dtype = _INT_DTYPES.get(r.u8("dtype"))
        ndim = r.u8("ndim")
        if ndim > _MAX_NDIM:
            raise DecodeError(f"state-dict message: entry {got!r} has {ndim} dimensions")
        shape = tuple(r.varint("shape", 2**40) for _ in range(ndim))
        if got != name or dtype != old.dtype or shape != tuple(old.shape):
            raise DecodeError(
                f"state-dict message: entry {got!r} ({dtype}, {shape}) does not match the "
                f"old state's {name!r} ({old.dtype}, {tuple(old.shape)})"
            )
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype.newbyteorder("<")
        raw = r.take(old.numel() * np_dtype.itemsize, f"values of {name!r}")
        values = np.frombuffer(raw, dtype=np_dtype).reshape(shape)
        out[name] = torch.from_numpy(values.astype(values.dtype.newbyteorder("="), copy=True))
    payload = r.take(r.varint("payload length", r.remaining()), "codec payload")
    r.finish()
    return out, payload


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def update_layout(state: Mapping[str, torch.Tensor]) -> Layout:
    """The layout of the floating-point entries of ``state`` (what the payload carries)."""
    return Layout(tuple((k, tuple(v.shape), _dtype_name(v)) for k, v in _float_items(state)))


def encode_state_dict(
    codec: Codec,
    new: Mapping[str, torch.Tensor],
    old: Mapping[str, torch.Tensor],
    *,
    seed: int | None = None,
) -> bytes:
    """Compress the update ``new − old`` of every floating-point entry (names kept), and
    send every integer or bool entry (e.g. BatchNorm's ``num_batches_tracked``) exactly.

    The differences are written straight into one float32 buffer (no per-tensor copies)
    and coded by ``codec`` with the model's layout. A state with integer entries becomes a
    *state-dict message* (``b"FEDS"``: the integer entries' new values, raw, then the
    codec's payload; docs/format.md); a state without any is the codec's payload itself.
    Either way the bits sent are ``8 * len(result)``.
    """
    items = _float_items(new)
    missing = [k for k, _ in items if k not in old]
    if missing:
        raise KeyError(f"entries {missing} of the new state are missing from the old one")
    layout = update_layout(new)
    buf = torch.empty(layout.size, dtype=torch.float32)
    pos = 0
    with torch.no_grad():
        for k, v in items:
            o = old[k]
            if o.shape != v.shape:
                raise ValueError(f"{k}: new shape {tuple(v.shape)} != old shape {tuple(o.shape)}")
            n = v.numel()
            torch.sub(v.detach().cpu(), o.detach().cpu(), out=buf[pos : pos + n].view(v.shape))
            pos += n
    payload = codec.encode_vector(buf.numpy(), layout=layout, seed=seed)
    integers = _integer_items(new)
    return _pack_state(integers, payload) if integers else payload


def decode_state_dict(
    codec: Codec,
    payload: bytes,
    old: Mapping[str, torch.Tensor],
    *,
    seed: int | None = None,
) -> dict[str, torch.Tensor]:
    """``old`` + the decoded update, entry by entry, in ``old``'s names, order and dtypes;
    integer entries take the values the message carries.

    The payload must carry the layout of ``old``'s floating-point entries and, in a
    state-dict message, integer entries of ``old``'s names, dtypes and shapes (else
    :class:`fedcodec.DecodeError`). A bare codec payload (from a state without integer
    entries, or from an earlier fedcodec) keeps ``old``'s integer entries.
    """
    layout = update_layout(old)
    integers: dict[str, torch.Tensor] = {}
    if bytes(memoryview(payload)[:4]) == STATE_MAGIC:
        integers, payload = _unpack_state(payload, _integer_items(old))  # type: ignore[assignment]
    elif bytes(memoryview(payload)[:4]) != MAGIC:
        raise DecodeError("not a fedcodec payload nor a state-dict message")
    flat = torch.from_numpy(codec.decode(payload, seed=seed, layout=layout))
    out: dict[str, torch.Tensor] = {}
    pos = 0
    with torch.no_grad():
        for k, v in old.items():
            if torch.is_tensor(v) and v.is_floating_point():
                n = v.numel()
                delta = flat[pos : pos + n].view(v.shape)
                out[k] = (v.detach().cpu().to(torch.float32) + delta).to(v.dtype)
                pos += n
            elif k in integers:
                out[k] = integers[k]
            else:
                out[k] = v.clone() if torch.is_tensor(v) else v
    return out


# -- DDP communication hook ---------------------------------------------------------------
@dataclass
class DDPHookState:
    """State of :func:`ddp_hook`: the codec, error-feedback residuals and byte counters.

    ``bytes_sent`` counts this rank's payload bytes, ``bytes_received`` the other ranks'
    payload bytes this rank received, ``log`` one entry per bucket exchange: (step, bucket
    index, payload sizes of every rank).
    """

    codec: Codec
    error_feedback: bool = False
    seed: int = 0
    group: Any = None
    step: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    #: the residuals (one per bucket) when ``error_feedback`` is on
    feedback: ErrorFeedback | None = field(default=None, init=False)
    log: list[tuple[int, int, list[int]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.error_feedback:
            self.feedback = ErrorFeedback(self.codec)

    def seed_for(self, bucket: int, rank: int) -> int:
        """The codec seed of one rank's payload: every rank can derive every other's."""
        return derive_seed(self.seed, self.step, rank, UPLINK, bucket)


def _bucket_layout(bucket: Any, n: int) -> Layout | None:
    """The shapes of a DDP gradient bucket's parameters, in the order of its flat buffer;
    None where they do not describe it."""
    try:
        params = list(bucket.parameters())
    except (AttributeError, RuntimeError):  # an older torch, or a bucket without them
        return None
    layout = Layout(tuple((f"p{k}", tuple(p.shape), "float32") for k, p in enumerate(params)))
    return layout if layout.size == n else None


def ddp_hook(
    codec: Codec, *, error_feedback: bool = False, seed: int = 0, group: Any = None
) -> tuple[DDPHookState, Any]:
    """A DDP communication hook that compresses every gradient bucket with ``codec``.

    Use ``state, hook = ddp_hook(codec)`` then ``model.register_comm_hook(state, hook)``.
    Each rank encodes its bucket (plus its error-feedback residual, if enabled), the ranks
    all-gather the payload sizes and then exchange the payloads at their exact sizes (one
    broadcast per rank, since gloo has no variable-size all-gather), every rank decodes all
    payloads and averages them. Call ``state.step += 1`` after each optimizer step (or let
    the hook count: it advances when it sees bucket 0 again).

    It pays off when the link is slow relative to the codec (tens of MB/s between
    machines, or many ranks behind one uplink): at 1 bit/param a bucket crosses the wire
    in 1/32 of the bytes. On one machine or a fast interconnect, NCCL's or gloo's plain
    all-reduce is faster than encoding at ~200 M params/s per core, and the decoded average
    carries the codec's error (use error feedback for biased codecs such as top-k).
    """
    import torch.distributed as dist

    state = DDPHookState(codec, error_feedback=error_feedback, seed=seed, group=group)
    seen: set[int] = set()

    def hook(st: DDPHookState, bucket: Any) -> torch.futures.Future[torch.Tensor]:
        grad = bucket.buffer()
        index = int(bucket.index())
        with st._lock:
            if index in seen:  # a new backward pass: a new step
                seen.clear()
                st.step += 1
            seen.add(index)
        world = dist.get_world_size(st.group)
        rank = dist.get_rank(st.group)
        x = grad.detach().to("cpu", torch.float32).numpy().reshape(-1).copy()
        layout = _bucket_layout(bucket, x.size)  # its tensors: the context coder sees them
        s = st.seed_for(index, rank)
        if st.feedback is not None:  # one residual per bucket
            payload = st.feedback.encode_vector(x, key=index, layout=layout, seed=s)
        else:
            payload = st.codec.encode_vector(x, layout=layout, seed=s)
        size_list = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
        dist.all_gather(size_list, torch.tensor([len(payload)], dtype=torch.int64), group=st.group)
        sizes_t = torch.cat(size_list)
        total = np.zeros(x.size, np.float32)
        for src in range(world):
            n = int(sizes_t[src])
            if src == rank:
                buf = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
            else:
                buf = torch.empty(n, dtype=torch.uint8)
            dist.broadcast(buf, src=src, group=st.group)
            data = payload if src == rank else buf.numpy().tobytes()
            if src != rank:
                st.bytes_received += n
            total += st.codec.decode(data, seed=st.seed_for(index, src))
        st.bytes_sent += len(payload)
        st.log.append((st.step, index, [int(s) for s in sizes_t]))
        result = torch.from_numpy(total / np.float32(world)).to(grad.device, grad.dtype)
        grad.copy_(result.view_as(grad))
        fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
        fut.set_result(grad)
        return fut

    # DDP checks the hook's annotations as objects (this module's are strings)
    hook.__annotations__ = {
        "st": DDPHookState,
        "bucket": dist.GradBucket,
        "return": torch.futures.Future[torch.Tensor],
    }
    return state, hook
