"""The codec registry: which class each codec id names (built-ins, ``register_codec``,
and other packages' ``fedcodec.codecs`` entry points), and the check of a config's options
against a class's ``__init__``.

It imports no codec (each codec module registers itself, and :mod:`fedcodec.codec` builds
codecs from here), so that nothing here depends on the codec interface.
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

ENTRY_POINT_GROUP = "fedcodec.codecs"
#: The built-in codecs: id -> "module:Class". The one list: pyproject.toml's entry points
#: (``fedcodec.codecs`` and numcodecs' ``fedcodec.<id>``) and ``fedcodec.numcodecs`` follow
#: it, and tests/test_packaging.py checks that they do.
BUILTIN_CODECS: dict[str, str] = {
    "rdq": "fedcodec.rdq:RDQ",
    "identity": "fedcodec.identity:Identity",
    "fp16": "fedcodec.fp16:FP16",
    "bf16": "fedcodec.bf16:BF16",
    "int8": "fedcodec.int8:Int8",
    "topk": "fedcodec.topk:TopK",
    "qsgd": "fedcodec.qsgd:QSGD",
    "drive": "fedcodec.drive:Drive",
    "eden": "fedcodec.eden:Eden",
    "threelc": "fedcodec.threelc:ThreeLC",
}

_REGISTRY: dict[str, type[Any]] = {}
_entry_points_loaded = False


def register_codec(cls: type[T], codec_id: str | None = None) -> type[T]:
    """Register a codec class under ``codec_id`` (default ``cls.codec_id``); usable as decorator."""
    cid = codec_id or getattr(cls, "codec_id", None)
    if not cid:
        raise ValueError(f"{cls.__name__} has no codec_id")
    _REGISTRY[cid] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            register_codec(ep.load(), ep.name)


def registered_codecs() -> dict[str, type[Any]]:
    """Every registered codec id and class (entry points included)."""
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def available_codecs() -> dict[str, str]:
    """Every registered codec id with its one-line description."""
    return {cid: cls.description for cid, cls in registered_codecs().items()}


def _accepts(kind: str, value: Any) -> bool:
    """Whether a config value fits one type name of an ``__init__`` annotation."""
    if kind == "None":
        return value is None
    if kind == "bool":
        return isinstance(value, bool | np.bool_)
    if isinstance(value, bool | np.bool_):
        return False  # True is an int to Python, never a number of a config
    if kind == "float":
        return isinstance(value, int | float | np.integer | np.floating)
    if kind == "int":
        return isinstance(value, int | np.integer) or (
            isinstance(value, float | np.floating) and float(value).is_integer()
        )
    if kind == "str":
        return isinstance(value, str)
    return True  # a type this check does not know: the codec's own checks decide


def check_config(cls: type[Any], kwargs: Mapping[str, Any]) -> None:
    """Check a config's options against ``cls.__init__``'s keyword parameters and their
    annotated types (``float``, ``int``, ``str``, ``bool``, ``... | None``): an unknown
    option names the closest known one, a quoted number is refused with its fix."""
    params = {
        name: p
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    cid = getattr(cls, "codec_id", cls.__name__)
    for key, value in kwargs.items():
        if key not in params:
            close = difflib.get_close_matches(str(key), list(params), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(params) or "none"
            raise ValueError(f"codec {cid!r} has no option {key!r}{hint} (options: {known})")
        annotation = params[key].annotation
        if not isinstance(annotation, str):
            annotation = getattr(annotation, "__name__", str(annotation))
        kinds = [k.strip() for k in annotation.split("|")]
        if not any(_accepts(k, value) for k in kinds):
            words = {
                "None": "null",
                "float": "a number",
                "int": "an integer",
                "bool": "true or false",
            }
            wanted = " or ".join(words.get(k, f"a {k}") for k in kinds)
            fix = ""
            if isinstance(value, str):
                try:
                    parsed = json.loads(value)
                except ValueError:
                    parsed = None
                if isinstance(parsed, int | float):  # a quoted number (or true/false)
                    fix = f"; write {json.dumps(parsed)} without quotes"
            raise ValueError(
                f"codec {cid!r}: option {key!r} must be {wanted}, got {value!r} "
                f"({type(value).__name__}){fix}"
            )


def lookup(codec_id: str) -> type[Any] | None:
    """The class registered under ``codec_id`` (entry points loaded if needed), or None."""
    cls = _REGISTRY.get(codec_id)
    if cls is None:
        _load_entry_points()
        cls = _REGISTRY.get(codec_id)
    return cls
