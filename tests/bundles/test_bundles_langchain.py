"""A LangGraph ReAct agent on ``CacheSaverChatModel``: record two namespaces against the fake
server, bundle from the wrapper's pipeline, stop the server, and replay from a copy of the
bundle with a new wrapper (a new run) whose store is the bundle: identical trajectories, no
request reaches a server, and a question nobody recorded raises the offline-miss error.

The replay runs in this process (a second interpreter would pay the LangChain and LangGraph
imports again); the fresh-process, read-only-directory replay is covered by the engine and
litellm tests, and a bundle is never written to by construction (``BundleStore``).
"""
from __future__ import annotations

import shutil
import warnings

import pytest

pytest.importorskip("langgraph")
pytest.importorskip("langchain_openai")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

from cachesaver.bundle import verify_bundle, write_bundle  # noqa: E402
from cachesaver.errors import OfflineMissError  # noqa: E402
from cachesaver.testing.server import FakeOpenAIServer  # noqa: E402
from cachesaver_langchain import CacheSaverChatModel, cachesaver_config  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from langgraph.prebuilt import create_react_agent


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"It is sunny in {city[:12]}."


def _agent(chat):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(chat, [weather])


def _trajectory(result) -> list[tuple]:
    out = []
    for m in result["messages"]:
        if isinstance(m, AIMessage):
            out.append(("ai", m.content, [(c["name"], c["args"], c["id"]) for c in m.tool_calls]))
        elif isinstance(m, ToolMessage):
            out.append(("tool", m.content, m.tool_call_id))
        else:
            out.append((m.type, m.content))
    return out


QUESTION = {"messages": [HumanMessage("What is the weather in Paris?")]}


async def test_langgraph_agent_bundled_and_replayed_offline(tmp_path):
    with FakeOpenAIServer(seed=3, follow_prompt=True) as server:
        inner = ChatOpenAI(model="fake-model", base_url=server.base_url, api_key="sk-test", max_retries=0,
                           temperature=0.7)
        chat = CacheSaverChatModel(chat_model=inner, store=str(tmp_path / "store"))
        try:
            agent = _agent(chat)
            recorded = {arm: _trajectory(await agent.ainvoke(QUESTION, config=cachesaver_config(arm)))
                        for arm in ("baseline", "ablation")}
            # Private ledger on a disk store: the coroutine never suspends, so it can run here.
            consumption = chat.consumption()
            await write_bundle(chat.pipeline.store, consumption, tmp_path / "agent.csbundle")
        finally:
            chat.close()
        calls_recorded = server.request_count
    assert calls_recorded == 2                       # the ablation replayed the baseline
    assert set(consumption) == {"baseline", "ablation"}
    contents = verify_bundle(tmp_path / "agent.csbundle")
    assert contents.sample_count == 2 and "sk-test" not in str(contents.metas)

    shelf = tmp_path / "shelf"
    shelf.mkdir()
    shutil.copy(tmp_path / "agent.csbundle", shelf / "agent.csbundle")
    # The server is gone: a request to it would fail to connect.
    inner = ChatOpenAI(model="fake-model", base_url=server.base_url, api_key="sk-other", max_retries=0,
                       temperature=0.7)
    replay = CacheSaverChatModel(chat_model=inner, store=str(shelf / "agent.csbundle"))
    try:
        agent = _agent(replay)
        for arm in ("baseline", "ablation"):
            assert _trajectory(await agent.ainvoke(QUESTION, config=cachesaver_config(arm))) == recorded[arm]
        assert replay.pipeline.stats.model_calls == 0
        with pytest.raises(OfflineMissError, match="What is the weather in Rome"):
            await agent.ainvoke({"messages": [HumanMessage("What is the weather in Rome?")]},
                                config=cachesaver_config("baseline"))
        assert replay.pipeline.stats.model_calls == 0
    finally:
        replay.close()
