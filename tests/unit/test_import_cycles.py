"""Every module of mlops_provision imports, and their runtime imports form no cycle: the imports a
module runs when it is imported (at module level and in class bodies, also inside ``try``/``if``),
``if TYPE_CHECKING:`` blocks and imports inside functions (they run when called) left out."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from importlib.util import resolve_name
from pathlib import Path

import pytest

import mlops_provision

PACKAGE = mlops_provision.__name__


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package, imported: name -> (source file, is a package)."""
    found = {PACKAGE: (Path(mlops_provision.__file__), True)}

    def failed(name: str) -> None:
        raise ImportError(f"cannot import {name}")

    for info in pkgutil.walk_packages(mlops_provision.__path__, f"{PACKAGE}.", onerror=failed):
        module = importlib.import_module(info.name)
        found[info.name] = (Path(module.__file__), info.ispkg)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


class _RuntimeImports(ast.NodeVisitor):
    """The package's modules a module imports when it is imported."""

    def __init__(self, name: str, is_pkg: bool, known: set[str]):
        self.package = name if is_pkg else name.rpartition(".")[0]
        self.known = known
        self.found: set[str] = set()

    def _add(self, name: str) -> None:
        while name and name not in self.known:  # a name inside a module: the module
            name = name.rpartition(".")[0]
        if name:
            self.found.add(name)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        """Runs when called, not when the module is imported."""

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = resolve_name("." * node.level + (node.module or ""), self.package) if node.level \
            else node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(sub if sub in self.known else base)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {}
    for name, (path, is_pkg) in modules.items():
        visitor = _RuntimeImports(name, is_pkg, known)
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        graph[name] = visitor.found - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (depth-first search)."""
    state: dict[str, str] = {}  # "open" on the current path, "done" when finished
    path: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = "open"
        path.append(name)
        for target in sorted(graph.get(name, ())):
            if state.get(target) == "open":
                found.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return found


# The checks' marks (compliance) are registered by their own conftest, not in this session.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")
def test_every_module_imports_and_no_import_cycle() -> None:
    graph = _graph()
    assert len(graph) > 20 and "mlops_provision.site.load" in graph
    assert "mlops_provision.site.check" in graph["mlops_provision.site.load"]
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_a_cycle_is_found_and_printed() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
