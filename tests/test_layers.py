"""Imports point one way: cli → session, repl, oneshot, server → backends, models → values.

Every import of every qwencli module is read from its source (also those inside functions and
under TYPE_CHECKING), so a lazy import cannot hide a dependency that points the wrong way. A new
module needs a place in LAYERS; this test names any that has none.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import qwencli

PACKAGE = Path(qwencli.__file__).parent

#: Top first. A module may import modules of its own layer and of the layers below it. A name
#: covers the module and everything under it; the longest name that matches places a module.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("qwencli.cli", "qwencli.__main__")),
    ("session/repl/oneshot/server", ("qwencli.session", "qwencli.repl", "qwencli.oneshot", "qwencli.server",
                                     "qwencli.console", "qwencli.diagnose", "qwencli.evaluate")),
    ("backends/models", ("qwencli.backends", "qwencli.models")),
    ("values", ("qwencli", "qwencli.chat", "qwencli.errors", "qwencli.settings", "qwencli.sampling",
                "qwencli.templates", "qwencli.thinking", "qwencli.stops", "qwencli.hardware", "qwencli.resolved",
                "qwencli.stderr", "qwencli.sizes", "qwencli.formats")),
)
#: Packages of one layer that must not import each other: what crosses between them is a value.
APART = (("qwencli.backends", "qwencli.models"),)
#: Packages whose modules must not import each other in a circle.
ACYCLIC = ("qwencli.models",)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("qwencli", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _known(name: str) -> str:
    """The qwencli module `name` is, or lives in (`qwencli.models.store.find` → `qwencli.models.store`)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports(module: str) -> list[tuple[str, int]]:
    """(qwencli module imported, line) for every import in `module`'s source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(_known(a.name), node.lineno) for a in node.names if a.name.split(".")[0] == "qwencli"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.split(".")[0] != "qwencli":
                continue
            # `from . import hub` imports the module qwencli.models.hub; `from .hub import x`, qwencli.models.hub
            found += [(_known(f"{base}.{a.name}"), node.lineno) for a in node.names]
    return list(dict.fromkeys(found))


def _within(module: str, name: str) -> bool:
    return module == name or (name != "qwencli" and module.startswith(name + "."))


def layer(module: str) -> int | None:
    """The index in LAYERS (0 is the top) of the longest name that covers `module`."""
    best: tuple[int, int] | None = None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if _within(module, name) and (best is None or len(name) > best[1]):
                best = (index, len(name))
    return best[0] if best else None


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if layer(m) is None]
    assert not unplaced, f"give these modules a layer in LAYERS ({__file__}): {', '.join(unplaced)}"


def test_imports_point_down_the_layers():
    wrong = []
    for module in MODULES:
        here = layer(module)
        for target, line in imports(module):
            there = layer(target)
            if here is None or there is None or target == module:
                continue
            if there < here:
                wrong.append(f"{module} imports {target} (line {line}): {LAYERS[here][0]} must not import "
                             f"{LAYERS[there][0]}")
            for a, b in APART:
                for this, other in ((a, b), (b, a)):
                    if _within(module, this) and _within(target, other):
                        wrong.append(f"{module} imports {target} (line {line}): {this} must not import {other}")
    assert not wrong, "imports against the direction cli → session/repl/oneshot/server → backends/models → " \
                      "values:\n  " + "\n  ".join(wrong)


def _groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import each other in a circle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                groups.append(set(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _path_around(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle from the group's first module back to itself, for the message."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    return sorted(group)


@pytest.mark.parametrize("package", ACYCLIC)
def test_no_import_cycle_within(package):
    inside = [m for m in MODULES if _within(m, package) and m != package]
    graph = {m: {t for t, _ in imports(m) if t in inside} for m in inside}
    circles = [f"{' → '.join(_path_around(graph, g))} (the circle takes in {', '.join(sorted(g))})"
               for g in _groups(graph)]
    assert not circles, f"import cycles in {package}:\n  " + "\n  ".join(circles)


def test_the_walk_sees_lazy_and_relative_imports():
    """The walk itself: a function-level relative import, and `from . import name` of a module."""
    assert ("qwencli.models.hub", 0) in [(t, 0) for t, _ in imports("qwencli.models.resolve")]
    assert any(t == "qwencli.formats.gguf" for t, _ in imports("qwencli.models.describe"))  # inside a function
    assert layer("qwencli.backends.remote") == 2 and layer("qwencli") == 3 and layer("qwencli.cli.run") == 0
    graph = {"a": {"b", "d"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"a"}}
    assert _groups(graph) == [{"a", "b", "c", "d"}] and _path_around(graph, {"a", "b", "c", "d"}) == ["a", "d", "a"]


def test_the_readme_layout_names_every_module():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## Benchmarks")]
    package = Path(__file__).resolve().parent.parent / "qwencli"
    missing = [str(p.relative_to(package)) for p in sorted(package.rglob("*.py"))
               if p.name != "__init__.py" and f"`{p.name}`" not in layout and f"`{p.relative_to(package)}`" not in layout
               and f"`qwencli/{p.relative_to(package)}`" not in layout]
    assert not missing, f"README's Layout section does not name: {', '.join(missing)}"
