"""A pytest plugin that makes one codec's ``encode`` slower on purpose, for the test that
``bench/check_regression.py`` catches a real regression (``tests/test_bench_check.py``).

``FEDCODEC_SLOWDOWN="drive:2.5"`` with ``-p bench_slowdown`` (``tests/`` on the path): each
``encode`` of that codec runs as before, then burns CPU until it has taken 2.5x its own
CPU time. Not used anywhere else.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    spec = os.environ.get("FEDCODEC_SLOWDOWN")
    if not spec:
        return
    codec_id, factor = spec.split(":")
    import fedcodec

    cls = type(fedcodec.get_codec({"id": codec_id}))
    original = cls.encode

    def slowed(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.process_time()
        out = original(self, *args, **kwargs)
        until = t0 + float(factor) * (time.process_time() - t0)
        while time.process_time() < until:
            pass
        return out

    cls.encode = slowed  # type: ignore[method-assign]
