"""The codec interface: registry, inputs, layouts, errors, measure."""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
import pytest

import fedcodec
from fedcodec import DecodeError, UnknownCodecError


def all_codec_classes() -> set[type]:
    for info in pkgutil.walk_packages(fedcodec.__path__, "fedcodec."):
        importlib.import_module(info.name)
    found: set[type] = set()
    stack = [fedcodec.Codec]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            found.add(sub)
            stack.append(sub)
    return {c for c in found if not getattr(c, "__abstractmethods__", None)}


def test_every_codec_is_registered() -> None:
    registered = set(fedcodec.registered_codecs().values())
    missing = all_codec_classes() - registered
    assert not missing, f"codecs not registered: {missing}"
    assert "rdq" in fedcodec.available_codecs()
    assert fedcodec.available_codecs()["rdq"]


def test_entry_point_is_declared() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="fedcodec.codecs")}
    assert "rdq" in names


def test_unknown_codec_names_the_available_ones() -> None:
    with pytest.raises(UnknownCodecError, match="rdq"):
        fedcodec.get_codec({"id": "nope"})
    assert issubclass(UnknownCodecError, ValueError)
    with pytest.raises(ValueError, match='"id"'):
        fedcodec.get_codec({"bits_per_param": 1})


def test_register_custom_codec() -> None:
    class Twice(fedcodec.RDQ):
        codec_id = "rdq-test-twice"

    fedcodec.register_codec(Twice)
    codec = fedcodec.get_codec({"id": "rdq-test-twice", "bits_per_param": 2.0})
    assert isinstance(codec, Twice)
    x = np.ones(10, np.float32)
    assert fedcodec.decode(codec.encode(x)).shape == (10,)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dtype_and_shape_are_kept(dtype: type) -> None:
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(dtype)
    codec = fedcodec.RDQ(bits_per_param=4.0)
    out = codec.decode(codec.encode(x))
    assert out.shape == (3, 4, 5) and out.dtype == dtype


