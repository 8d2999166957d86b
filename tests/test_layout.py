"""The layout the README promises, read from the code's own imports (every import, lazy ones in
functions included): no module imports another in a circle, and nothing the platform is built
from imports the platform or a front end above it.

One exception, the seam's factory: a package's ``__init__`` may import one of its own modules
inside a function (``open_store`` choosing the local or the S3 store, which import the seam's
names), as Python runs it only after both are loaded."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRONT_ENDS = (
    "services.cli",
    "services.web",
    "services.tasks",
    "services.drop_folder",
    "services.analysis",
    "services.demo",
)


def _modules() -> dict[str, Path]:
    found = {}
    for base in ("services", "schemas"):
        for path in (ROOT / base).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project's modules ``path`` imports: ``from a.b import c`` is a.b.c when c is a
    module, else a.b; a relative import is resolved against the package."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    factory = {
        id(inner)
        for node in ast.walk(tree)
        if is_package and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(node)
    }
    targets: set[str] = set()
    for node in ast.walk(tree):
        own = isinstance(node, ast.ImportFrom) and (
            (node.module or "").startswith(f"{name}.") or node.level > 0
        )
        if id(node) in factory and own:
            continue  # the seam's factory importing one of its own modules
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                targets.add(child if child in modules else base)
    return {t for t in targets if t in modules and t != name}


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [*graph[start]]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(graph[current])
    return seen


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports (its modules in order), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_another_in_a_circle() -> None:
    circle = _circle(_graph())
    assert circle is None, "an import circle: " + " -> ".join(circle or [])


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_nothing_below_the_platform_imports_it_or_a_front_end() -> None:
    """Every module of a package the platform is built from (the log, state, lock, ingest,
    adjudicator, bus, store, ...) reaches neither the platform nor a front end through its
    imports, directly or not: a command-line adapter kept inside such a package would."""
    graph = _graph()
    below = {_package(m) for m in _reachable(graph, "services.platform")}
    upward = {
        module: sorted(
            t
            for t in _reachable(graph, module)
            if t == "services.platform" or t.startswith(FRONT_ENDS)
        )
        for module in graph
        if _package(module) in below
    }
    upward = {module: targets[:3] for module, targets in upward.items() if targets}
    assert not upward, f"modules the platform is built from reach what stands above it: {upward}"


def test_the_reading_sees_the_layers() -> None:
    """The graph is read, not empty: the platform stands on the log, the state and the lock,
    and the command line on the platform."""
    graph = _graph()
    below = _reachable(graph, "services.platform")
    assert {"services.log.eventlog", "services.state.maintained", "services.lock.lock"} <= below
    assert "services.platform" in _reachable(graph, "services.cli.main")
