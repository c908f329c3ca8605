"""Every page that shows code says what to install for it (issue 26: "every snippet runs as
written", for a reader, not only for the test suite).

The suite installs the ``test`` extra, which holds every package any page imports, so the
snippets run here whatever a page says. A reader installs what the page tells them: a page's
runnable Python blocks may import only the standard library, this project's packages, and the
packages (with their dependencies) of the ``pip install`` commands on that page. The ``test``
extra does not count (it is the maintainers' set: ~190 packages). Before, the README's LangChain
snippet imported ``langchain_openai``, which no extra but ``test`` installs: after the README's
``pip install -e ".[demo]"`` it failed with ``ModuleNotFoundError``.
"""
from __future__ import annotations

import ast
import functools
import re
import sys
from importlib import metadata

import pytest
from _snippets import PAGES, PYTHON, ROOT, blocks

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
requirements = pytest.importorskip("packaging.requirements")

OWN = {"cachesaver", "cachesaver_litellm", "cachesaver_langchain", "cachesaver_demo", "cachesaver_inspect",
       "cachesaver_lmeval"}
PROJECT = "cachesaver-integrations"
#: ``pip install -e ".[a,b]" other-package`` or ``pip install "cachesaver-integrations[a]"``.
_PIP = re.compile(r"pip install (?P<args>[^`\n]+)")
_FENCED = re.compile(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", re.S | re.M)
_INLINE = re.compile(r"`([^`]+)`")
_EXTRAS = re.compile(r"""^["']?(?:\.|cachesaver-integrations)\[(?P<extras>[\w,-]+)\]["']?$""")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _commands(text: str) -> str:
    """The page's command lines: the lines of its code blocks, and its inline code spans (which
    may wrap over a line break in the source), one per line."""
    fenced = _FENCED.findall(text)
    prose = _FENCED.sub("", text)
    spans = [" ".join(span.split()) for span in _INLINE.findall(prose)]
    return "\n".join(fenced + spans)


def named_distributions(text: str) -> set[str]:
    """What the page's ``pip install`` commands install directly (extras expanded, ``test`` left out;
    with the project's own dependencies, which every install of it brings)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names = {_norm(requirements.Requirement(spec).name) for spec in project["dependencies"]}
    pending: list[str] = []
    for found in _PIP.finditer(_commands(text)):
        for arg in found.group("args").split():
            if arg.startswith("-"):
                continue
            m = _EXTRAS.match(arg)
            if m:
                pending += [e for e in m.group("extras").split(",") if e != "test"]
            else:
                names.add(_norm(arg.strip("\"'")))
    seen: set[str] = set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec in extras[extra]:
            req = requirements.Requirement(spec)
            if _norm(req.name) == PROJECT:
                pending += list(req.extras)
            else:
                names.add(_norm(req.name))
    return names


@functools.cache
def _installs(name: str) -> tuple[str, ...]:
    """What the installed distribution ``name`` requires (extras left out). Cached: every page's
    closure walks mostly the same ~100 distributions, and reading and parsing their metadata
    again for each page took seconds."""
    try:
        reqs = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return ()
    out = []
    for spec in reqs:
        req = requirements.Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(_norm(req.name))
    return tuple(out)


def with_dependencies(names: set[str]) -> set[str]:
    """``names`` and what they install (their installed metadata's requirements, extras left out)."""
    closure, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure.add(name)
        pending.extend(_installs(name))
    return closure


def imported_modules(code: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def test_every_runnable_python_block_imports_only_what_its_page_installs():
    providers = metadata.packages_distributions()
    missing = []
    for page in PAGES:
        text = page.read_text()
        installed = with_dependencies(named_distributions(text))
        for block in blocks(page):
            if block.lang not in PYTHON or block.marker == "not-run":
                continue
            for module in sorted(imported_modules(block.code) - OWN - set(sys.stdlib_module_names)):
                dists = {_norm(d) for d in providers.get(module, [])}
                assert dists, f"{block.where}: no installed distribution provides {module}"
                if not dists & installed:
                    missing.append(f"{block.where}: imports {module} ({', '.join(sorted(dists))}), which no "
                                   "pip install on the page installs")
    assert missing == [], "\n".join(missing)


def test_the_parser_reads_the_install_commands_as_a_reader_would():
    assert named_distributions('`pip install -e ".[demo]"`') >= {"litellm", "rich", "matplotlib"}
    assert "dspy" in named_distributions('`pip install -e ".[litellm,dspy]" langchain-openai`')
    assert "langchain-openai" in named_distributions('`pip install -e ".[litellm,dspy]" langchain-openai`')
    assert "fastapi" in named_distributions('`pip install "cachesaver-integrations[bench]"`')  # via [proxy]
    assert "litellm" not in named_distributions('pip install -e ".[demo]" in plain text')  # not a command
    assert "dspy" in named_distributions('after `pip install -e\n".[litellm,dspy]"` (wrapped)')
    assert named_distributions('```bash\npip install -e ".[demo]"\ncachesaver demo  # `x`\n```') >= {"litellm"}
    assert named_distributions('`pip install -e ".[test]"`') == named_distributions("")  # maintainers' set: not counted
    assert "diskcache" in named_distributions("")  # the project's own dependencies
