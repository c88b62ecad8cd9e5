"""The warm-up command compiles every kernel a user's first calls need: in a new process
after it, with the same numba cache, nothing compiles (item 2 of issue 24; the first
call's time is measured by ``bench/first_call.py``, not here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: A user's first calls: the README's quickstart and state-dict path, every codec's
#: defaults on a float32 update, RDQ's documented options (and a matrix's levels),
#: float16/float64 input.
WORKLOAD = r"""
import numpy as np
from numba.core import event

compiled = []
class Listener(event.Listener):
    def on_start(self, ev):
        compiled.append(str(ev.data["dispatcher"].py_func.__qualname__))
    def on_end(self, ev):
        pass
event.register("numba:compile", Listener())

import fedcodec
rng = np.random.default_rng(7)
update = rng.laplace(scale=1e-3, size=123_457).astype(np.float32)
codec = fedcodec.get_codec({"id": "rdq", "bits_per_param": 1.0})
payload = codec.encode(update, seed=42)
fedcodec.decode(payload, seed=42)
fedcodec.measure(codec, update, seed=42)
state = {"conv.weight": rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 1e-3,
         "fc.weight": rng.standard_normal((10, 200)).astype(np.float32) * 1e-3,
         "fc.bias": rng.standard_normal(10).astype(np.float32) * 1e-3}
vector, layout = fedcodec.flatten(state)
fedcodec.unflatten(codec.decode(codec.encode(state, seed=1), layout=layout, seed=1), layout)
for cid in fedcodec.available_codecs():
    c = fedcodec.get_codec({"id": cid})
    c.decode(c.encode(update, seed=3), seed=3)
for config in ({"nmse": 0.05}, {"rounding": "dither"}, {"rounding": "stochastic"},
               {"coder": "ans"}, {"coder": "rleg"}, {"levels": "rdoq", "nmse": 0.05}):
    c = fedcodec.get_codec({"id": "rdq", **config})
    c.decode(c.encode(update, seed=5), seed=5)
matrix = (rng.lognormal(size=(200, 1)) * rng.lognormal(size=(1, 500))
          * rng.laplace(size=(200, 500)) * 1e-4).astype(np.float32)
assert codec.decode_levels(codec.encode(matrix, seed=1)).coder == "ctx-stream"
static = fedcodec.get_codec({"id": "rdq", "coder": "ctx-static"})
payload = static.encode(matrix, seed=1)
assert fedcodec.container.unpack(payload).params[0] >> 3 & 3 == 3  # the static coder
static.decode(payload, seed=1)
for dtype in (np.float16, np.float64):
    codec.decode(codec.encode(update[:9_999].astype(dtype), seed=1), seed=1)
print("compiled:", sorted(set(compiled)))
"""


def test_nothing_compiles_after_the_warmup(tmp_path: Path) -> None:
    """``fedcodec warmup`` as documented for ``pip install`` users (``make install`` runs
    the same function as ``python -m fedcodec.warmup --quiet``)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    fedcodec_cli = str(Path(sys.executable).parent / "fedcodec")
    warm = subprocess.run(
        [fedcodec_cli, "warmup", "-q"], env=env, capture_output=True, text=True, timeout=600
    )
    assert warm.returncode == 0, warm.stderr
    assert f"cache: {tmp_path / 'cache'}" in warm.stdout
    run = subprocess.run(
        [sys.executable, "-c", WORKLOAD], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("compiled: []"), run.stdout


def test_the_workload_does_compile_without_the_warmup(tmp_path: Path) -> None:
    """The listener sees compilations at all (else the test above could not fail)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "empty")}
    code = WORKLOAD.split("import fedcodec")[0] + (
        "import fedcodec, numpy as np\n"
        "c = fedcodec.get_codec({'id': 'qsgd'})\n"
        "c.encode(np.ones(100, np.float32), seed=1)\n"
        "print('compiled:', sorted(set(compiled)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "compiled: []" not in run.stdout


def test_module_form_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fedcodec.warmup", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "NUMBA_CACHE_DIR" in result.stdout
