"""The proxy client snippets of README.md and docs/integrations/proxy.md, run as written against
the session's real LiteLLM Proxy (issue 26, item 2).

The docs start the proxy with ``litellm --config examples/proxy/config.yaml --port 4000`` and
``LITELLM_MASTER_KEY=sk-master``; this session's proxy runs the same command with that config
on a free port and its own master key, so those two strings are the only edits. Blocks are the
ones marked ``<!-- run-by: tests/proxy/test_proxy_docs.py -->`` (tests/docs checks the marker).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _proxy_helpers import MASTER_KEY, requires_proxy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
from _snippets import PYTHON, ROOT, SHELL, blocks  # noqa: E402

pytestmark = requires_proxy

PAGES = ["README.md", "docs/integrations/proxy.md"]
MARK = "tests/proxy/test_proxy_docs.py"


def _blocks():
    found = [b for page in PAGES for b in blocks(ROOT / page) if b.marker == "run-by" and b.why == MARK]
    assert {str(b.page.relative_to(ROOT)) for b in found} == set(PAGES)
    return found


@pytest.mark.parametrize("block", _blocks(), ids=lambda b: b.where)
def test_proxy_snippet_runs_against_the_real_proxy(block, proxy, upstream, tmp_path):
    assert block.lang in PYTHON | SHELL
    code = block.code.replace("localhost:4000", proxy.base_url.removeprefix("http://")).replace("sk-master", MASTER_KEY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_"))}
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    argv = [sys.executable, "-c", code] if block.lang in PYTHON else ["bash", "-c", "set -e\n" + code]
    before = upstream.request_count
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{block.where}\n{done.stdout}\n{done.stderr}"
    if block.lang in SHELL:  # curl: the answer is a chat completion, not an error body
        body = json.loads(done.stdout)
        assert "error" not in body, body
        assert "[sample" in body["choices"][0]["message"]["content"], body
    else:
        texts = ast.literal_eval(done.stdout.strip().splitlines()[-1])  # the snippet prints its 2 answers
        assert len(texts) == 2 and all("[sample" in t for t in texts)
    assert upstream.request_count - before <= 1  # at most one upstream call (a hit makes none)


def test_the_pages_config_is_the_example_config_the_proxy_tests_run():
    """The page shows the proxy's config.yaml inline (a YAML block runs nothing); it must be the
    file tests/proxy starts the proxy with, or a reader copying it gets another proxy (before, the
    page's copy had no api_base, so OPENAI_API_BASE was mentioned only by the file)."""
    import yaml

    [block] = [b for b in blocks(ROOT / "docs/integrations/proxy.md") if b.lang == "yaml"]
    assert yaml.safe_load(block.code) == yaml.safe_load((ROOT / "examples/proxy/config.yaml").read_text())


def test_the_promptfoo_recipe_repeats_fresh_and_replays_in_a_new_namespace(proxy, upstream):
    """docs/integrations/evals.md's promptfoo config, driven as promptfoo drives it (one request
    per repeat, the provider config's base URL, key, temperature and headers) with the OpenAI
    client: ``--repeat 3`` gets three distinct samples; the run again under a new namespace
    replays them in order with 0 upstream calls."""
    import openai
    import yaml

    page = (ROOT / "docs/integrations/evals.md").read_text()
    [config_block] = [b for b in blocks(ROOT / "docs/integrations/evals.md") if b.lang == "yaml"]
    assert "promptfoo" in page
    config = yaml.safe_load(config_block.code)
    [provider] = config["providers"]
    settings = provider["config"]
    model = provider["id"].split(":", 2)[2]
    client = openai.OpenAI(base_url=settings["apiBaseUrl"].replace("localhost:4000", proxy.base_url.removeprefix("http://")),
                           api_key=MASTER_KEY, max_retries=0)
    prompt = config["prompts"][0] + f" ({os.getpid()})"  # a prompt of this test's own

    def run(namespace: str) -> list[str]:
        headers = dict(settings["headers"], **{"x-cachesaver-namespace": namespace})
        return [client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                               temperature=settings["temperature"], extra_headers=headers)
                .choices[0].message.content for _ in range(3)]

    before = upstream.request_count
    first = run(settings["headers"]["x-cachesaver-namespace"])
    assert len(set(first)) == 3 and upstream.request_count - before == 3
    replay = run("promptfoo-run-2")
    assert replay == first and upstream.request_count - before == 3
    client.close()
