"""Compilation settings shared by every kernel, as two decorators.

``fastmath`` is off everywhere: encoder and decoder must reproduce the same numbers bit for
bit (quantization thresholds, dither values, rANS state arithmetic).
"""

from __future__ import annotations

from numba import njit

#: Decorator of the kernels: compiled once, cached on disk, releases the GIL.
jit = njit(cache=True, nogil=True, fastmath=False)
#: Decorator of small helpers inlined into the kernels that call them.
inline_jit = njit(cache=True, fastmath=False, inline="always")
