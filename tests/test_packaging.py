"""Both install modes import ``fedcodec.kernels`` (mapped from ``kernels/``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import fedcodec

ROOT = Path(__file__).parents[1]


def test_this_install_imports_kernels() -> None:
    import fedcodec.kernels

    assert Path(fedcodec.kernels.__file__).parent.name in {"kernels"}
    assert hasattr(fedcodec.kernels, "quantize")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # build from a copy: setuptools leaves a build/ folder next to the sources
    src = tmp_path_factory.mktemp("src")
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, src / name)
    for name in ["fedcodec", "kernels"]:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    BUILD_OUTPUT.append(result.stdout + result.stderr)
    (path,) = out.glob("fedcodec-*.whl")
    return path


#: What the wheel build printed (the fixture's pip output).
BUILD_OUTPUT: list[str] = []


def test_the_build_is_quiet_and_ships_the_schemas(wheel: Path) -> None:
    """Every installed folder is declared: no setuptools warning about a package absent
    from the configuration (issue 24, item 8), and the JSON schemas are in the wheel."""
    output = "".join(BUILD_OUTPUT)
    assert "absent from the `packages` configuration" not in output, output
    assert "Warning" not in output, output
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in ("compare", "frontier", "speed"):
        assert f"fedcodec/tools/schemas/{schema}.schema.json" in names


def test_the_readme_names_the_namespace_package_error(tmp_path: Path) -> None:
    """A folder named ``fedcodec`` in the current directory (a clone, seen from the folder
    above it) shadows the package; the README's troubleshooting quotes the error."""
    (tmp_path / "fedcodec").mkdir()
    result = subprocess.run(
        [sys.executable, "-c", "import fedcodec; fedcodec.get_codec"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    error = result.stderr.strip().splitlines()[-1]
    assert error == "AttributeError: module 'fedcodec' has no attribute 'get_codec'"
    readme = (ROOT / "README.md").read_text()
    assert "`module 'fedcodec' has no attribute 'get_codec'`" in readme


def test_wheel_holds_the_kernels(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ["__init__", "ans", "bits", "hadamard", "quant", "rng", "_config"]:
        assert f"fedcodec/kernels/{module}.py" in names
    assert "fedcodec/py.typed" in names
    assert "fedcodec/coders/ans.py" in names
    assert "fedcodec/fl/runner.py" in names
    assert not any(n.startswith("kernels/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "rdq = fedcodec.rdq:RDQ" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "fedcodec = fedcodec.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_normal_install_imports_kernels(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "import fedcodec, fedcodec.kernels as k, numpy as np;"
        f"assert fedcodec.__file__.startswith({str(target)!r});"
        "x = np.linspace(-1, 1, 1000, dtype=np.float32);"
        "p = fedcodec.RDQ(bits_per_param=2.0).encode(x);"
        "print(fedcodec.decode(p).shape, k.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
    )
    assert result.stdout.startswith("(1000,)")
    assert str(target) in result.stdout


def test_entry_points_follow_the_one_list_of_codecs() -> None:
    """pyproject's two entry-point tables, the registry and fedcodec.numcodecs agree with
    fedcodec.codec.BUILTIN_CODECS."""
    import importlib

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from fedcodec.codec import BUILTIN_CODECS

    with open(Path(__file__).parents[1] / "pyproject.toml", "rb") as f:
        entry_points = tomllib.load(f)["project"]["entry-points"]
    assert entry_points["fedcodec.codecs"] == BUILTIN_CODECS
    wrappers = entry_points["numcodecs.codecs"]
    assert set(wrappers) == {f"fedcodec.{cid}" for cid in BUILTIN_CODECS}
    numcodecs_module = pytest.importorskip("fedcodec.numcodecs")
    for cid, target in BUILTIN_CODECS.items():
        module, name = target.split(":")
        cls = getattr(importlib.import_module(module), name)
        assert fedcodec.registered_codecs()[cid] is cls and cls.codec_id == cid
        wrapper_module, wrapper_name = wrappers[f"fedcodec.{cid}"].split(":")
        assert wrapper_module == "fedcodec.numcodecs"
        wrapper = getattr(numcodecs_module, wrapper_name)
        assert wrapper.fedcodec_id == cid and wrapper.codec_id == f"fedcodec.{cid}"
