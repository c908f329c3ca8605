"""Namespace and request id from the run's metadata, wherever LangChain carries it."""
from __future__ import annotations

import operator
from typing import Annotated, TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph

from cachesaver.errors import DuplicateRequestIdError

from _lc_helpers import join, ns, sample_no

PROMPT = "Say something"


def _seed(chat, namespace="A"):
    """Store one sample under ``namespace``; return its number."""
    return sample_no(chat.invoke(PROMPT, config=ns(namespace)))


def test_config_and_with_config(make_chat, fake_server):
    chat = make_chat()
    first = _seed(chat)
    assert sample_no(chat.with_config(ns("B")).invoke(PROMPT)) == first  # B replays A's sample
    assert sample_no(chat.with_config(ns("A")).invoke(PROMPT)) != first  # A gets a fresh one
    assert fake_server.request_count == 2


def test_default_namespace_is_the_wrappers(make_chat, fake_server):
    chat = make_chat(namespace="base")
    first = chat.invoke(PROMPT)
    assert first.response_metadata["cachesaver"]["namespace"] == "base"
    assert sample_no(chat.invoke(PROMPT, config=ns("other"))) == sample_no(first)


def test_inside_a_chain_and_a_nested_lambda(make_chat, fake_server):
    chat = make_chat()
    first = _seed(chat)
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | chat | StrOutputParser()
    assert sample_no(chain.invoke({"q": PROMPT}, config=ns("B"))) == first
    nested = RunnableLambda(lambda q: chain.invoke({"q": q}))  # config flows through the context
    assert sample_no(nested.invoke(PROMPT, config=ns("C"))) == first
    assert fake_server.request_count == 1


async def test_streaming_paths_of_a_chain(make_chat, fake_server):
    chat = make_chat()
    first = _seed(chat)
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | chat
    chunks = [c async for c in chain.astream({"q": PROMPT}, config=ns("B"))]
    assert sample_no(join(chunks)) == first
    sync_chunks = list(chain.stream({"q": PROMPT}, config=ns("C")))
    assert sample_no(join(sync_chunks)) == first
    assert chunks[-1].response_metadata["cachesaver"]["namespace"] == "B"
    assert fake_server.request_count == 1


class _State(TypedDict):
    messages: Annotated[list, operator.add]


def _graph(chat):
    def call(state, config):
        return {"messages": [chat.invoke(state["messages"], config)]}

    async def acall(state, config):
        return {"messages": [await chat.ainvoke(state["messages"], config)]}

    builder = StateGraph(_State)
    builder.add_node("model", call)
    builder.add_edge(START, "model")
    builder.add_edge("model", END)
    abuilder = StateGraph(_State)
    abuilder.add_node("model", acall)
    abuilder.add_edge(START, "model")
    abuilder.add_edge("model", END)
    return builder.compile(), abuilder.compile()


async def test_graph_level_metadata_of_a_langgraph_graph(make_chat, fake_server):
    chat = make_chat()
    first = _seed(chat)
    graph, agraph = _graph(chat)
    out = graph.invoke({"messages": [HumanMessage(PROMPT)]}, config=ns("B"))
    assert sample_no(out["messages"][-1]) == first
    out = await agraph.ainvoke({"messages": [HumanMessage(PROMPT)]}, config=ns("C"))
    assert sample_no(out["messages"][-1]) == first
    assert out["messages"][-1].response_metadata["cachesaver"]["namespace"] == "C"
    # stream_mode="messages" makes the model stream inside the graph: still namespace D
    streamed = [m async for m, _ in agraph.astream({"messages": [HumanMessage(PROMPT)]},
                                                     config=ns("D"), stream_mode="messages")]
    assert sample_no(join(streamed)) == first
    assert fake_server.request_count == 1
    fresh = graph.invoke({"messages": [HumanMessage(PROMPT)]}, config=ns("A"))
    assert sample_no(fresh["messages"][-1]) != first and fake_server.request_count == 2


async def test_request_id_is_reported_and_must_be_unique_in_flight(make_chat, fake_server):
    chat = make_chat(batch_timeout=0.3)  # the first call is still waiting when the second comes
    message = await chat.ainvoke(PROMPT, config=ns("A", "req-7"))
    assert message.response_metadata["cachesaver"]["request_id"] == "req-7"
    results = await chat.abatch([PROMPT, PROMPT], config=ns("A", "same"), return_exceptions=True)
    assert sum(isinstance(r, DuplicateRequestIdError) for r in results) == 1


@pytest.mark.parametrize(
    "metadata, match, error",
    [({"cachesaver_namespace": 3}, "cachesaver_namespace", TypeError),
     ({"cachesaver_namespace": ""}, "cachesaver_namespace", ValueError),  # a bad value, as everywhere
     ({"cachesaver_request_id": 5}, "cachesaver_request_id", TypeError)],
)
def test_bad_metadata_is_a_clear_error(make_chat, fake_server, metadata, match, error):
    chat = make_chat()
    with pytest.raises(error, match=match):
        chat.invoke(PROMPT, config={"metadata": metadata})
    assert fake_server.request_count == 0
