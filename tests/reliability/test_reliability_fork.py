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
import os
import traceback

import litellm
import pytest
from langchain_openai import ChatOpenAI

import cachesaver_litellm
from cachesaver.testing.server import FakeOpenAIServer
from cachesaver_langchain import CacheSaverChatModel

# litellm's success logging imports this module lazily, in a background thread, after a call;
# with the proxy installed that import takes seconds, and a fork during it leaves the module's
# import lock held by a thread the child does not have: the child's first call then deadlocks
# (a CPython fork-with-threads hazard of litellm's, seen 1 run in 15 here). An application that
# forks after litellm calls avoids it the same way: import it before the first call.
try:
    import litellm.proxy.spend_tracking.savings  # noqa: F401
except ImportError:  # no proxy installed: litellm skips the import, nothing to wait for
    pass

MODEL = "cachesaver/openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture
def server():
    with FakeOpenAIServer(seed=2) as srv:
        yield srv


def _child(target, queue, *args):
    """Run ``target`` in the child, then leave with ``os._exit``: litellm's logging thread pool is
    inherited across fork with its queue in the parent's state, and at a normal exit CPython
    joins the child's worker of it, which can wait forever (seen 6 runs in 20 here, with or
    without CacheSaver). What is tested is that the child's calls work; its result is flushed
    first."""
    code = 0
    try:
        target(queue, *args)
    except BaseException:
        traceback.print_exc()
        code = 1
    queue.close()
    queue.join_thread()
    os._exit(code)


def _run_in_fork(target, *args):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(target, queue, *args))
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
