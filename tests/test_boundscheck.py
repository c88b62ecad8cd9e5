"""The kernel and hostile-payload tests again, with numba's bounds checking on.

numba does not check indices by default: an out-of-bounds access in a kernel would read
or write memory silently. Here every kernel is recompiled (in a private cache) with
``NUMBA_BOUNDSCHECK=1``, so any such access in these tests becomes an IndexError, which
decoding then lets through (``fedcodec.codec.BOUNDSCHECK``) and the hostile-payload checks
count as a failure; the encoders' regression and property tests run here too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.skipif(
    os.environ.get("NUMBA_BOUNDSCHECK") == "1", reason="already running with bounds checks"
)
def test_kernels_and_hostile_payloads_stay_in_bounds(tmp_path: Path) -> None:
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(HERE / "test_kernels.py"),
            str(HERE / "test_hostile.py"),
            str(HERE / "test_extreme.py"),
            str(HERE / "test_encoder_fuzz.py"),
            str(HERE / "test_ctx.py"),
            str(HERE / "test_sctx.py"),
            str(HERE / "test_ctxb.py"),
            str(HERE / "test_frames.py"),
            # a pytest run of the Flower test file, in a process of its own: no kernel's
            # bounds at stake (run without bounds checks in the default run)
            "-k",
            "not flower_test_file",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=HERE.parent,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
