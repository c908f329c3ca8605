"""Streaming, tool calls and ``response_format`` through the provider.

A stored sample replays as a stream; a miss streams live to the caller the engine hands the
first new sample to, and is stored whole when it ends.
"""
from __future__ import annotations

import json

import litellm

from _litellm_helpers import MESSAGES, ns, sample_ids

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {"type": "object", "properties": {"colour": {"type": "string"}, "n": {"type": "integer"}},
                   "required": ["colour", "n"]},
    },
}


async def collect(stream) -> list:
    return [chunk async for chunk in stream]


async def test_a_stored_sample_replays_as_a_stream(provider, server, call_kwargs):
    stored = await litellm.acompletion(metadata=ns("a"), **call_kwargs)
    chunks = await collect(await litellm.acompletion(stream=True, metadata=ns("b"), **call_kwargs))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == stored.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert server.request_count == 1


async def test_a_streamed_miss_is_streamed_live_once_stored_and_shared_with_plain_calls(provider, server, call_kwargs):
    chunks = await collect(await litellm.acompletion(
        stream=True, stream_options={"include_usage": True}, metadata=ns("a"), **call_kwargs))
    rebuilt = litellm.stream_chunk_builder(chunks, messages=MESSAGES)

    assert sample_ids(rebuilt) == [1]
    assert server.request_count == 1 and server.requests[0].get("stream") is True  # live
    usage = next(c.usage for c in reversed(chunks) if getattr(c, "usage", None))
    assert usage.prompt_tokens == server.prompt_tokens
    assert usage.completion_tokens == server.completion_tokens
    # Same key with and without streaming: the plain call in another namespace reuses it.
    plain = await litellm.acompletion(metadata=ns("b"), **call_kwargs)
    assert sample_ids(plain) == [1] and server.request_count == 1


async def test_streaming_n_choices_delivers_every_choice(provider, server, call_kwargs):
    stored = await litellm.acompletion(n=2, metadata=ns("a"), **call_kwargs)
    chunks = await collect(await litellm.acompletion(n=2, stream=True, metadata=ns("b"), **call_kwargs))
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert [texts[0], texts[1]] == [c.message.content for c in stored.choices]
    assert server.request_count == 1


async def test_tool_calls_are_stored_and_replayed_plain_and_streamed(provider, server, call_kwargs):
    live = await litellm.acompletion(tools=TOOLS, metadata=ns("a"), **call_kwargs)
    call = live.choices[0].message.tool_calls[0]
    assert live.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert server.requests[0]["tools"] == TOOLS

    replay = await litellm.acompletion(tools=TOOLS, metadata=ns("b"), **call_kwargs)
    assert replay.choices[0].message.tool_calls[0].model_dump() == call.model_dump()

    chunks = await collect(await litellm.acompletion(tools=TOOLS, stream=True, metadata=ns("c"), **call_kwargs))
    rebuilt = litellm.stream_chunk_builder(chunks, messages=MESSAGES)
    streamed = rebuilt.choices[0].message.tool_calls[0]
    assert (streamed.id, streamed.function.name, streamed.function.arguments) == (
        call.id, call.function.name, call.function.arguments)
    assert rebuilt.choices[0].finish_reason == "tool_calls"
    assert server.request_count == 1

    # Without tools it is another request (tools are keyed).
    await litellm.acompletion(metadata=ns("a"), **call_kwargs)
    assert server.request_count == 2


async def test_response_format_is_keyed_forwarded_and_replayed(provider, server, call_kwargs):
    live = await litellm.acompletion(response_format=SCHEMA, metadata=ns("a"), **call_kwargs)
    parsed = json.loads(live.choices[0].message.content)
    assert set(parsed) == {"colour", "n"} and server.requests[0]["response_format"] == SCHEMA

    replay = await litellm.acompletion(response_format=SCHEMA, metadata=ns("b"), **call_kwargs)
    assert replay.choices[0].message.content == live.choices[0].message.content
    other_schema = json.loads(json.dumps(SCHEMA))
    other_schema["json_schema"]["schema"]["properties"]["n"]["type"] = "number"
    await litellm.acompletion(response_format=other_schema, metadata=ns("b"), **call_kwargs)
    assert server.request_count == 2


async def test_a_pydantic_response_format_is_keyed_by_its_schema(provider, server, call_kwargs):
    from pydantic import BaseModel

    class Answer(BaseModel):
        colour: str
        n: int

    live = await litellm.acompletion(response_format=Answer, metadata=ns("a"), **call_kwargs)
    replay = await litellm.acompletion(response_format=Answer, metadata=ns("b"), **call_kwargs)
    assert Answer.model_validate_json(replay.choices[0].message.content).n == 1
    assert replay.choices[0].message.content == live.choices[0].message.content
    assert server.request_count == 1 and server.requests[0]["response_format"]["type"] == "json_schema"


async def test_a_streamed_miss_reaches_the_caller_while_the_provider_is_still_generating(provider, server, call_kwargs):
    """Time to first token of a miss is the provider's, not the whole generation's: the first
    content chunk arrives while the provider has sent only the first few of its events."""
    server.chunk_delay = 0.05
    stream = await litellm.acompletion(stream=True, metadata=ns("live"), **call_kwargs)
    sent_at_first_text = None
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        if sent_at_first_text is None and chunk.choices and chunk.choices[0].delta.content:
            sent_at_first_text = server.stream_events_sent
    total = server.stream_events_sent
    # The first words reached the caller after the provider's third event (role, word, word:
    # the adapter holds one content chunk back to put the usage on the last one), long before
    # the provider's last.
    assert total >= 8 and sent_at_first_text is not None and sent_at_first_text <= 3
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    server.chunk_delay = 0.0
    replay = await litellm.acompletion(metadata=ns("replay"), **call_kwargs)
    assert replay.choices[0].message.content == text and server.request_count == 1  # stored whole


async def test_streams_that_stop_after_two_chunks_each_consume_their_sample(provider, server, call_kwargs):
    """Consumption is delivery (G1, issue 21): five streams in one namespace each read two
    chunks and stop. Before, a stopped stream took no sample, so 3 upstream calls served 5
    streams and samples were handed out twice."""
    heads = []
    for _ in range(5):
        stream = await litellm.acompletion(stream=True, metadata=ns("sc"), **call_kwargs)
        head = ""
        count = 0
        async for chunk in stream:
            head += chunk.choices[0].delta.content or "" if chunk.choices else ""
            count += 1
            if count == 2:
                break
        await stream.aclose()
        heads.append(head)
    assert server.request_count == 5
    assert len(set(heads)) == 5
    # Each stopped stream's sample was stored whole: another namespace replays all five, free.
    replay = await litellm.acompletion(n=5, metadata=ns("other"), **call_kwargs)
    assert sample_ids(replay) == [1, 2, 3, 4, 5] and server.request_count == 5


def test_sync_streams_that_stop_early_each_consume_their_sample(provider, server, call_kwargs):
    for _ in range(3):
        stream = litellm.completion(stream=True, metadata=ns("sc"), **call_kwargs)
        for count, _chunk in enumerate(stream, 1):
            if count == 2:
                break
        stream.close()  # the caller stops reading
    plain = litellm.completion(metadata=ns("sc"), **call_kwargs)
    assert sample_ids(plain) == [4] and server.request_count == 4
