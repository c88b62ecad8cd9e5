"""Compilation settings shared by every kernel, as two decorators.

``fastmath`` is off everywhere: encoder and decoder must reproduce the same numbers bit for
bit (quantization thresholds, dither values, rANS state arithmetic).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Decorator of the kernels: compiled once, cached on disk, releases the GIL.
jit = njit(cache=True, nogil=True, fastmath=False)
#: Decorator of small helpers inlined into the kernels that call them.
inline_jit = njit(cache=True, fastmath=False, inline="always")


@inline_jit
def _at(i: int) -> np.uint64:
    """Index ``i``, known to be non-negative, as numba indexes fastest: unsigned. A signed
    index costs a compare and a select at every access (the wrap of negative indices); in
    the context coder's hot loops that was 6-10 % of the time. Only where ``i >= 0`` is
    certain: an unsigned -1 is far out of bounds."""
    return np.uint64(i)
