"""The engine imports no adapter or framework, not even lazily; `cachesaver demo` still works,
through the `cachesaver.commands` entry point that the demo package declares."""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

from cachesaver.cli import build_parser, main

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENGINE = ROOT / "core" / "cachesaver"
FORBIDDEN = {"litellm", "langchain", "langchain_core", "langchain_openai", "langgraph", "dspy",
             "cachesaver_litellm", "cachesaver_langchain", "cachesaver_demo"}


def imported_names(path: pathlib.Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at any depth (function bodies too), by statement or by name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_the_engine_imports_no_adapter_or_framework_anywhere():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in ENGINE.rglob("*.py")
                 for line, name in imported_names(path) if name.split(".")[0] in FORBIDDEN]
    assert offenders == []
    assert not (ENGINE / "demo").exists()


def test_building_the_cli_loads_no_framework(cli_env):
    code = ("import sys; from cachesaver.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % (FORBIDDEN - {"cachesaver_demo"}))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_demo_command_comes_from_the_entry_point(declared_commands, capsys):
    parser = build_parser()
    args = parser.parse_args(["demo", "--puzzles", "2", "--fresh"])
    assert args.func.__module__ == "cachesaver_demo.command"
    assert (args.puzzles, args.fresh, args.cache) == (2, True, "./.cachesaver-demo")


def test_help_lists_the_demo_through_the_entry_point(cli_env):
    out = subprocess.run([sys.executable, "-m", "cachesaver", "--help"], capture_output=True, text=True,
                         env=cli_env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "run the offline demo" in out.stdout


def test_without_the_entry_point_demo_says_how_to_get_it(metadata_with, capsys):
    # An installed copy whose metadata does not declare the command (an install that predates it).
    metadata_with("[console_scripts]\ncachesaver = cachesaver.cli:main\n")
    assert main(["demo", "--fresh"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cachesaver demo: no installed package provides it") and "pip install -e" in err


def test_a_broken_plugin_does_not_break_other_commands(metadata_with, tmp_path, capsys):
    metadata_with("[cachesaver.commands]\ndemo = no_such_module_xyz:register\n")
    assert main(["demo"]) == 2
    assert "could not load 'no_such_module_xyz:register'" in capsys.readouterr().err
    assert main(["clear", "--cache", str(tmp_path / "none"), "--yes"]) == 2  # other commands still work
    assert "nothing was created" in capsys.readouterr().err


def test_the_demo_runs_in_one_command_in_a_fresh_process(cli_env, tmp_path):
    chart = tmp_path / "chart.png"
    out = subprocess.run(
        [sys.executable, "-m", "cachesaver", "demo", "--cache", str(tmp_path / "c"), "--puzzles", "1",
         "--chart", str(chart), "--quiet"],
        capture_output=True, text=True, env=cli_env, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "results identical to the first run: True" in out.stdout
    assert chart.exists() and chart.stat().st_size > 1000
