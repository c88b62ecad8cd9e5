"""Compilation settings shared by every kernel, as two decorators, and two hints to the
compiler (:func:`_at`, :func:`_unlikely`).

``fastmath`` is off everywhere: encoder and decoder must reproduce the same numbers bit for
bit (quantization thresholds, dither values, rANS state arithmetic).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

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


@intrinsic
def _expect_false(typingctx: Any, cond: Any) -> Any:
    """LLVM's ``llvm.expect.i1(cond, false)``."""
    if not isinstance(cond, types.Boolean):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i1 = ir.IntType(1)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i1, [i1, i1]), "llvm.expect.i1"
        )
        return builder.call(fn, [args[0], i1(0)])

    return types.boolean(cond), codegen


@inline_jit
def _unlikely(cond: bool | np.bool_) -> bool:
    """``cond``, with LLVM told that it is rarely true (``llvm.expect``), so that the code
    it guards is laid out off the hot path: one taken jump fewer a decision in the wide
    range coder, whose renormalization comes once per 32 bits (2-3 % of its decode time).
    Only for conditions that are rare: id 4's renormalization (once per 8 bits) got 2-4 %
    slower with it."""
    return _expect_false(cond)  # type: ignore[call-arg]
