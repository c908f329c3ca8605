"""The proxy validates before it pays (issue 22, item 5), through the real LiteLLM Proxy.

Before: a namespace that is not latin-1 (``实验``, an emoji) or holds CR/LF/NUL was admitted,
paid upstream, took a ledger position and then failed (HTTP 500 ``'latin-1' codec``, or a dropped
connection), and the OpenAI SDK's two retries paid twice more; ``temperature: NaN`` was a 500.
Now any Unicode name works (its ``x-cachesaver-*`` response headers percent-encoded), control
characters and non-finite numbers are a 400 naming the field, and nothing reaches the upstream.
"""
from __future__ import annotations

from urllib.parse import quote, unquote

import httpx
import pytest

from _proxy_helpers import MASTER_KEY, MODEL, requires_proxy, unique_prompt, upstream_requests

pytestmark = requires_proxy


def _post(proxy, body, **headers) -> httpx.Response:
    """Raw HTTP; ``body`` as text when it must hold what JSON encoders refuse (NaN)."""
    content = body if isinstance(body, str) else httpx.Request("POST", "/", json=body).content
    return httpx.post(f"{proxy.base_url}/v1/chat/completions", content=content, timeout=60,
                      headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json",
                               **headers})


def _body(prompt: str, namespace: str | None = None, request_id: str | None = None) -> dict:
    metadata = {}
    if namespace is not None:
        metadata["cachesaver_namespace"] = namespace
    if request_id is not None:
        metadata["cachesaver_request_id"] = request_id
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "temperature": 0.7}
    return {**body, "metadata": metadata} if metadata else body


def _text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_unicode_namespaces_work_by_body_and_by_percent_encoded_header(proxy, upstream):
    prompt = unique_prompt("unicode")
    # 实验 by body metadata, then by header: one namespace, so samples 0 then 1 (two upstream calls)
    first = _post(proxy, _body(prompt, "实验", "r-实验-1"))
    second = _post(proxy, _body(prompt), **{"x-cachesaver-namespace": quote("实验"),
                                            "x-cachesaver-request-id": quote("r-实验-2")})
    s0, s1 = _text(first), _text(second)
    assert s0 != s1 and "[sample 1 of" in s0 and "[sample 2 of" in s1
    assert first.headers["x-cachesaver-namespace"] == second.headers["x-cachesaver-namespace"] == "%E5%AE%9E%E9%AA%8C"
    assert unquote(first.headers["x-cachesaver-namespace"]) == "实验"
    assert unquote(first.headers["x-cachesaver-request-id"]) == "r-实验-1"
    assert unquote(second.headers["x-cachesaver-request-id"]) == "r-实验-2"
    assert [first.headers["x-cachesaver-cache-hit"], second.headers["x-cachesaver-cache-hit"]] == ["false", "false"]
    assert len(upstream_requests(upstream, prompt)) == 2

    # an emoji namespace is another namespace: samples 0 and 1 again, both from the store
    third = _post(proxy, _body(prompt, "🧪"))
    fourth = _post(proxy, _body(prompt), **{"x-cachesaver-namespace": quote("🧪")})
    assert [_text(third), _text(fourth)] == [s0, s1]
    assert [third.headers["x-cachesaver-cache-hit"], fourth.headers["x-cachesaver-cache-hit"]] == ["true", "true"]
    assert unquote(third.headers["x-cachesaver-namespace"]) == unquote(fourth.headers["x-cachesaver-namespace"]) == "🧪"
    assert len(upstream_requests(upstream, prompt)) == 2

    # plain ASCII names look as they did (a space inside too); a literal % is %25 both ways
    plain = _post(proxy, _body(prompt, "arm one", "q-1"))
    assert plain.headers["x-cachesaver-namespace"] == "arm one" and plain.headers["x-cachesaver-request-id"] == "q-1"
    percent = _post(proxy, _body(prompt), **{"x-cachesaver-namespace": "50%25"})
    assert percent.headers["x-cachesaver-namespace"] == "50%25"
    assert [_text(plain), _text(percent)] == [s0, s0]  # two more fresh namespaces: sample 0 each
    assert len(upstream_requests(upstream, prompt)) == 2


CONTROL = ["a\r\nb", "a\nb", "a\x00b", "tab\there", "c1\x85"]


def test_control_characters_in_names_are_a_400_with_nothing_paid_or_consumed(proxy, upstream):
    prompt = unique_prompt("control")
    paid = _text(_post(proxy, _body(prompt, "W")))  # sample 0 exists; namespace V has not used it
    assert len(upstream_requests(upstream, prompt)) == 1

    refused = []
    for bad in CONTROL:
        refused.append((_post(proxy, _body(prompt, bad)), "cachesaver_namespace"))
        refused.append((_post(proxy, _body(prompt, "V", f"r-{bad}")), "cachesaver_request_id"))
    for bad in ("a%0D%0Ab", "a%00b"):
        refused.append((_post(proxy, _body(prompt), **{"x-cachesaver-namespace": bad}), "x-cachesaver-namespace"))
        refused.append((_post(proxy, _body(prompt, "V"), **{"x-cachesaver-request-id": bad}),
                        "x-cachesaver-request-id"))
    for response, field in refused:
        assert response.status_code == 400, response.text
        assert field in response.text and "control character" in response.text
    assert len(upstream_requests(upstream, prompt)) == 1  # 0 calls for the refused requests

    # V's requests with bad ids took no position: V's first valid request gets sample 0, free
    again = _post(proxy, _body(prompt, "V"))
    assert _text(again) == paid and again.headers["x-cachesaver-cache-hit"] == "true"
    assert len(upstream_requests(upstream, prompt)) == 1


@pytest.mark.parametrize("raw, path", [
    ('"temperature": NaN', "temperature"),
    ('"temperature": Infinity', "temperature"),
    ('"logit_bias": {"50256": -Infinity}', "logit_bias.50256"),
    ('"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"maximum": NaN}}}',
     "response_format.json_schema.schema.maximum"),
])
def test_nan_and_infinity_are_a_400_naming_the_parameter(proxy, upstream, raw, path):
    prompt = unique_prompt("nan")
    body = f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "{prompt}"}}], {raw}}}'
    response = _post(proxy, body, **{"x-cachesaver-namespace": "N"})
    assert response.status_code == 400, response.text
    assert path in response.text and "finite" in response.text
    assert upstream_requests(upstream, prompt) == []
