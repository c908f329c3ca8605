"""A LangGraph ReAct agent on the wrapper: namespace B replays namespace A's trajectory for free;
namespace A again gets fresh samples."""
from __future__ import annotations

import warnings

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from _lc_helpers import ns

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from langgraph.prebuilt import create_react_agent

CALLS: list[str] = []


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    CALLS.append(city)
    return f"It is sunny in {city[:12]}."


def _trajectory(result) -> list[tuple]:
    """What the agent did, without the per-run message ids."""
    out = []
    for m in result["messages"]:
        if isinstance(m, AIMessage):
            out.append(("ai", m.content, [(c["name"], c["args"], c["id"]) for c in m.tool_calls]))
        elif isinstance(m, ToolMessage):
            out.append(("tool", m.content, m.tool_call_id))
        else:
            out.append((m.type, m.content))
    return out


def _agent(chat):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(chat, [weather])


async def test_react_agent_replays_in_another_namespace_and_refreshes_in_the_same(make_chat, fake_server):
    chat = make_chat()
    agent = _agent(chat)
    question = {"messages": [HumanMessage("What is the weather in Paris?")]}

    run_a = await agent.ainvoke(question, config=ns("A"))
    traj_a = _trajectory(run_a)
    kinds = [step[0] for step in traj_a]
    assert kinds == ["human", "ai", "tool", "ai"]  # tool call, tool result, final answer
    assert fake_server.request_count == 2

    run_b = await agent.ainvoke(question, config=ns("B"))
    assert _trajectory(run_b) == traj_a  # identical, tool call ids included
    assert fake_server.request_count == 2  # zero new model calls
    assert all(m.response_metadata["cachesaver"]["cached"] for m in run_b["messages"] if isinstance(m, AIMessage))

    run_a2 = agent.invoke(question, config=ns("A"))  # sync entry point, same ledger
    assert fake_server.request_count == 4  # fresh samples for both steps
    first_ai = [m for m in run_a["messages"] if isinstance(m, AIMessage)]
    again_ai = [m for m in run_a2["messages"] if isinstance(m, AIMessage)]
    assert first_ai[0].tool_calls[0]["id"] != again_ai[0].tool_calls[0]["id"]
    assert first_ai[1].content != again_ai[1].content  # (its prompt differs: new tool call id)


@pytest.mark.parametrize("output_version", ["v0", "v1"])
async def test_react_agent_streamed_live_then_replayed(make_chat, fake_server, output_version):
    """A streamed run stores what a streamed or invoked replay keys alike (v1 content blocks too)."""
    chat = make_chat(output_version=output_version)
    agent = _agent(chat)
    question = {"messages": [HumanMessage("Weather in Rome?")]}
    live = [m async for m, _ in agent.astream(question, config=ns("A"), stream_mode="messages")
            if isinstance(m, AIMessage)]
    assert fake_server.request_count == 2 and live
    replayed = [m async for m, _ in agent.astream(question, config=ns("B"), stream_mode="messages")
                if isinstance(m, AIMessage)]
    invoked = await agent.ainvoke(question, config=ns("C"))
    assert fake_server.request_count == 2  # both replays found every step
    assert invoked["messages"][-1].text in "".join(m.text for m in replayed)
