"""Measure what a codec costs on one update: bits from the real payload, error, time."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .codec import Codec
from .layout import as_numpy, flatten


def measure(
    codec: Codec, update: Any, *, seed: int | None = None, payload: bytes | None = None
) -> dict[str, float]:
    """Encode and decode ``update`` once (or only decode ``payload``, its encoding).

    Returns ``bits`` (8 × payload length), ``bits_per_param``, ``mse``, ``nmse``
    (‖x − x̂‖² / ‖x‖², 0 for an all-zero update decoded exactly), ``encode_s`` and
    ``decode_s`` (``encode_s`` is 0 when ``payload`` is given).

    Examples
    --------
    >>> import numpy as np, fedcodec
    >>> x = np.random.default_rng(1).standard_normal(50_000).astype(np.float32)
    >>> m = fedcodec.measure(fedcodec.RDQ(bits_per_param=2.0), x)
    >>> m["bits"] == 8 * round(m["bits"] / 8) and 0.0 < m["nmse"] < 0.2
    True
    """
    t0 = time.perf_counter()
    if payload is None:
        payload = codec.encode(update, seed=seed)
    t1 = time.perf_counter()
    decoded = codec.decode(payload, seed=seed)
    t2 = time.perf_counter()
    if isinstance(update, Mapping):
        x, _ = flatten(update)
    else:
        x = np.asarray(as_numpy(update), dtype=np.float32).reshape(-1)
    err = x.astype(np.float64) - decoded.reshape(-1).astype(np.float64)
    sse = float(np.dot(err, err))
    energy = float(np.dot(x.astype(np.float64), x.astype(np.float64)))
    n = max(x.size, 1)
    bits = 8 * len(payload)
    return {
        "bits": float(bits),
        "bits_per_param": bits / n,
        "mse": sse / n,
        "nmse": sse / energy if energy > 0 else (0.0 if sse == 0 else float("inf")),
        "encode_s": t1 - t0,
        "decode_s": t2 - t1,
    }
