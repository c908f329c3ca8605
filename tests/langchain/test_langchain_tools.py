"""bind_tools and with_structured_output pass through to the inner model; replays are exact."""
from __future__ import annotations

import pytest
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from _lc_helpers import ns


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def shout(text: str) -> str:
    """Shout a text."""
    return text.upper()


class Answer(BaseModel):
    """An answer with a score."""

    answer: str = Field(description="the answer")
    score: int = Field(description="a score")


class Plain(BaseModel):
    """Just an answer (the fake server's JSON mode answers with an "answer" key)."""

    answer: str


def test_bind_tools_formats_with_the_inner_model_and_replays_tool_call_ids(make_chat, fake_server):
    chat = make_chat()
    bound = chat.bind_tools([add], tool_choice="add")
    first = bound.invoke("Add 2 and 3", config=ns("A"))
    body = fake_server.requests[-1]
    assert body["tools"][0]["function"]["name"] == "add"  # ChatOpenAI's own tool format
    assert body["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    replay = bound.invoke("Add 2 and 3", config=ns("B"))
    assert fake_server.request_count == 1
    assert replay.tool_calls == first.tool_calls and replay.tool_calls[0]["id"].startswith("call_")
    assert replay.response_metadata["cachesaver"]["cached"] is True


def test_tools_are_part_of_the_key(make_chat, fake_server):
    chat = make_chat()
    chat.bind_tools([add]).invoke("Use a tool", config=ns("A"))
    chat.bind_tools([shout]).invoke("Use a tool", config=ns("A"))
    chat.invoke("Use a tool", config=ns("A"))
    assert fake_server.request_count == 3


@pytest.mark.parametrize("method", ["function_calling", "json_schema", "json_mode"])
@pytest.mark.parametrize("include_raw", [False, True])
def test_structured_output_every_method_replays(make_chat, fake_server, method, include_raw):
    chat = make_chat()
    schema = Plain if method == "json_mode" else Answer
    structured = chat.with_structured_output(schema, method=method, include_raw=include_raw)
    first = structured.invoke("Answer with a score", config=ns("A"))
    replay = structured.invoke("Answer with a score", config=ns("B"))
    assert fake_server.request_count == 1
    if include_raw:
        assert first["parsing_error"] is None and isinstance(first["parsed"], schema)
        assert replay["parsed"] == first["parsed"]
        assert replay["raw"].response_metadata["cachesaver"]["cached"] is True
    else:
        assert isinstance(first, schema) and replay == first
    fresh = structured.invoke("Answer with a score", config=ns("A"))
    assert fake_server.request_count == 2
    assert (fresh["parsed"] if include_raw else fresh) != (first["parsed"] if include_raw else first)


async def test_structured_output_streams_from_a_replay(make_chat, fake_server):
    chat = make_chat()
    structured = chat.with_structured_output(Answer, method="json_schema")
    first = await structured.ainvoke("Answer with a score", config=ns("A"))
    parsed = [p async for p in structured.astream("Answer with a score", config=ns("B"))]
    assert parsed[-1] == first and fake_server.request_count == 1


def test_structured_output_schema_is_keyed(make_chat, fake_server):
    class Other(BaseModel):
        """Something else."""

        answer: str

    chat = make_chat()
    chat.with_structured_output(Answer, method="json_schema").invoke("Answer", config=ns("A"))
    chat.with_structured_output(Other, method="json_schema").invoke("Answer", config=ns("A"))
    assert fake_server.request_count == 2


def test_a_runnable_that_hides_its_model_is_refused(make_chat):
    from langchain_core.runnables import RunnableLambda

    chat = make_chat()
    inner = chat.chat_model

    class Hiding(type(inner)):
        def bind_tools(self, tools, **kwargs):
            model = self
            return RunnableLambda(lambda x: model.invoke(x))

    hidden = make_chat(inner=Hiding(**{k: getattr(inner, k) for k in ("model_name",)},
                                     base_url=inner.openai_api_base, api_key="sk-test"))
    with pytest.raises(NotImplementedError, match="cannot route it through the cache"):
        hidden.bind_tools([add])
