"""Every fedcodec codec as a numcodecs codec (ids ``fedcodec.<id>``), for Zarr and friends.

Registered through the ``numcodecs.codecs`` entry point, so ``numcodecs.get_codec({"id":
"fedcodec.rdq", "bits_per_param": 2.0})`` works once fedcodec is installed (extra
``numcodecs``). The encoded buffer is fedcodec's self-contained payload; decoding restores
the chunk's shape and dtype. numcodecs has no per-call seed, so the codecs that need shared
randomness (``rdq`` with ``rotate`` or dithered/stochastic rounding, ``drive``, ``eden``) use
the ``seed`` of their config (default 0) for every chunk.

Examples
--------
>>> import numpy as np, numcodecs
>>> codec = numcodecs.get_codec({"id": "fedcodec.rdq", "bits_per_param": 4.0})
>>> codec.codec_id, codec.get_config()["bits_per_param"]
('fedcodec.rdq', 4.0)
>>> x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
>>> y = codec.decode(codec.encode(x))
>>> y.shape, y.dtype, float(np.mean((x - y) ** 2)) < 0.01
((64, 64), dtype('float32'), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    from numcodecs.abc import Codec as _NumcodecsCodec
    from numcodecs.compat import ensure_contiguous_ndarray, ensure_ndarray, ndarray_copy
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fedcodec.numcodecs needs numcodecs: pip install 'fedcodec[numcodecs]'"
    ) from exc

from . import codec as _codec
from .container import MAX_ELEMENTS

PREFIX = "fedcodec."


class FedcodecCodec(_NumcodecsCodec):
    """Base of the wrappers: ``fedcodec_id`` names the wrapped fedcodec codec."""

    fedcodec_id: str = ""

    def __init__(self, *, seed: int | None = None, **config: Any) -> None:
        self._inner = _codec.get_codec({"id": self.fedcodec_id, **config})
        self._config = self._inner.get_config()
        del self._config["id"]
        self._seed = seed

    def get_config(self) -> dict[str, Any]:
        config = {"id": self.codec_id, **self._config}
        if self._seed is not None:
            config["seed"] = self._seed
        return config

    def __repr__(self) -> str:
        items = {**self._config, **({"seed": self._seed} if self._seed is not None else {})}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in items.items())})"

    def _seed_for_call(self) -> int:
        return 0 if self._seed is None else self._seed

    def encode(self, buf: Any) -> bytes:
        arr = ensure_ndarray(buf)
        if arr.dtype.kind != "f":
            raise TypeError(
                f"{self.codec_id} compresses float arrays, got dtype {arr.dtype}: "
                "store model updates as float16/32/64"
            )
        # one frame per chunk (a store's chunks are its units; up to 2**28 elements)
        frame = min(max(arr.size, 1), MAX_ELEMENTS)
        return self._inner.encode(arr, seed=self._seed_for_call(), frame_elements=frame)

    def decode(self, buf: Any, out: Any = None) -> Any:
        payload = ensure_contiguous_ndarray(buf).view(np.uint8).tobytes()
        decoded = self._inner.decode(payload, seed=self._seed_for_call())
        return ndarray_copy(decoded, out)


def _make(fedcodec_id: str, cls: type[_codec.Codec]) -> type[FedcodecCodec]:
    return type(
        cls.__name__,
        (FedcodecCodec,),
        {
            "codec_id": PREFIX + fedcodec_id,
            "fedcodec_id": fedcodec_id,
            "__doc__": f"numcodecs codec ``{PREFIX}{fedcodec_id}``: {cls.description}",
            "__module__": __name__,
        },
    )


_CLASSES = {
    cid: _make(cid, cls)
    for cid, cls in _codec.registered_codecs().items()
    if cid in _codec.BUILTIN_CODECS
}
RDQ = _CLASSES["rdq"]
Identity = _CLASSES["identity"]
FP16 = _CLASSES["fp16"]
BF16 = _CLASSES["bf16"]
Int8 = _CLASSES["int8"]
TopK = _CLASSES["topk"]
QSGD = _CLASSES["qsgd"]
Drive = _CLASSES["drive"]
Eden = _CLASSES["eden"]
ThreeLC = _CLASSES["threelc"]


def register_all() -> None:
    """Register every wrapper with numcodecs (not needed when installed: entry points)."""
    from numcodecs.registry import register_codec

    for cls in _CLASSES.values():
        register_codec(cls)


__all__ = ["BF16", "FP16", "QSGD", "RDQ", "Drive", "Eden", "FedcodecCodec", "Identity", "Int8",
           "ThreeLC", "TopK", "register_all"]  # fmt: skip
