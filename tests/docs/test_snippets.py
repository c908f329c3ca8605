"""Every code block of README.md and docs/ runs as written (issue 26, item 2).

Each page runs in a scratch directory against the local fake OpenAI-compatible server that the
page itself starts (`cachesaver serve-fake`, as the docs show), with the environment variables
the page exports and nothing else of ours: OPENAI_* variables of the machine are removed first.
Blocks that cannot run here carry a ``<!-- not-run: reason -->`` or ``<!-- run-by: test -->``
marker; the marker tests check that every code block is run or marked, and that run-by blocks
really are run by the test they name. See ``_snippets.py`` for how a page is run.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from _snippets import PAGES, PYTHON, ROOT, SHELL, PageRun, Zygote, blocks

# One worker runs every page: its Python processes fork from one pre-loaded interpreter (the
# imports of litellm, LangChain, DSPy and the agent SDKs take ~10 s, once instead of per worker).
pytestmark = pytest.mark.xdist_group("docs-snippets")


def page_id(page) -> str:
    return str(page.relative_to(ROOT))


def test_every_code_block_is_run_or_marked_with_a_reason():
    runnable = [b for page in PAGES for b in blocks(page) if b.runnable]
    assert len(runnable) >= 20, [b.where for b in runnable]
    unmarked_reasonless = [b.where for b in runnable if b.marker and not b.why]
    assert not unmarked_reasonless, f"markers without a reason: {unmarked_reasonless}"
    for b in runnable:
        if b.marker == "run-by":
            test = ROOT / b.why.split()[0]
            assert test.is_file(), f"{b.where}: run-by names {b.why}, which does not exist"
            assert page_id(b.page) in test.read_text(), f"{b.where}: {b.why} does not run {page_id(b.page)}"
    # Markers sit right before a block: one anywhere else is a mistake (it marks nothing).
    for page in PAGES:
        text = page.read_text()
        marked = sum(1 for b in blocks(page) if b.marker)
        assert text.count("<!-- not-run:") + text.count("<!-- run-by:") == marked, page_id(page)


def test_every_page_with_code_has_a_block_that_runs():
    """The pages that show code do run some of it, here or in the test a run-by marker names (a
    not-run marker on everything would pass the test above)."""
    silent = [page_id(p) for p in PAGES
              if any(b.runnable for b in blocks(p)) and not any(b.runnable and b.marker != "not-run" for b in blocks(p))]
    assert silent == [], silent


RUN_PAGES = [p for p in PAGES if any(b.runnable and not b.marker for b in blocks(p))]
USES_LITELLM = re.compile(r"^\s*(import|from)\s+(litellm|cachesaver_litellm|dspy|smolagents|agents|langchain_litellm)\b", re.M)


def test_pages_that_import_litellm_export_its_offline_switch_first():
    """The Python processes come pre-loaded (see ``Zygote``), so litellm was imported with
    LITELLM_LOCAL_MODEL_COST_MAP=True whatever the page says: check the page says it, before."""
    for page in RUN_PAGES:
        exported = False
        for b in blocks(page):
            if b.lang in SHELL and "export LITELLM_LOCAL_MODEL_COST_MAP=True" in b.code:
                exported = True
            if b.lang in PYTHON and not b.marker and USES_LITELLM.search(b.code):
                assert exported, f"{b.where} imports litellm before the page exports LITELLM_LOCAL_MODEL_COST_MAP=True"


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_", "PYTEST_"))}
    env["DSPY_CACHEDIR"] = str(tmp / "dspy-cache")   # read by dspy at import: DSPy's own cache never in ~
    env["OPENAI_AGENTS_DISABLE_TRACING"] = "1"       # belt and braces: nothing leaves the machine
    # The repository's packages, also when the tests run from a tree the install does not point at.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "core"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zygote")
    made = Zygote(tmp / "z.sock", dict(base_env(tmp), LITELLM_LOCAL_MODEL_COST_MAP="True"))
    yield made
    made.close()


@pytest.mark.parametrize("page", RUN_PAGES, ids=page_id)
def test_page_snippets_run_as_written(page, tmp_path, zygote):
    env = base_env(tmp_path)
    to_run = [b for b in blocks(page) if b.runnable and not b.marker]
    run = PageRun(tmp_path, env, zygote=zygote)
    try:
        for block in to_run:
            error = run.run(block)
            assert error is None, error
    finally:
        run.close()