def test_bad_inputs_get_clear_errors() -> None:
    codec = fedcodec.RDQ()
    with pytest.raises(ValueError, match="NaN or Inf"):
        codec.encode(np.array([1.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        codec.encode(np.array([np.inf], np.float64))
    with pytest.raises(TypeError, match="astype"):
        codec.encode(np.arange(4))
    with pytest.raises(TypeError, match="numpy array"):
        codec.encode("weights")
    with pytest.raises(ValueError, match="exactly one"):
        fedcodec.RDQ(bits_per_param=1.0, nmse=0.1)
    with pytest.raises(ValueError, match="rounding"):
        fedcodec.RDQ(rounding="floor")
    with pytest.raises(ValueError, match="unbiased"):
        fedcodec.RDQ(rounding="dither", levels="rdo")
    with pytest.raises(ValueError, match="positive"):
        fedcodec.RDQ(bits_per_param=-1.0)


def test_decode_with_wrong_codec_or_out() -> None:
    class Other(fedcodec.RDQ):
        codec_id = "rdq-test-other"

    fedcodec.register_codec(Other)
    payload = fedcodec.RDQ().encode(np.ones(8, np.float32))
    with pytest.raises(DecodeError, match="written by codec"):
        Other().decode(payload)
    with pytest.raises(ValueError, match="shape"):
        fedcodec.RDQ().decode(payload, out=np.empty(7, np.float32))
    out64 = np.empty(8, np.float64)
    assert fedcodec.RDQ().decode(payload, out=out64) is out64


def test_flatten_unflatten_round_trip() -> None:
    update = {"a": np.ones((2, 3), np.float32), "b": np.arange(4, dtype=np.float64)}
    vec, layout = fedcodec.flatten(update)
    assert vec.dtype == np.float32 and vec.size == 10 == layout.size
    back = fedcodec.unflatten(vec, layout)
    np.testing.assert_array_equal(back["b"], update["b"])
    assert back["b"].dtype == np.float64
    assert layout.fingerprint != 0
    _, other = fedcodec.flatten({"a": np.ones((3, 2), np.float32), "b": np.arange(4.0)})
    assert other.fingerprint != layout.fingerprint
    with pytest.raises(ValueError, match="elements"):
        fedcodec.unflatten(vec[:-1], layout)


def test_flatten_on_threads_copies_the_same_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of 7 elements on 3 threads: the tensors land where one thread puts them,
    with the caller's handling of a float64 beyond float32's range."""
    from fedcodec import layout as layout_module

    rng = np.random.default_rng(4)
    update = {
        "w": rng.standard_normal((5, 9)),
        "h": rng.standard_normal(20).astype(np.float16),
        "v": rng.standard_normal((3, 3, 2)).astype(np.float32),
        "big": np.array([1e300, -2.0]),
    }
    with np.errstate(over="ignore"):
        one, _ = fedcodec.flatten(update)
        monkeypatch.setattr(layout_module, "_COPY_PIECE", 7)
        three, layout = fedcodec.flatten(update, threads=3)
    np.testing.assert_array_equal(three, one)
    assert three[-2] == np.inf and layout.size == 45 + 20 + 18 + 2
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        fedcodec.flatten(update, threads=3)


def test_measure_reports_real_bits() -> None:
    x = np.random.default_rng(2).laplace(size=5000).astype(np.float32)
    codec = fedcodec.RDQ(nmse=0.1)
    m = fedcodec.measure(codec, x, seed=1)
    payload = codec.encode(x, seed=1)
    assert m["bits"] == 8 * len(payload)
    assert m["bits_per_param"] == m["bits"] / x.size
    x_hat = codec.decode(payload)
    sse = float(np.sum((x.astype(np.float64) - x_hat) ** 2))
    assert m["nmse"] == pytest.approx(sse / float(np.sum(x.astype(np.float64) ** 2)))
    assert m["mse"] == pytest.approx(sse / x.size)
    assert m["encode_s"] > 0 and m["decode_s"] > 0


def test_measure_all_zero_update() -> None:
    m = fedcodec.measure(fedcodec.RDQ(), np.zeros(100, np.float32))
    assert m["nmse"] == 0.0 and m["mse"] == 0.0


def test_moved_modules_keep_their_old_names() -> None:
    """The tooling lives in fedcodec.tools; the old names import the same modules."""
    import importlib
    import subprocess
    import sys

    from fedcodec._moved import MOVED

    for old, new in MOVED.items():
        assert importlib.import_module(f"fedcodec.{old}") is importlib.import_module(new)
    from fedcodec.frontier import frontier  # the names the docs used

    from fedcodec.tools.frontier import frontier as same

    assert frontier is same
    out = subprocess.run([sys.executable, "-m", "fedcodec.demo", "--help"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and "--quick" in out.stdout
    import fedcodec

    top = {p.stem for p in __import__("pathlib").Path(fedcodec.__file__).parent.glob("*.py")}
    assert not top & set(MOVED)  # the top level shows the codecs and their core


# -- configs that users write (issue 24, item 5) ---------------------------------------------
def _numeric_options(codec_id: str) -> list[str]:
    import inspect

    cls = type(fedcodec.get_codec({"id": codec_id}))
    params = inspect.signature(cls.__init__).parameters
    return [
        n for n, p in params.items() if "float" in str(p.annotation) or "int" in str(p.annotation)
    ]


@pytest.mark.parametrize("codec_id", sorted(fedcodec.available_codecs()))
def test_every_numeric_option_refuses_a_quoted_number(codec_id: str) -> None:
    for option in _numeric_options(codec_id):
        with pytest.raises(ValueError, match=rf"option '{option}' must be .*without quotes"):
            fedcodec.get_codec({"id": codec_id, option: "1"})
        with pytest.raises(ValueError, match=rf"option '{option}' must be"):
            fedcodec.get_codec({"id": codec_id, option: True})


@pytest.mark.parametrize("codec_id", sorted(fedcodec.available_codecs()))
def test_an_unknown_option_is_a_value_error_naming_the_options(codec_id: str) -> None:
    with pytest.raises(ValueError, match=rf"codec '{codec_id}' has no option 'colour'"):
        fedcodec.get_codec({"id": codec_id, "colour": 1})


def test_a_misspelt_option_names_the_closest() -> None:
    with pytest.raises(ValueError, match="did you mean 'bits_per_param'"):
        fedcodec.get_codec({"id": "rdq", "bits_per_parm": 1})
    with pytest.raises(ValueError, match="did you mean 'num_levels'"):
        fedcodec.get_codec({"id": "qsgd", "num_level": 4})
    # numbers as JSON writes them are fine: an integral float for an int, an int for a float
    assert fedcodec.get_codec({"id": "qsgd", "num_levels": 4.0}).num_levels == 4
    assert fedcodec.get_codec({"id": "rdq", "bits_per_param": 2}).bits_per_param == 2.0
