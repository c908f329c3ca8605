"""Tests for the fake OpenAI-compatible server, through real clients over real HTTP.

The server is the ground truth for every cache test (it counts what was really asked),
so it is checked here with the same clients the adapters use: the ``openai`` SDK
(httpx), ``litellm.acompletion`` (aiohttp transport by default) and ``ChatOpenAI``.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Optional

import httpx
import litellm
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from cachesaver.testing.server import FakeOpenAIServer, _instance

MODEL = "fake-model"
MSG = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def server():
    with FakeOpenAIServer(seed=7) as srv:
        yield srv


def sync_client(srv: FakeOpenAIServer, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=retries)


def expected_prompt_tokens(messages: list[dict]) -> int:
    return sum(len(m["content"].split()) + 3 for m in messages)


# --------------------------------------------------------------------------- basics


def test_n_choices_distinct_traceable_and_counted(server):
    with sync_client(server) as client:
        resp = client.chat.completions.create(model=MODEL, messages=MSG, n=3, temperature=1.0)
    contents = [c.message.content for c in resp.choices]
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert len(set(contents)) == 3
    assert [c.endswith(f"[sample {k} of {MODEL}]") for k, c in enumerate(contents, 1)] == [True] * 3
    assert all(c.finish_reason == "stop" for c in resp.choices)
    assert resp.id.startswith("chatcmpl-fake-") and resp.system_fingerprint == "fake"
    assert resp.model == MODEL and resp.object == "chat.completion" and resp.created > 0

    assert server.request_count == 1 and server.n_asked == 3 and server.samples_generated == 3
    assert resp.usage.prompt_tokens == expected_prompt_tokens(MSG) == server.prompt_tokens
    assert resp.usage.completion_tokens == sum(len(c.split()) for c in contents)
    assert resp.usage.completion_tokens == server.completion_tokens
    assert resp.usage.total_tokens == server.prompt_tokens + server.completion_tokens

    assert server.requests[0]["n"] == 3 and server.requests[0]["messages"] == MSG
    assert "sk-test" not in json.dumps(server.requests)


def test_content_is_deterministic_in_seed_prompt_and_sample_number():
    def first_two(seed: int) -> list[str]:
        with FakeOpenAIServer(seed=seed) as srv, sync_client(srv) as client:
            resp = client.chat.completions.create(model=MODEL, messages=MSG, n=2)
            return [c.message.content for c in resp.choices]

    assert first_two(1) == first_two(1)
    assert first_two(1) != first_two(2)


def _texts_by_prompt(order: list[tuple[str, int]], seed: int = 3, **params) -> dict[str, list[str]]:
    """Ask a fresh server for ``n`` samples of each prompt in ``order``; texts per prompt."""
    out: dict[str, list[str]] = {}
    with FakeOpenAIServer(seed=seed) as srv, sync_client(srv) as client:
        for prompt, n in order:
            resp = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": prompt}], n=n, **params)
            out.setdefault(prompt, []).extend(c.message.content for c in resp.choices)
    return out


def test_sample_k_of_a_prompt_is_the_same_whatever_else_arrived_before():
    # Sample k of a prompt is a pure function of (seed, prompt, k): other prompts arriving in
    # between, in any order, and how the k samples were split over requests change nothing.
    one = _texts_by_prompt([("prompt A", 3), ("prompt B", 2)])
    two = _texts_by_prompt([("prompt B", 1), ("prompt A", 1), ("prompt B", 1), ("prompt A", 2)])
    assert one == two
    for prompt in ("prompt A", "prompt B"):
        assert [t.rsplit(" [", 1)[1] for t in one[prompt]] == [
            f"sample {k} of {MODEL}]" for k in range(1, len(one[prompt]) + 1)]
    assert len(set(one["prompt A"])) == 3
    # A sampling parameter is part of the prompt's identity (as in a cache key): own numbering.
    hot = _texts_by_prompt([("prompt A", 3)], temperature=1.5)
    assert hot["prompt A"] != one["prompt A"] and hot["prompt A"][0].endswith(f"[sample 1 of {MODEL}]")


async def test_concurrent_prompts_get_the_same_texts_as_sequential_ones():
    prompts = [f"question {i}" for i in range(12)]
    sequential = _texts_by_prompt([(p, 2) for p in prompts])
    with FakeOpenAIServer(seed=3) as srv:
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0) as c:
            resps = await asyncio.gather(*(
                c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": p}], n=2)
                for p in reversed(prompts)))
    concurrent = {p: [ch.message.content for ch in r.choices] for p, r in zip(reversed(prompts), resps)}
    assert concurrent == sequential


def test_answers_pool_recurs_but_samples_stay_distinct():
    with FakeOpenAIServer(answers=["Paris", "Lyon"]) as srv, sync_client(srv) as client:
        resp = client.chat.completions.create(model=MODEL, messages=MSG, n=8)
    contents = [c.message.content for c in resp.choices]
    assert len(set(contents)) == 8
    answers = {c.split(" [sample")[0] for c in contents}
    assert answers <= {"Paris", "Lyon"}


def test_sample_numbers_unique_across_reset_counters(server):
    with sync_client(server) as client:
        first = client.chat.completions.create(model=MODEL, messages=MSG).choices[0].message.content
        server.reset_counters()
        assert (server.request_count, server.n_asked, server.requests) == (0, 0, [])
        second = client.chat.completions.create(model=MODEL, messages=MSG)
    assert second.choices[0].message.content != first
    assert "[sample 2 of" in second.choices[0].message.content
    assert server.request_count == 1 and server.samples_generated == 1


async def test_concurrent_async_requests_are_all_distinct(server):
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as c:
        resps = await asyncio.gather(
            *[c.chat.completions.create(model=MODEL, messages=MSG, n=2) for _ in range(10)]
        )
    contents = [ch.message.content for r in resps for ch in r.choices]
    assert len(set(contents)) == 20 and len({r.id for r in resps}) == 10
    assert server.request_count == 10 and server.n_asked == 20 and server.samples_generated == 20
    assert server.completion_tokens == sum(r.usage.completion_tokens for r in resps)


def test_models_endpoint_paths_and_404(server):
    with sync_client(server) as client:
        assert [m.id for m in client.models.list().data] == [MODEL]
    root = server.base_url.removesuffix("/v1")
    req = urllib.request.Request(
        f"{root}/chat/completions",
        data=json.dumps({"model": MODEL, "messages": MSG}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.load(resp)["choices"][0]["message"]["role"] == "assistant"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{root}/v1/nope", timeout=5)
    assert err.value.code == 404 and "error" in json.load(err.value)


# --------------------------------------------------------------------------- streaming


async def test_streaming_with_usage_reassembles_each_choice(server):
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as c:
        stream = await c.chat.completions.create(
            model=MODEL, messages=MSG, n=2, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    texts = {0: "", 1: ""}
    finishes = {}
    for chunk in chunks:
        for ch in chunk.choices:
            texts[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finishes[ch.index] = ch.finish_reason
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) >= 6
    assert texts[0].endswith("[sample 1 of fake-model]")
    assert texts[1].endswith("[sample 2 of fake-model]")
    assert finishes == {0: "stop", 1: "stop"}
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == sum(len(t.split()) for t in texts.values())
    assert last.usage.prompt_tokens == server.prompt_tokens
    assert last.usage.completion_tokens == server.completion_tokens
    assert server.n_asked == 2 and server.samples_generated == 2


async def test_litellm_acompletion_plain_and_streaming(server):
    kw = dict(model="openai/fake-model", api_base=server.base_url, api_key="sk-test")
    resp = await litellm.acompletion(messages=MSG, n=2, **kw)
    contents = [c.message.content for c in resp.choices]
    assert len(set(contents)) == 2 and resp.usage.total_tokens > 0

    stream = await litellm.acompletion(
        messages=MSG, stream=True, stream_options={"include_usage": True}, **kw
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = getattr(chunk, "usage", None) or usage
    assert text.endswith("[sample 3 of fake-model]")
    assert usage is not None and usage.completion_tokens == len(text.split())
    assert server.request_count == 2 and server.n_asked == 3 and server.samples_generated == 3
    assert server.requests[0]["model"] == MODEL


def test_chatopenai_invoke_and_stream(server):
    llm = ChatOpenAI(base_url=server.base_url, api_key="sk-test", model=MODEL, max_retries=0)
    first = llm.invoke("hello").content
    streamed = "".join(chunk.content for chunk in llm.stream("hello"))
    assert first.endswith("[sample 1 of fake-model]")
    assert streamed.endswith("[sample 2 of fake-model]")
    assert server.request_count == 2 and server.samples_generated == 2


async def test_cut_stream_raises_in_clients_and_next_request_succeeds(server):
    server.cut_stream_next(2)
    with sync_client(server) as client:
        # Non-streaming requests are not affected by a pending cut.
        assert client.chat.completions.create(model=MODEL, messages=MSG).choices
        with pytest.raises(openai.APIConnectionError):
            for _ in client.chat.completions.create(model=MODEL, messages=MSG, stream=True):
                pass
    with pytest.raises(Exception):
        stream = await litellm.acompletion(
            model="openai/fake-model", api_base=server.base_url, api_key="sk-test",
            messages=MSG, stream=True, num_retries=0,
        )
        async for _ in stream:
            pass
    with sync_client(server) as client:
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model=MODEL, messages=MSG, stream=True)
        )
    assert "[sample" in text
    # Cut streams are received but not billed.
    assert server.request_count == 4 and server.n_asked == 2 and server.samples_generated == 2


def test_client_disconnect_mid_stream_is_quiet(server, capfd):
    body = {"model": MODEL, "messages": MSG, "n": 400, "stream": True}
    with httpx.Client() as client:
        with client.stream("POST", f"{server.base_url}/chat/completions", json=body) as resp:
            next(resp.iter_lines())
    time.sleep(0.2)
    with sync_client(server) as c:
        assert c.chat.completions.create(model=MODEL, messages=MSG).choices
    assert capfd.readouterr().err == ""


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("status", "exc"), [(429, openai.RateLimitError), (500, openai.InternalServerError)]
)
def test_injected_http_errors(server, status, exc):
    server.fail_next(status)
    with sync_client(server) as client:
        with pytest.raises(exc) as err:
            client.chat.completions.create(model=MODEL, messages=MSG)
        if status == 429:
            assert err.value.response.headers["retry-after"] == "0"
        assert "Injected failure" in str(err.value)
        assert client.chat.completions.create(model=MODEL, messages=MSG).choices
    assert server.request_count == 2 and server.n_asked == 1 and server.samples_generated == 1


def test_fail_count_custom_body_and_client_retry(server):
    server.fail_next(400, body='{"error": {"message": "custom", "type": "invalid_request_error"}}')
    server.fail_next(429)
    with sync_client(server) as client:
        with pytest.raises(openai.BadRequestError, match="custom"):
            client.chat.completions.create(model=MODEL, messages=MSG)
    with sync_client(server, retries=1) as client:  # the SDK retries the 429 once
        assert client.chat.completions.create(model=MODEL, messages=MSG).choices
    assert server.request_count == 3 and server.samples_generated == 1


def test_malformed_and_reset(server):
    server.malformed_next()
    server.reset_next()
    with sync_client(server) as client:
        with pytest.raises(Exception):
            client.chat.completions.create(model=MODEL, messages=MSG)
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model=MODEL, messages=MSG)
        assert client.chat.completions.create(model=MODEL, messages=MSG).choices
    assert server.request_count == 3 and server.n_asked == 1


def test_malformed_stream_raises(server):
    server.malformed_next()
    with sync_client(server) as client, pytest.raises(Exception):
        for _ in client.chat.completions.create(model=MODEL, messages=MSG, stream=True):
            pass


# --------------------------------------------------------------------------- tools


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "detailed": {"type": "boolean"},
                "where": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "tags": {"type": "array"}},
                    "required": ["lat"],
                },
            },
            "required": ["city", "unit"],
        },
    },
}
CALC = {
    "type": "function",
    "function": {
        "name": "calc",
        "parameters": {"type": "object", "properties": {"expr": {"type": "string"}},
                       "required": ["expr"]},
    },
}


def test_tool_calls_have_valid_arguments(server):
    with sync_client(server) as client:
        resp = client.chat.completions.create(
            model=MODEL, messages=MSG, tools=[WEATHER, CALC], n=2
        )
        choice = resp.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        call = choice.message.tool_calls[0]
        args = json.loads(call.function.arguments)
        assert call.function.name == "get_weather" and call.type == "function"
        assert set(args) == {"city", "days", "unit", "detailed", "where"}
        assert args["unit"] == "celsius" and args["detailed"] is True
        assert isinstance(args["days"], int) and args["where"] == {"lat": 1.5, "tags": []}
        ids = {c.message.tool_calls[0].id for c in resp.choices}
        assert len(ids) == 2 and all(i.startswith("call_") for i in ids)

        forced = client.chat.completions.create(
            model=MODEL, messages=MSG, tools=[WEATHER, CALC],
            tool_choice={"type": "function", "function": {"name": "calc"}},
        )
        assert forced.choices[0].message.tool_calls[0].function.name == "calc"

        none = client.chat.completions.create(
            model=MODEL, messages=MSG, tools=[WEATHER], tool_choice="none"
        )
        assert none.choices[0].message.tool_calls is None

        followup = MSG + [
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ]
        final = client.chat.completions.create(model=MODEL, messages=followup, tools=[WEATHER])
        assert final.choices[0].finish_reason == "stop"
        assert "[sample" in final.choices[0].message.content


def test_chatopenai_streamed_tool_call(server):
    llm = ChatOpenAI(base_url=server.base_url, api_key="sk-test", model=MODEL, max_retries=0)
    bound = llm.bind_tools([WEATHER])
    full = None
    for chunk in bound.stream("weather in Paris?"):
        full = chunk if full is None else full + chunk
    (call,) = full.tool_calls
    assert call["name"] == "get_weather" and call["id"].startswith("call_")
    assert {"city", "unit"} <= set(call["args"])
    assert bound.invoke("again").tool_calls[0]["args"]["unit"] == "celsius"


# --------------------------------------------------------------------------- response_format


class Inner(BaseModel):
    score: int
    note: Optional[str] = None


class Answer(BaseModel):
    answer: str
    confidence: float
    inner: Inner
    tags: list[str]


def test_response_format_json_schema_and_json_object(server):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["answer", "n"],
    }
    with sync_client(server) as client:
        resp = client.chat.completions.create(
            model=MODEL, messages=MSG, n=2,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "a", "schema": schema, "strict": True}},
        )
        objs = [json.loads(c.message.content) for c in resp.choices]
        assert all(set(o) == {"answer", "n"} for o in objs)
        assert objs[0] != objs[1] and "[sample 1" in objs[0]["answer"]

        resp = client.chat.completions.create(
            model=MODEL, messages=MSG, response_format={"type": "json_object"}
        )
        assert "[sample" in json.loads(resp.choices[0].message.content)["answer"]


def test_chatopenai_structured_output_with_nested_pydantic(server):
    llm = ChatOpenAI(base_url=server.base_url, api_key="sk-test", model=MODEL, max_retries=0)
    result = llm.with_structured_output(Answer, method="json_schema").invoke("Capital?")
    assert isinstance(result, Answer) and "[sample" in result.answer
    assert isinstance(result.inner.score, int)


def test_schema_instance_handles_refs_unions_and_constraints():
    schema = {
        "$defs": {"P": {"type": "object", "properties": {"x": {"anyOf": [{"type": "null"},
                                                                         {"type": "integer"}]}}}},
        "type": "object",
        "properties": {
            "p": {"$ref": "#/$defs/P"},
            "items": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "k": {"type": "integer", "minimum": 100},
            "c": {"const": "fixed"},
            "when": {"type": "string", "format": "date"},
        },
    }
    inst = _instance(schema, schema, "txt", 5)
    assert inst == {"p": {"x": 5}, "items": ["txt", "txt"], "k": 100, "c": "fixed",
                    "when": "2024-01-01"}


# --------------------------------------------------------------------------- timing


def test_latency_is_honoured_and_settable(server):
    server.latency = 0.3
    with sync_client(server) as client:
        t0 = time.perf_counter()
        client.chat.completions.create(model=MODEL, messages=MSG)
        assert time.perf_counter() - t0 >= 0.3
        server.latency = 0.0
        t0 = time.perf_counter()
        client.chat.completions.create(model=MODEL, messages=MSG)
        assert time.perf_counter() - t0 < 0.3


def test_stop_is_fast_with_keepalive_and_inflight_requests():
    srv = FakeOpenAIServer(latency=5.0).start()
    client = httpx.Client()
    srv.latency = 0.0
    assert client.get(f"{srv.base_url}/models").status_code == 200  # leaves a keep-alive conn
    srv.latency = 5.0
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            client.post(f"{srv.base_url}/chat/completions",
                        json={"model": MODEL, "messages": MSG}, timeout=10)
        except BaseException as exc:  # the request is dropped by stop()
            errors.append(exc)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    srv.stop()
    assert time.perf_counter() - t0 < 1.0
    t.join(timeout=2)
    assert not t.is_alive() and errors
    srv.stop()  # idempotent
    client.close()


def test_a_burst_of_connections_is_queued_while_the_server_is_busy_accepting():
    """64 clients connecting at once while the server has not accepted any yet (a loaded
    machine) all get through the handshake, as with a production server's backlog. With
    ``ThreadingHTTPServer``'s default backlog of 5, the rest waited on SYN retries and some
    tests' bursts of 64 calls saw "Connection reset by peer" under load."""
    import socket

    from cachesaver.testing.server import _HTTPServer

    httpd = _HTTPServer(("127.0.0.1", 0), owner=None)  # listening, accepting nothing yet
    clients = []
    try:
        port = httpd.server_address[1]
        refused = 0
        for _ in range(64):
            client = socket.socket()
            client.settimeout(0.3)
            clients.append(client)
            try:
                client.connect(("127.0.0.1", port))
            except OSError:
                refused += 1
        assert refused == 0
    finally:
        for client in clients:
            client.close()
        httpd.server_close()
