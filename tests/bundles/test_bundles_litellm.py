"""The demo-like flow through litellm: record with ``cachesaver/`` models against the fake
OpenAI server, bundle from ``cachesaver_litellm.get_pipeline()``, replay in a fresh process
from a read-only copy with no server running.

The replay registers the provider on the bundle file (``register(store=bundle)``): a bundle is
a read-only store, so the engine serves it offline without any adapter change.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil

import pytest

litellm = pytest.importorskip("litellm")
import cachesaver_litellm  # noqa: E402

from cachesaver.bundle import verify_bundle, write_bundle  # noqa: E402
from cachesaver.testing.server import FakeOpenAIServer  # noqa: E402

from _readonly import make_read_only, run_python  # noqa: E402

MODEL = "cachesaver/openai/fake-model"
PUZZLES = ["4 4 6 8", "2 3 5 12", "1 5 5 5", "3 3 8 8"]

FLOW = r"""
import asyncio, json, os, sys
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import litellm, cachesaver_litellm

MODEL = "cachesaver/openai/fake-model"
PUZZLES = json.loads(sys.argv[3])

async def arm(namespace, n, api_base):
    responses = await asyncio.gather(*[
        litellm.acompletion(model=MODEL, messages=[{"role": "user", "content": f"Make 24 from {p}"}], n=n,
                            temperature=0.7, api_base=api_base, api_key="sk-test", max_retries=0,
                            metadata={"cachesaver_namespace": namespace, "cachesaver_request_id": f"{namespace}-{i}"})
        for i, p in enumerate(PUZZLES)])
    return [[c.message.content for c in r.choices] for r in responses]

async def main():
    cachesaver_litellm.register(store=sys.argv[1], timeout=0.02)
    api_base = sys.argv[2]
    out = {"first run": await arm("first run", 2, api_base), "ablation": await arm("ablation", 2, api_base)}
    try:
        await arm("one more arm", 3, api_base)
        out["miss"] = None
    except Exception as exc:
        out["miss"] = f"{type(exc).__name__}: {exc}"
    out["model_calls"] = cachesaver_litellm.get_pipeline().stats.model_calls
    print(json.dumps(out))

asyncio.run(main())
"""


async def _arm(namespace, n, api_base):
    responses = await asyncio.gather(*[
        litellm.acompletion(model=MODEL, messages=[{"role": "user", "content": f"Make 24 from {p}"}], n=n,
                            temperature=0.7, api_base=api_base, api_key="sk-test", max_retries=0,
                            metadata={"cachesaver_namespace": namespace, "cachesaver_request_id": f"{namespace}-{i}"})
        for i, p in enumerate(PUZZLES)])
    return [[c.message.content for c in r.choices] for r in responses]


@pytest.mark.slow  # a fresh interpreter imports litellm (~2.5 s on an idle machine)
async def test_litellm_run_bundles_and_replays_offline(tmp_path, restore_permissions):
    litellm.suppress_debug_info = True
    with FakeOpenAIServer(seed=5) as server:
        try:
            cachesaver_litellm.register(store=str(tmp_path / "cache"), timeout=0.02)
            outputs = {"first run": await _arm("first run", 2, server.base_url),
                       "ablation": await _arm("ablation", 2, server.base_url)}
            pipeline = cachesaver_litellm.get_pipeline()
            consumption = cachesaver_litellm.consumption()  # read on the engine's loop
            contents = await write_bundle(pipeline.store, consumption, tmp_path / "demo.csbundle")
            calls = pipeline.stats.model_calls
            api_base = server.base_url
        finally:
            cachesaver_litellm.unregister()
    assert calls == len(PUZZLES)          # the ablation replayed the first run's samples
    assert contents.sample_count == 2 * len(PUZZLES)
    assert set(consumption) == {"first run", "ablation"}
    verified = verify_bundle(tmp_path / "demo.csbundle")
    assert verified.summary["models"] != ["-"]
    meta_text = json.dumps([m.decode() for m in verified.metas.values()])
    assert "sk-test" not in meta_text and "Make 24 from 4 4 6 8" in meta_text
    assert os.path.getsize(tmp_path / "demo.csbundle") < 300_000

    shelf = tmp_path / "shelf"
    shelf.mkdir()
    shutil.copy(tmp_path / "demo.csbundle", shelf / "demo.csbundle")
    make_read_only(shelf)
    # The server is stopped: any model call would fail to connect.
    result = run_python(FLOW, str(shelf / "demo.csbundle"), api_base, json.dumps(PUZZLES), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["first run"] == outputs["first run"] and got["ablation"] == outputs["ablation"]
    assert got["model_calls"] == 0
    assert "OfflineMissError" in got["miss"] or "offline replay" in got["miss"]
    assert "Make 24 from" in got["miss"] and "'one more arm'" in got["miss"]


async def test_register_offline_turns_a_miss_into_an_error_without_a_request(tmp_path):
    """``register(offline=True)`` on an ordinary cache directory: hits replay, a miss names
    the prompt and never reaches the server."""
    litellm.suppress_debug_info = True
    with FakeOpenAIServer(seed=5) as server:
        try:
            cachesaver_litellm.register(store=str(tmp_path / "cache"))
            recorded = await _arm("first run", 1, server.base_url)
            cachesaver_litellm.register(store=str(tmp_path / "cache"), offline=True)
            assert await _arm("replay", 1, server.base_url) == recorded
            with pytest.raises(Exception, match="OfflineMissError|offline") as caught:
                await _arm("replay", 1, server.base_url)  # a second sample per prompt: a miss
            assert "Make 24 from" in str(caught.value)
            assert server.request_count == len(PUZZLES)  # only the recording run's calls
        finally:
            cachesaver_litellm.unregister()
