"""The habits that keep the code honest, run with the suite: ruff (errors, likely bugs, import
order) on the packages, mypy on the engine, and no import cycle inside the engine (lazy imports
count: before, ``stores`` opened bundle files and ``bundle`` wrote from stores).

Their settings live in ``pyproject.toml`` ([tool.ruff], [tool.mypy]); run them by hand with
``ruff check core cachesaver_litellm cachesaver_langchain cachesaver_demo`` and ``mypy``.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["core/cachesaver", "cachesaver_litellm", "cachesaver_langchain", "cachesaver_demo", "cachesaver_inspect",
            "cachesaver_lmeval"]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    # stdin closed: under xdist a worker's stdin is its channel to the controller.
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    result = _run([ruff, "check", "--no-cache", *PACKAGES])
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean_on_the_engine(tmp_path):
    pytest.importorskip("mypy", reason="mypy is a test dependency: pip install -e '.[test]'")
    result = _run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_package_ships_a_py_typed_marker():
    for package in ("core/cachesaver", "cachesaver_litellm", "cachesaver_langchain", "cachesaver_inspect",
                    "cachesaver_lmeval"):
        assert (ROOT / package / "py.typed").is_file(), package


def _imports_outside_type_checking(tree: ast.AST) -> list[ast.stmt]:
    """Every import statement of a module, lazy ones inside functions included (they are
    dependencies too), except those under ``if TYPE_CHECKING:`` (never executed)."""
    found: list[ast.stmt] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            walk(child)

    walk(tree)
    return found


def _engine_imports() -> dict[str, set[str]]:
    """Engine module -> the engine modules importing it executes: what it imports (relative
    imports resolved, ``from pkg import name`` counting ``pkg.name`` when that is a module) and,
    as Python runs them first, their parent packages."""
    base = ROOT / "core"
    graph: dict[str, set[str]] = {}
    for path in (base / "cachesaver").rglob("*.py"):
        parts = list(path.relative_to(base).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        package = parts if is_package else parts[:-1]
        found: set[str] = set()
        for node in _imports_outside_type_checking(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    target = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
                    module = ".".join(target)
                else:
                    module = node.module or ""
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
            else:
                found.update(alias.name for alias in node.names)
        graph[".".join(parts)] = {m for m in found if m.startswith("cachesaver")}
    modules = set(graph)
    edges: dict[str, set[str]] = {}
    for name, deps in graph.items():
        out: set[str] = set()
        for dep in deps:
            pieces = dep.split(".")
            out.update(".".join(pieces[:i]) for i in range(1, len(pieces) + 1))
        edges[name] = {m for m in out if m in modules and m != name and not name.startswith(m + ".")}
    return edges


def test_the_engine_has_no_import_cycle():
    graph = _engine_imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
