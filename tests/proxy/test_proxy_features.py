"""Streaming, tools, ``response_format`` and the proxy's own cost accounting, through the proxy.

A streamed hit replays as SSE chunks; tool calls and JSON-schema answers replay exactly; the
proxy's cost header and its logged ``response_cost`` (what its spend tracking writes) are zero
for a full hit and the real price of what was generated otherwise.
"""
from __future__ import annotations

import json
import time

import httpx
import litellm
import pytest

from _proxy_helpers import MASTER_KEY, MODEL, requires_proxy, unique_prompt, upstream_requests

pytestmark = requires_proxy


def _ns(namespace: str) -> dict:
    return {"metadata": {"cachesaver_namespace": namespace}}


def _stream_text(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def test_a_streamed_hit_replays_as_sse_chunks(client, aclient, proxy, upstream):
    prompt = unique_prompt("stream")
    messages = [{"role": "user", "content": prompt}]
    tag = prompt[7:17]
    S1, S2, S3, S4 = (f"{name}-{tag}" for name in ("S1", "S2", "S3", "S4"))

    # a miss, streamed (sync client): streamed live from upstream, stored whole
    with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=messages, temperature=0.7, stream=True, extra_body=_ns(S1)) as response:
        assert response.headers["x-cachesaver-cache-hit"] == "false"
        text = _stream_text(list(response.parse()))
    assert text.startswith("The ") and "[sample " in text

    # the same sample, not streamed, in another namespace
    plain = client.chat.completions.create(model=MODEL, messages=messages, temperature=0.7, extra_body=_ns(S2))
    assert plain.choices[0].message.content == text

    # a hit as raw SSE: data: lines, a finish_reason, [DONE]
    body = {"model": MODEL, "messages": messages, "temperature": 0.7, "stream": True, **_ns(S3)}
    with httpx.stream("POST", f"{proxy.base_url}/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {MASTER_KEY}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-cachesaver-cache-hit"] == "true"
        events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == text
    assert [c["choices"][0].get("finish_reason") for c in chunks if c["choices"]][-1] == "stop"

    # async streaming client, another namespace: the same sample again
    stream = await aclient.chat.completions.create(model=MODEL, messages=messages, temperature=0.7, stream=True,
                                                   extra_body=_ns(S4))
    assert _stream_text([c async for c in stream]) == text

    sent = upstream_requests(upstream, prompt)
    assert len(sent) == 1 and sent[0].get("stream") is True  # generated once, streamed live to S1

    # S1 asks again, streamed: a fresh sample
    again = client.chat.completions.create(model=MODEL, messages=messages, temperature=0.7, stream=True,
                                           extra_body=_ns(S1))
    assert _stream_text(list(again)) not in ("", text)
    assert len(upstream_requests(upstream, prompt)) == 2

    # the proxy's logged spend of the streams: zero for the streamed hits, the price otherwise
    [first_miss, second_miss] = _records_for(proxy, S1, 2)
    assert first_miss["response_cost"] > 0 and second_miss["response_cost"] > 0
    for namespace in (S3, S4):
        [row] = _records_for(proxy, namespace, 1)
        assert row["cached"] == [True] and row["cache_hit"] is True and row["response_cost"] == 0.0, str(row)


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_tool_calls_replay_exactly_and_tools_are_part_of_the_key(client, upstream):
    prompt = unique_prompt("tools")
    messages = [{"role": "user", "content": prompt}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, tool_choice="auto",
                                           extra_body=_ns("T1"))
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"

    replay = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, tools=TOOLS,
                                                              tool_choice="auto", extra_body=_ns("T2"))
    assert replay.headers["x-cachesaver-cache-hit"] == "true"
    again = replay.parse().choices[0].message.tool_calls[0]
    assert (again.id, again.function.name, again.function.arguments) == (call.id, call.function.name,
                                                                          call.function.arguments)
    # streamed replay: the tool call arrives in chunks with the same id and arguments
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, tool_choice="auto",
                                                 stream=True, extra_body=_ns("T3")))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == call.id
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    assert len(upstream_requests(upstream, prompt)) == 1
    assert upstream_requests(upstream, prompt)[0]["tools"][0]["function"]["name"] == "get_weather"

    # other tools, other distribution: a new key, a new upstream call
    other = [{**TOOLS[0], "function": {**TOOLS[0]["function"], "name": "get_time"}}]
    client.chat.completions.create(model=MODEL, messages=messages, tools=other, extra_body=_ns("T2"))
    assert len(upstream_requests(upstream, prompt)) == 2


def test_response_format_replays_and_is_part_of_the_key(client, upstream):
    prompt = unique_prompt("json")
    messages = [{"role": "user", "content": prompt}]
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
        "type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["answer", "score"], "additionalProperties": False}}}
    first = client.chat.completions.create(model=MODEL, messages=messages, response_format=fmt,
                                           extra_body=_ns("R1"))
    parsed = json.loads(first.choices[0].message.content)
    assert set(parsed) == {"answer", "score"}
    hit = client.chat.completions.create(model=MODEL, messages=messages, response_format=fmt, extra_body=_ns("R2"))
    assert hit.choices[0].message.content == first.choices[0].message.content
    assert upstream_requests(upstream, prompt)[0]["response_format"]["type"] == "json_schema"
    assert len(upstream_requests(upstream, prompt)) == 1
    # without response_format: another key (R2 has not used it), so the upstream is asked
    plain = client.chat.completions.create(model=MODEL, messages=messages, extra_body=_ns("R2"))
    assert plain.choices[0].message.content != first.choices[0].message.content
    assert len(upstream_requests(upstream, prompt)) == 2


