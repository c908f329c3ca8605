"""fork after the adapters ran (multiprocessing's default start method on Linux before 3.14).

The parent's engine loop thread does not exist in a forked child, and its locks may be held:
the child must start its own engine loop and open its own store connections, and still share
the parent's samples through the store. Before the shared runtime, the litellm child hung
forever on its first ``cachesaver/`` call and the LangChain child raised "bound to a different
event loop".
"""
from __future__ import annotations

import asyncio
import multiprocessing

import litellm
import pytest
from langchain_openai import ChatOpenAI

import cachesaver_litellm
from cachesaver.testing.server import FakeOpenAIServer
from cachesaver_langchain import CacheSaverChatModel

MODEL = "cachesaver/openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture
def server():
    with FakeOpenAIServer(seed=2) as srv:
        yield srv


def _run_in_fork(target, *args):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(queue, *args))
    child.start()
    try:
        result = queue.get(timeout=60)  # a hang fails here, not at the CI limit
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    return result


def _litellm_child(queue, api_base):
    async def calls():
        kwargs = dict(model=MODEL, messages=MESSAGES, api_base=api_base, api_key="sk-test", max_retries=0)
        replay = await litellm.acompletion(metadata={"cachesaver_namespace": "child"}, **kwargs)
        fresh = await litellm.acompletion(metadata={"cachesaver_namespace": "child"}, **kwargs)
        return replay, fresh

    replay, fresh = asyncio.run(calls())
    sync = litellm.completion(model=MODEL, messages=MESSAGES, api_base=api_base, api_key="sk-test",
                              metadata={"cachesaver_namespace": "child-sync"})
    queue.put((replay.choices[0].message.content, replay._hidden_params["cachesaver"]["cached"],
               fresh._hidden_params["cachesaver"]["cached"], sync.choices[0].message.content))


def test_litellm_works_in_a_forked_child_and_shares_the_parents_samples(tmp_path, server):
    litellm.suppress_debug_info = True
    cachesaver_litellm.register(store=str(tmp_path / "store"), timeout=0.01)
    try:
        first = litellm.completion(model=MODEL, messages=MESSAGES, api_base=server.base_url, api_key="sk-test",
                                   metadata={"cachesaver_namespace": "parent"})
        text = first.choices[0].message.content
        replayed, cached, fresh_cached, sync_text = _run_in_fork(_litellm_child, server.base_url)
        assert replayed == text and cached == [True]   # the parent's sample, through the store
        assert fresh_cached == [False]                  # the child's own engine loop generated one
        assert sync_text == text                        # sync calls work there too
        assert server.request_count == 2
        again = litellm.completion(model=MODEL, messages=MESSAGES, api_base=server.base_url, api_key="sk-test",
                                   metadata={"cachesaver_namespace": "parent-2"})
        assert again.choices[0].message.content == text  # the parent still works
    finally:
        cachesaver_litellm.unregister()


def _langchain_child(queue, chat):
    async def calls():
        return await chat.ainvoke("Name a colour.", config={"metadata": {"cachesaver_namespace": "child"}})

    replay = asyncio.run(calls())
    fresh = chat.invoke("Name a colour.", config={"metadata": {"cachesaver_namespace": "child"}})
    queue.put((replay.content, replay.response_metadata["cachesaver"]["cached"],
               fresh.response_metadata["cachesaver"]["cached"]))


def test_langchain_works_in_a_forked_child_and_shares_the_parents_samples(tmp_path, server):
    chat = CacheSaverChatModel(
        chat_model=ChatOpenAI(model="fake-model", base_url=server.base_url, api_key="sk-test", max_retries=0),
        store=str(tmp_path / "store"), batch_timeout=0.01)
    first = asyncio.run(chat.ainvoke("Name a colour.", config={"metadata": {"cachesaver_namespace": "parent"}}))
    replayed, cached, fresh_cached = _run_in_fork(_langchain_child, chat)
    assert replayed == first.content and cached is True
    assert fresh_cached is False and server.request_count == 2
    chat.close()
