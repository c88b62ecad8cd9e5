"""Compilation flags shared by every kernel.

``fastmath`` is deliberately off: encoder and decoder must reproduce the same numbers bit
for bit (quantization thresholds, dither values, rANS state arithmetic).
"""

from __future__ import annotations

JIT_OPTIONS: dict[str, bool] = {"cache": True, "nogil": True, "fastmath": False}
INLINE_OPTIONS: dict[str, object] = {"cache": True, "fastmath": False, "inline": "always"}
