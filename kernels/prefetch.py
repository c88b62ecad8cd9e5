"""Software prefetch of the pages a streaming kernel is about to touch.

A kernel that walks a large array start to end waits on a page walk at every 4 KiB page
when the pages are not huge pages: the hardware prefetcher stops at a page's end, and under
a hypervisor each walk is a nested one. On the 2-core KVM machines the benchmarks run on
(transparent huge pages only where madvised, and large arrays there often without any),
a float64 sum of squares of 10M float32 values took 22 ms, and 7.5 ms with one prefetch
a page, 8192 elements ahead (bench/results/lab_notes.md, "Pages ahead"). A prefetch is a
hint: it never faults and changes no value, so an address past the array's end is
harmless, but :func:`_prefetch` still clamps it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import inline_jit

#: Elements between two prefetches in a streaming loop (a 4 KiB page of float32 or int32).
PAGE_ELEMENTS = 1024
#: How far ahead a streaming loop prefetches, in elements (eight pages of 4-byte elements).
AHEAD = 8192


@intrinsic
def _prefetch_address(typingctx: Any, arr: Any, index: Any) -> Any:
    """LLVM's ``llvm.prefetch`` (a read, high locality) of ``&arr[index]`` of a 1-D array,
    without a bounds check (a prefetch cannot fault)."""
    if not isinstance(arr, types.Array) or arr.ndim != 1 or not isinstance(index, types.Integer):
        return None
    sig = types.void(arr, types.intp)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(
            context, builder, aryty, ary, [args[1]], wraparound=False, boundscheck=False
        )
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [i8p, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@inline_jit
def _prefetch(arr: np.ndarray, index: int) -> None:
    """Prefetch ``arr[index]`` (clamped into the array; nothing for an empty one)."""
    n = arr.shape[0]
    if n > 0:
        _prefetch_address(arr, min(max(index, 0), n - 1))  # type: ignore[call-arg]


@inline_jit
def _prefetch_span(arr: np.ndarray, start: int, stop: int) -> None:
    """Prefetch one element of each page of ``arr[start:stop]`` (clamped)."""
    for i in range(start, stop, PAGE_ELEMENTS):
        _prefetch(arr, i)
