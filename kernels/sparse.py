"""Kernels of the sparsifying codecs: top-k selection."""

from __future__ import annotations

import numpy as np

from ._config import jit


@jit
def _count_greater(x: np.ndarray, threshold: float) -> int:
    """Number of elements with |x| > threshold."""
    c = 0
    for i in range(x.shape[0]):
        c += abs(x[i]) > threshold
    return c


@jit
def _topk_select(
    x: np.ndarray, threshold: float, ties: int, index: np.ndarray, values: np.ndarray
) -> int:
    """Collect, in index order, every element with |x| > threshold and the first ``ties``
    with |x| == threshold. Returns how many were written (at most ``len(index)``)."""
    k = index.shape[0]
    j = 0
    for i in range(x.shape[0]):
        a = abs(x[i])
        if a > threshold or (a == threshold and ties > 0):
            if a == threshold and not a > threshold:
                ties -= 1
            if j >= k:
                return j
            index[j] = i
            values[j] = x[i]
            j += 1
    return j