def _price(prompt_tokens: int, completion_tokens: int) -> float:
    prompt_cost, completion_cost = litellm.cost_per_token(model=f"openai/{MODEL}", prompt_tokens=prompt_tokens,
                                                          completion_tokens=completion_tokens)
    return prompt_cost + completion_cost


def _records_for(proxy, namespace: str, count: int, timeout: float = 20.0) -> list[dict]:
    """The proxy's logged calls (its success callbacks run after the response) for a namespace."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in proxy.records() if r["namespace"] == namespace and r["event"] == "success"]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_the_proxys_accounting_sees_zero_for_hits_and_the_real_price_for_what_was_generated(
        client, proxy, upstream):
    prompt = unique_prompt("spend")
    messages = [{"role": "user", "content": prompt}]
    namespace_miss, namespace_hit, namespace_part = (f"{tag}-{prompt[6:16]}" for tag in ("P1", "P2", "P3"))

    before = upstream.completion_tokens
    miss = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0.7,
                                                            extra_body=_ns(namespace_miss))
    usage = miss.parse().usage
    assert upstream.completion_tokens - before == usage.completion_tokens
    real = _price(usage.prompt_tokens, usage.completion_tokens)
    assert real > 0
    assert float(miss.headers["x-litellm-response-cost"]) == pytest.approx(real)

    hit = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0.7,
                                                           extra_body=_ns(namespace_hit))
    assert hit.headers["x-cachesaver-cache-hit"] == "true"
    assert float(hit.headers["x-litellm-response-cost"]) == 0.0

    # partial hit (n=2 in a third namespace: one stored, one generated): billed the new one only
    before = upstream.completion_tokens
    partial = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0.7,
                                                               n=2, extra_body=_ns(namespace_part))
    generated = upstream.completion_tokens - before
    assert partial.headers["x-cachesaver-cached"] == "1,0"
    partial_cost = float(partial.headers["x-litellm-response-cost"])
    assert partial_cost == pytest.approx(_price(usage.prompt_tokens, generated))

    # what the proxy logged (its spend logs are written from these values)
    [miss_row] = _records_for(proxy, namespace_miss, 1)
    assert miss_row["response_cost"] == pytest.approx(real) and not miss_row["cache_hit"]
    [full] = _records_for(proxy, namespace_hit, 1)
    [part] = _records_for(proxy, namespace_part, 1)
    assert full["cached"] == [True] and full["cache_hit"] is True and full["response_cost"] == 0.0
    assert part["cached"] == [True, False] and part["response_cost"] == pytest.approx(partial_cost)
    assert full["model_group"] == MODEL


@pytest.mark.parametrize("a,b", [
    ({"allowed_token_ids": [1, 2]}, {"allowed_token_ids": [3, 4]}),
    ({"stop": ["sk-learnmodel"]}, {"stop": ["sk-othermodel"]}),
    ({"tools": [{"type": "function", "function": {"name": "calc", "description": "Basic arithmetic calculator",
                                                  "parameters": {"type": "object", "properties": {}}}}]},
     {"tools": [{"type": "function", "function": {"name": "calc", "description": "Basic statistics calculator",
                                                  "parameters": {"type": "object", "properties": {}}}}]}),
], ids=["extra_body token ids", "stop sk-", "Basic description"])
def test_content_that_looks_like_a_credential_is_keyed_through_the_proxy(client, upstream, a, b):
    """Issue 20 through the proxy: B differs from A only in credential-looking content, and
    reaches the model (before key policy 2 it was answered with A's sample)."""
    prompt = unique_prompt("keypolicy")
    messages = [{"role": "user", "content": prompt}]
    client.chat.completions.create(model=MODEL, messages=messages, extra_body={**_ns("K1"), **a})
    client.chat.completions.create(model=MODEL, messages=messages, extra_body={**_ns("K2"), **b})
    sent = upstream_requests(upstream, prompt)
    assert len(sent) == 2, "B was answered from A's sample"
    for name, value in b.items():
        assert sent[-1][name] == value


def test_a_client_that_disconnects_mid_stream_consumed_its_sample(proxy, upstream):
    """Consumption is delivery (G1, issue 21): a client that read two chunks and hung up was
    shown its sample; the next request of its namespace gets a fresh one."""
    prompt = unique_prompt("disconnect")
    messages = [{"role": "user", "content": prompt}]
    body = {"model": MODEL, "messages": messages, "stream": True, **_ns("D1")}
    seen = []
    with httpx.stream("POST", f"{proxy.base_url}/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {MASTER_KEY}"}) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                seen.append(json.loads(line[len("data: "):]))
            if len(seen) == 2:
                break  # leaving the block closes the connection
    head = "".join(c["choices"][0]["delta"].get("content") or "" for c in seen if c["choices"])
    assert head
    nxt = httpx.post(f"{proxy.base_url}/v1/chat/completions", timeout=60,
                     json={"model": MODEL, "messages": messages, **_ns("D1")},
                     headers={"Authorization": f"Bearer {MASTER_KEY}"}).json()
    assert not nxt["choices"][0]["message"]["content"].startswith(head)
    assert len(upstream_requests(upstream, prompt)) == 2
