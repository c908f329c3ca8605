"""Namespaces over HTTP through the real LiteLLM Proxy: body metadata, headers, n, merging.

The proxy runs ``examples/proxy/config.yaml``; its upstream is the fake OpenAI server, whose
request log shows exactly what the proxy asked for. Every test uses its own prompt.
"""
from __future__ import annotations

import asyncio

import httpx
import litellm
import pytest

from _proxy_helpers import MASTER_KEY, MODEL, requires_proxy, unique_prompt, upstream_requests

pytestmark = requires_proxy


def _ns(namespace: str) -> dict:
    return {"metadata": {"cachesaver_namespace": namespace}}


def _post(proxy, body: dict, **headers) -> httpx.Response:
    """Raw HTTP: what a client in any language sends (namespace in the x-cachesaver-* headers)."""
    return httpx.post(f"{proxy.base_url}/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {MASTER_KEY}", **headers})


def test_fresh_within_a_namespace_free_across_namespaces(client, proxy, upstream):
    prompt = unique_prompt("namespaces")
    messages = [{"role": "user", "content": prompt}]

    # namespace A, three asks at temperature 0.7: three different samples, three upstream calls
    a = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, temperature=0.7, extra_body=_ns("A"))
        a.append(raw.parse().choices[0].message.content)
        assert raw.headers["x-cachesaver-cache-hit"] == "false"
        assert raw.headers["x-cachesaver-cached"] == "0"
        assert float(raw.headers["x-litellm-response-cost"]) > 0
    assert len(set(a)) == 3
    sent = upstream_requests(upstream, prompt)
    assert len(sent) == 3 and all(body.get("n", 1) == 1 for body in sent)
    assert all(body["temperature"] == 0.7 for body in sent)

    # namespace B by header (raw HTTP): the same three, in order, nothing sent upstream, zero cost
    b = []
    for i in range(3):
        response = _post(proxy, {"model": MODEL, "messages": messages, "temperature": 0.7},
                         **{"x-cachesaver-namespace": "B", "x-cachesaver-request-id": f"b-{i}"})
        assert response.status_code == 200, response.text
        b.append(response.json()["choices"][0]["message"]["content"])
        assert response.headers["x-cachesaver-cache-hit"] == "true"
        assert response.headers["x-cachesaver-namespace"] == "B"
        assert response.headers["x-cachesaver-request-id"] == f"b-{i}"
        assert float(response.headers["x-litellm-response-cost"]) == 0.0
        assert len(response.headers["x-litellm-cache-key"]) == 64
    assert b == a
    assert len(upstream_requests(upstream, prompt)) == 3

    # a fresh namespace C asks n=4: the three stored plus one new; upstream asked for n=1 only
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, temperature=0.7, n=4, extra_body=_ns("C"))
    contents = [choice.message.content for choice in raw.parse().choices]
    assert contents[:3] == a and contents[3] not in a
    assert raw.headers["x-cachesaver-cache-hit"] == "partial"
    assert raw.headers["x-cachesaver-cached"] == "1,1,1,0"
    sent = upstream_requests(upstream, prompt)
    assert len(sent) == 4 and sent[-1].get("n", 1) == 1

    # B asks n=2 next: its 4th sample is C's new one (stored), its 5th is generated (n=1)
    more = client.chat.completions.create(model=MODEL, messages=messages, temperature=0.7, n=2,
                                          extra_body=_ns("B"))
    assert more.choices[0].message.content == contents[3]
    assert more.choices[1].message.content not in contents
    sent = upstream_requests(upstream, prompt)
    assert len(sent) == 5 and sent[-1].get("n", 1) == 1


def test_body_metadata_wins_over_the_header(proxy, upstream):
    prompt = unique_prompt("precedence")
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "temperature": 0.7}
    first = _post(proxy, {**body, **_ns("body-ns")}, **{"x-cachesaver-namespace": "header-ns"})
    assert first.headers["x-cachesaver-namespace"] == "body-ns"
    # header-ns has not used the sample yet: it gets it for free
    second = _post(proxy, body, **{"x-cachesaver-namespace": "header-ns"})
    assert second.headers["x-cachesaver-cache-hit"] == "true"
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert len(upstream_requests(upstream, prompt)) == 1


def test_a_refused_namespace_is_a_400_naming_the_field(proxy, upstream):
    prompt = unique_prompt("bad-header")
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
    response = _post(proxy, body, **{"x-cachesaver-namespace": "n" * 600})
    assert response.status_code == 400, response.text
    assert "x-cachesaver-namespace" in response.text and "512" in response.text
    response = _post(proxy, {**body, "metadata": {"cachesaver_namespace": ""}})
    assert response.status_code == 400, response.text
    assert "cachesaver_namespace" in response.text
    assert upstream_requests(upstream, prompt) == []


def test_n_above_the_limit_is_a_400_before_any_upstream_call(proxy, upstream):
    """Issue 22, item 4: any client can send n=300; it is refused, nothing is paid."""
    prompt = unique_prompt("big-n")
    response = _post(proxy, {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "n": 300})
    assert response.status_code == 400, response.text
    assert "limit of 128" in response.text and "CACHESAVER_MAX_N" in response.text  # how the operator raises it
    assert upstream_requests(upstream, prompt) == []


async def test_concurrent_identical_requests_become_one_upstream_call(aclient, upstream):
    prompt = unique_prompt("merge")
    messages = [{"role": "user", "content": prompt}]

    async def ask():
        raw = await aclient.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, temperature=0.7, extra_body=_ns("M"))
        return raw.parse().choices[0].message.content, raw.headers

    tokens_before, prompt_before = upstream.completion_tokens, upstream.prompt_tokens
    results = await asyncio.gather(*(ask() for _ in range(5)))
    contents = [content for content, _ in results]
    assert len(set(contents)) == 5  # five fresh samples in one namespace
    sent = upstream_requests(upstream, prompt)
    assert len(sent) == 1 and sent[0]["n"] == 5
    # G8: each generated sample billed to exactly one response; four of them rode along (duplicated)
    assert [h["x-cachesaver-cached"] for _, h in results] == ["0"] * 5
    assert sorted(h["x-cachesaver-duplicated"] for _, h in results) == ["0", "1", "1", "1", "1"]
    # the proxy's cost headers add up to the one call's price: its prompt is paid once
    prompt_cost, completion_cost = litellm.cost_per_token(
        model=f"openai/{MODEL}", prompt_tokens=upstream.prompt_tokens - prompt_before,
        completion_tokens=upstream.completion_tokens - tokens_before)
    billed = sum(float(h["x-litellm-response-cost"]) for _, h in results)
    assert billed == pytest.approx(prompt_cost + completion_cost)
