"""Streaming: live misses, replayed hits, tool-call chunks, abandoned streams (G1, G5)."""
from __future__ import annotations

import asyncio

import pytest

from langchain_core.tools import tool

from _lc_helpers import join, ns, sample_no

PROMPT = "Stream a sentence"


@tool
def lookup(city: str) -> str:
    """Look up the weather of a city."""
    return f"sunny in {city}"


async def test_a_miss_streams_live_and_a_hit_replays_the_same_message(make_chat, fake_server):
    chat = make_chat()
    live = [c async for c in chat.astream(PROMPT, config=ns("A"))]
    assert len([c for c in live if c.content]) >= 2  # the text arrived in several chunks
    assert live[-1].chunk_position == "last"
    assert live[-1].response_metadata["cachesaver"] == {
        "namespace": "A", "request_id": None, "cached": False, "duplicated": False,
        "sample_usage": {"input_tokens": fake_server.prompt_tokens,
                         "output_tokens": fake_server.completion_tokens,
                         "total_tokens": fake_server.prompt_tokens + fake_server.completion_tokens},
    }
    full = join(live)
    assert full.usage_metadata["input_tokens"] == fake_server.prompt_tokens  # billed here
    assert full.response_metadata["model_name"] == "fake-model"

    replay = [c async for c in chat.astream(PROMPT, config=ns("B"))]
    assert fake_server.request_count == 1  # a hit
    assert len(replay) >= 2
    *body, last = replay
    assert all(not c.response_metadata and c.usage_metadata is None for c in body)
    assert last.chunk_position == "last" and last.response_metadata["cachesaver"]["cached"] is True
    assert last.usage_metadata == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    again = join(replay)
    assert again.content == full.content and sample_no(again) == sample_no(full)
    assert chat.invoke(PROMPT, config=ns("C")).content == full.content


def test_sync_stream_replays_tool_calls_on_the_last_chunk_with_their_ids(make_chat, fake_server):
    chat = make_chat().bind_tools([lookup])
    first = chat.invoke("Weather in 'Paris'?", config=ns("A"))
    assert first.tool_calls and first.tool_calls[0]["id"].startswith("call_")
    chunks = list(chat.stream("Weather in 'Paris'?", config=ns("B")))
    assert fake_server.request_count == 1
    assert [bool(c.tool_call_chunks) for c in chunks] == [False] * (len(chunks) - 1) + [True]
    full = join(chunks)
    assert full.tool_calls == first.tool_calls  # same id, name and args


async def test_live_tool_call_stream_is_stored_whole(make_chat, fake_server):
    chat = make_chat().bind_tools([lookup])
    live = join([c async for c in chat.astream("Weather in 'Oslo'?", config=ns("A"))])
    assert live.tool_calls[0]["name"] == "lookup" and live.tool_calls[0]["id"]
    replay = await chat.ainvoke("Weather in 'Oslo'?", config=ns("B"))
    assert replay.tool_calls == live.tool_calls and fake_server.request_count == 1


async def test_an_abandoned_async_stream_consumed_its_sample_and_stored_it_whole(make_chat, fake_server):
    """Consumption is delivery (G1): a sample the caller was shown, even in part, is not handed
    out again in its namespace; it is stored whole for other namespaces."""
    chat = make_chat()
    stream = chat.astream(PROMPT, config=ns("A"))
    seen = ""
    async for chunk in stream:
        seen += chunk.content
        if seen:
            break
    await stream.aclose()
    assert seen
    nxt = await chat.ainvoke(PROMPT, config=ns("A"))
    assert fake_server.request_count == 2 and not nxt.content.startswith(seen)  # a fresh sample
    other = await chat.ainvoke(PROMPT, config=ns("B"))  # another namespace reuses the whole sample
    assert fake_server.request_count == 2 and other.content.startswith(seen)


def test_an_abandoned_sync_stream_consumed_its_sample(make_chat, fake_server):
    chat = make_chat()
    stream = chat.stream(PROMPT, config=ns("A"))
    seen = ""
    while not seen:
        seen += next(stream).content
    stream.close()
    nxt = chat.invoke(PROMPT, config=ns("A"))
    assert fake_server.request_count == 2 and not nxt.content.startswith(seen)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_streams_that_stop_early_each_get_a_fresh_sample(make_chat, fake_server, mode):
    """Issue 21: four streams in one namespace, each reading two chunks and stopping (what
    self-consistency that stops at the answer does), made 2 upstream calls: samples were handed
    out twice. Now each stream's sample is its own."""
    chat = make_chat()
    heads = []
    for _ in range(4):
        head = ""
        if mode == "sync":
            stream = chat.stream(PROMPT, config=ns("sc"))
            for _, chunk in zip(range(2), stream):
                head += chunk.content
            stream.close()
        else:
            stream = chat.astream(PROMPT, config=ns("sc"))
            count = 0
            async for chunk in stream:
                head += chunk.content
                count += 1
                if count == 2:
                    break
            await stream.aclose()
        heads.append(head)
    assert fake_server.request_count == 4
    assert len(set(heads)) == 4


async def test_a_stream_cancelled_before_any_chunk_takes_nothing(make_chat, fake_server):
    chat = make_chat()
    stream = chat.astream(PROMPT, config=ns("A"))
    await stream.aclose()  # never read
    first = await chat.ainvoke(PROMPT, config=ns("A"))
    assert sample_no(first) == 1 and fake_server.request_count == 1


async def test_merged_streams_get_distinct_replayed_samples(make_chat, fake_server):
    chat = make_chat(batch_size=2, batch_timeout=1.0)

    async def consume(rid):
        return join([c async for c in chat.astream(PROMPT, config=ns("A", rid))])

    a, b = await asyncio.gather(consume("r1"), consume("r2"))
    assert fake_server.request_count == 1 and fake_server.requests[0]["n"] == 2
    assert not fake_server.requests[0].get("stream")  # n > 1 is never streamed
    assert sample_no(a) != sample_no(b)
    assert a.usage_metadata["input_tokens"] + b.usage_metadata["input_tokens"] == fake_server.prompt_tokens


async def test_stream_and_invoke_of_two_namespaces_share_one_live_call(make_chat, fake_server):
    chat = make_chat(batch_size=2, batch_timeout=1.0)

    async def stream():
        return [c async for c in chat.astream(PROMPT, config=ns("A", "r1"))]

    chunks, message = await asyncio.gather(stream(), chat.ainvoke(PROMPT, config=ns("B", "r2")))
    assert fake_server.request_count == 1 and fake_server.requests[0].get("stream") is True
    assert join(chunks).content == message.content
    assert message.response_metadata["cachesaver"]["duplicated"] is True


async def test_astream_events_carry_the_namespace(make_chat, fake_server):
    chat = make_chat()
    await chat.ainvoke(PROMPT, config=ns("A"))
    events = [e async for e in chat.astream_events(PROMPT, config=ns("B"), version="v2")]
    assert fake_server.request_count == 1  # namespace B replays A's sample
    streamed = [e for e in events if e["event"] == "on_chat_model_stream"]
    assert len(streamed) >= 2
    end = next(e for e in events if e["event"] == "on_chat_model_end")
    assert end["data"]["output"].response_metadata["cachesaver"]["namespace"] == "B"
