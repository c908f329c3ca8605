"""Issue 26: one spelling for the counters on every surface, ``stats()``: the engine pipeline,
``CacheSaverRouter``, ``CacheSaverChatModel`` and ``cachesaver_litellm.stats()``. Before, the
module function was called and the others were read as attributes (``router.stats()`` raised
``TypeError: 'Stats' object is not callable``). The attribute form keeps working unchanged."""
from __future__ import annotations

import asyncio

import pytest

from cachesaver.pipelines import OnlineAPI
from cachesaver.stats import Stats
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

MESSAGES = [{"role": "user", "content": "Name a colour."}]


def test_engine_pipeline(tmp_path):
    async def main():
        async with OnlineAPI(model=FakeModel(), model_id="fake/model", cache=str(tmp_path / "c"), timeout=0.001) as p:
            await p.request(Request(prompt="q", n=2, namespace="a"))
            return p
    pipeline = asyncio.run(main())
    assert isinstance(pipeline.stats(), Stats) and pipeline.stats() is pipeline.stats
    assert pipeline.stats().model_calls == 1 and pipeline.stats().ns("a").samples_generated == 2


def test_litellm_provider_and_router(fake_server, store_path, litellm_globals_restored):
    import litellm

    import cachesaver_litellm
    from cachesaver_litellm import CacheSaverRouter

    cachesaver_litellm.register(store=store_path, timeout=0.01)
    litellm.completion(model="cachesaver/openai/gpt-4o-mini", messages=MESSAGES, api_base=fake_server.base_url,
                       api_key="sk-test", metadata={"cachesaver_namespace": "a"})
    assert cachesaver_litellm.stats().model_calls == 1

    router = litellm.Router(model_list=[{"model_name": "gpt", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": fake_server.base_url, "api_key": "sk-test"}}])
    with CacheSaverRouter(router, store=store_path + "-router", timeout=0.01) as wrapped:
        wrapped.completion(model="gpt", messages=MESSAGES, metadata={"cachesaver_namespace": "a"})
        assert wrapped.stats() is wrapped.stats and wrapped.stats().model_calls == 1


def test_langchain_chat_model(fake_server, store_path):
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI

    from cachesaver_langchain import CacheSaverChatModel, cachesaver_config

    chat = CacheSaverChatModel(chat_model=ChatOpenAI(model="fake-model", base_url=fake_server.base_url,
                                                     api_key="sk-test", max_retries=0), store=store_path)
    try:
        chat.invoke("Name a colour.", config=cachesaver_config("a"))
        assert chat.stats() is chat.stats and chat.stats().model_calls == 1
    finally:
        chat.close()


def test_the_docs_and_notebooks_spell_it_stats():
    """What users copy spells the counters one way: ``x.stats()``, never ``x.stats.summary()``
    (the README wrote ``stats()`` while the engine and Router pages and four notebooks read the
    attribute)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [root / "README.md", *(root / "docs").rglob("*.md"), *(root / "notebooks").glob("*.ipynb"),
             *(root / "examples").rglob("*.py")]
    attribute = [f"{path.relative_to(root)}: {m.group(0)}" for path in files
                 for m in re.finditer(r"\w+\.stats\.\w+", path.read_text())]
    assert attribute == []
