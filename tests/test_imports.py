"""No import circles in ``fedcodec/`` and ``kernels/`` (issue 27): every import counts, at the
top of a module, inside a function or under ``TYPE_CHECKING``.

The graph is read from the source (``ast``): an edge for each ``import a.b`` or ``from a
import b`` naming a module of the package (``from pkg import sub`` is an edge to the
submodule ``pkg.sub``; ``from pkg import name`` to ``pkg`` itself). ``kernels/`` is the
package's ``fedcodec.kernels``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_names(roots: dict[str, Path]) -> dict[str, Path]:
    """Dotted name -> file, for every ``.py`` under each root (``{"fedcodec": dir}``)."""
    names = {}
    for prefix, folder in roots.items():
        for path in folder.rglob("*.py"):
            parts = [*prefix.split("."), *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names[".".join(parts)] = path
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = {f"{target}.{a.name}" for a in node.names} & modules.keys()
                deps |= subs
                if len(subs) < len(node.names) and target in modules:
                    deps.add(target)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle() -> None:
    modules = module_names({"fedcodec": ROOT / "fedcodec", "fedcodec.kernels": ROOT / "kernels"})
    assert "fedcodec.rate_control" in modules and "fedcodec.kernels.sctx" in modules
    graph = import_graph(modules)
    assert "fedcodec.rate_control" in graph["fedcodec.rdq"]  # edges are seen at all
    assert cycles(graph) == []


def test_a_cycle_through_a_function_or_type_checking_import_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import c\n")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import thing\n"
    )
    (pkg / "d.py").write_text("import pkg.a\n")
    graph = import_graph(module_names({"pkg": pkg}))
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
