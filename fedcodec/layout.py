"""Updates as arrays, torch tensors or mappings name → tensor, and their flat layout."""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .threads import thread_map

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Layout:
    """Names, shapes and dtypes of a flattened mapping, in order.

    Both sides of a federated system know the model, so the layout itself never travels;
    payloads carry its :attr:`fingerprint` so that decoding against another layout fails.
    """

    entries: tuple[tuple[str, tuple[int, ...], str], ...]

    @property
    def size(self) -> int:
        """Total number of elements."""
        return sum(int(np.prod(shape, dtype=np.int64)) for _, shape, _ in self.entries)

    @property
    def edges(self) -> np.ndarray:
        """Element offsets of the tensors in the flat vector: ``len(entries) + 1`` int64."""
        sizes = [int(np.prod(shape, dtype=np.int64)) for _, shape, _ in self.entries]
        return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)

    def to_json(self) -> list[list[Any]]:
        """``[[name, shape, dtype], ...]`` (what :meth:`from_json` reads)."""
        return [[n, list(s), d] for n, s, d in self.entries]

    @classmethod
    def from_json(cls, doc: Any) -> Layout:
        """The layout of a :meth:`to_json` document; ``ValueError`` if it is not one."""
        try:
            entries = tuple(
                (str(n), tuple(int(d) for d in s), str(np.dtype(t).name)) for n, s, t in doc
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a layout ([[name, shape, dtype], ...]): {exc}") from None
        if any(d < 0 for _, s, _ in entries for d in s):
            raise ValueError("a layout's shapes hold non-negative sizes")
        return cls(entries)

    @property
    def fingerprint(self) -> int:
        """CRC32 of the layout's canonical JSON; never 0 (0 marks a plain array)."""
        text = json.dumps(self.to_json(), separators=(",", ":"))
        return zlib.crc32(text.encode()) or 1


def is_torch_tensor(obj: Any) -> bool:
    """True for a torch tensor, without importing torch."""
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def as_numpy(update: Any, name: str = "update") -> np.ndarray:
    """A numpy view (or CPU copy for torch) of one float tensor, validated."""
    if is_torch_tensor(update):
        t = update.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        arr = t.numpy()
    elif isinstance(update, np.ndarray):
        arr = update
    elif isinstance(update, (list, tuple)):
        arr = np.asarray(update, dtype=np.float32)
    else:
        raise TypeError(
            f"{name} must be a numpy array, a torch tensor or a mapping name -> tensor, "
            f"got {type(update).__name__}"
        )
    if arr.dtype not in FLOAT_DTYPES:
        if is_torch_tensor(update):
            hint = (
                "a model's state dict (integer buffers such as BatchNorm's "
                "num_batches_tracked included) goes through "
                "fedcodec.torch.encode_state_dict(codec, new_state, old_state), which sends "
                "integer entries exactly; or pass only its floating-point tensors, "
                "{k: v for k, v in state.items() if v.is_floating_point()}"
                if "[" in name
                else "convert it first, e.g. update.float()"
            )
            raise TypeError(
                f"{name} is a torch tensor of dtype {update.dtype}; fedcodec compresses "
                f"float16/32/64 and bfloat16 updates: {hint}"
            )
        raise TypeError(
            f"{name} has dtype {arr.dtype}; fedcodec compresses float16/32/64 updates: "
            f"convert it first, e.g. update.astype(numpy.float32)"
        )
    return arr


#: flatten copies in pieces of this many elements (on ``threads`` threads)
_COPY_PIECE = 1 << 20


def flatten(update: Mapping[str, Any], *, threads: int | None = 1) -> tuple[np.ndarray, Layout]:
    """Concatenate a mapping name → tensor into one float32 vector, in the mapping's order
    (copied in pieces on ``threads`` threads; None: every core).

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> vec, layout = fedcodec.flatten({"w": np.ones((2, 2)), "b": np.zeros(3)})
    >>> vec.shape, layout.size
    ((7,), 7)
    >>> restored = fedcodec.unflatten(vec, layout)
    >>> restored["w"].shape, restored["b"].dtype
    ((2, 2), dtype('float64'))
    """
    if not isinstance(update, Mapping):
        raise TypeError(f"flatten takes a mapping name -> tensor, got {type(update).__name__}")
    arrays = []
    entries = []
    for key, value in update.items():
        arr = as_numpy(value, name=f"update[{key!r}]")
        arrays.append(arr.reshape(-1))
        entries.append((str(key), tuple(int(d) for d in arr.shape), arr.dtype.name))
    layout = Layout(tuple(entries))
    vec = np.empty(layout.size, dtype=np.float32)
    pieces = []  # (tensor, its first element, the vector's) of each piece
    start = 0
    for arr in arrays:
        pieces += [(arr, a, start + a) for a in range(0, arr.size, _COPY_PIECE)]
        start += arr.size

    caller = np.geterr()  # the caller's floating-point error handling (per thread)

    def copy(piece: tuple[np.ndarray, int, int]) -> None:
        arr, a, at = piece
        b = min(a + _COPY_PIECE, arr.size)
        with np.errstate(**caller):
            vec[at : at + b - a] = arr[a:b]

    thread_map(copy, pieces, threads)
    return vec, layout


def unflatten(vector: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """Split a flat vector back into named arrays with the layout's shapes and dtypes."""
    vector = np.asarray(vector).reshape(-1)
    if vector.size != layout.size:
        raise ValueError(f"vector has {vector.size} elements, layout expects {layout.size}")
    out: dict[str, np.ndarray] = {}
    start = 0
    for name, shape, dtype in layout.entries:
        size = int(np.prod(shape, dtype=np.int64))
        out[name] = vector[start : start + size].reshape(shape).astype(dtype, copy=False)
        start += size
    return out
