"""The docs site builds with ``mkdocs build --strict`` (issue 26, item 1): a broken link, a page
missing from the nav, a docstring mkdocstrings cannot render or an unknown reference fails here,
so CI (which runs pytest) builds the docs on every run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        for value in entry.values():
            pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_no_page_quotes_a_count_of_tests():
    """A count of tests is out of date with the next test added, and no command output quotes it
    back to compare (issue 26: the README said 121 reliability tests when there were 122; the
    reliability page then said 130 with 131 collected). Pages name the command instead."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    counts = [f"{page.relative_to(ROOT)}: {m.group(0)}" for page in pages
              for m in re.finditer(r"\b\d[\d,]* (?:\w+ )?tests\b", page.read_text())]
    assert counts == []


def test_every_docs_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    on_disk = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(nav_pages(config["nav"])) == on_disk
    assert config["strict"] is True


def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "core"), env.get("PYTHONPATH", "")])
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    api = (site / "api" / "index.html").read_text()
    # The reference is generated from the docstrings: the public classes of each package are there.
    for name in ("cachesaver.pipelines.OnlineAPI", "cachesaver.typedefs.Request", "cachesaver_litellm.register",
                 "cachesaver_litellm.CacheSaverRouter", "cachesaver_langchain.CacheSaverChatModel",
                 "cachesaver_litellm.dspy.CacheSaverLM", "cachesaver.bundle.writer.write_bundle",
                 "cachesaver.stores.disk.DiskStore"):
        assert f'id="{name}"' in api, name
    for page in ("concepts", "engine", "integrations/litellm", "integrations/proxy", "stores", "bundles", "cli",
                 "performance", "maintainers"):
        assert (site / page / "index.html").is_file(), page
