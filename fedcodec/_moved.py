"""Old module names of moved modules: ``import fedcodec.frontier`` gives
:mod:`fedcodec.tools.frontier` (the same module object), and ``python -m fedcodec.demo``
runs :mod:`fedcodec.tools.demo` (CHANGELOG.md lists the moves)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

#: old name under ``fedcodec.`` -> the module's name now
MOVED = {
    name: f"fedcodec.tools.{name}"
    for name in ("frontier", "compare", "speed", "plots", "rd_bound", "demo", "sample_updates")
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The target module ran when it was imported; the import system just gave it the
        old name's spec: its own goes back (its relative imports resolve from it)."""
        module.__spec__ = self._spec

    def get_code(self, fullname: str) -> Any:  # for ``python -m fedcodec.<old name>``
        spec = importlib.util.find_spec(self.target)
        assert spec is not None and spec.loader is not None
        return spec.loader.get_code(self.target)  # type: ignore[attr-defined]


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.startswith("fedcodec.") and fullname[9:] in MOVED:
            target = MOVED[fullname[9:]]
            found = importlib.util.find_spec(target)
            origin = found.origin if found is not None else None
            return importlib.util.spec_from_loader(fullname, _Alias(target), origin=origin)
        return None


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
