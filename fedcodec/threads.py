"""Worker threads: the one place fedcodec runs work on threads.

Every parallel step (frames, row blocks, coding passes, the copy of a mapping's tensors)
goes through :func:`thread_map`; the kernels release the GIL, so threads use cores. It
imports nothing of the package, so any module may use it.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["default_threads", "thread_map"]


def default_threads() -> int:
    """All usable cores."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


#: one pool of worker threads per thread count, kept for the process (starting threads
#: on every call cost about 1 ms of a 10M-param encode's passes); a child process of a fork
#: starts without them
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
_WORKER = threading.local()  # .active in the pools' threads


def _mark_worker() -> None:
    _WORKER.active = True


def _forget_pools() -> None:
    _POOLS.clear()


os.register_at_fork(after_in_child=_forget_pools)


def thread_map(fn: Any, items: list[Any], threads: int | None) -> list[Any]:
    """``[fn(item) ...]`` on ``threads`` threads (the kernels release the GIL): the
    process's pool of that many, or, called from one of the pools' threads (a frame's
    coding that runs its own passes on threads), threads of its own."""
    threads = default_threads() if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if threads == 1 or len(items) < 2:
        return [fn(item) for item in items]
    if getattr(_WORKER, "active", False):
        with ThreadPoolExecutor(min(threads, len(items))) as own:
            return list(own.map(fn, items))
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = ThreadPoolExecutor(
                threads, thread_name_prefix="fedcodec", initializer=_mark_worker
            )
            _POOLS[threads] = pool
    return list(pool.map(fn, items))
