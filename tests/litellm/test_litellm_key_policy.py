"""Issue 20: two requests share samples only when the model would see the same thing.

Every pair below differs only in content that *looks* like a credential (a name containing
``token``/``secret``/``cookie``/``password``, a value starting ``sk-``/``pk_``/``Basic``/``Token``).
Until key policy 2 those values were dropped before hashing, and B silently received A's sample
with 0 upstream requests. Each test asks A then B in two fresh namespaces and asserts that B
reached the model, with B's own content, and got a sample of its own.
"""
from __future__ import annotations

import json

import litellm
import pytest

from cachesaver_litellm import CacheSaverRouter

from _litellm_helpers import MESSAGES, REAL_MODEL, ns


def _tool(name: str, description: str = "Look something up.", properties: dict | None = None) -> dict:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties or {"q": {"type": "string"}}}}}


def _schema_format(password_type: str) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "login", "schema": {
        "type": "object", "properties": {"password": {"type": password_type}}, "required": ["password"]}}}


#: (row of the issue's table, params of A, params of B)
PAIRS = [
    ("extra_body allowed_token_ids", {"extra_body": {"allowed_token_ids": [1, 2]}},
     {"extra_body": {"allowed_token_ids": [3, 4]}}),
    ("extra_body token_budget", {"extra_body": {"token_budget": 100}}, {"extra_body": {"token_budget": 5000}}),
    ("tool property named token",
     {"tools": [_tool("tag", properties={"token": {"type": "string", "enum": ["NOUN", "VERB"]}})]},
     {"tools": [_tool("tag", properties={"token": {"type": "string", "enum": ["PER", "LOC", "ORG"]}})]}),
    ("tool properties cookies / secretion",
     {"tools": [_tool("bake", properties={"cookies": {"type": "integer", "description": "how many cookies"},
                                          "secretion": {"type": "string", "description": "gland output"}})]},
     {"tools": [_tool("bake", properties={"cookies": {"type": "integer", "description": "cookie jar size"},
                                          "secretion": {"type": "string", "description": "enzyme name"}})]}),
    ("tool names pk_... with a forced tool_choice",
     {"tools": [_tool("pk_lookup_orders"), _tool("pk_lookup_customers")],
      "tool_choice": {"type": "function", "function": {"name": "pk_lookup_orders"}}},
     {"tools": [_tool("pk_lookup_orders"), _tool("pk_lookup_customers")],
      "tool_choice": {"type": "function", "function": {"name": "pk_lookup_customers"}}}),
    ("tool description Basic ...", {"tools": [_tool("calc", "Basic arithmetic calculator")]},
     {"tools": [_tool("calc", "Basic statistics calculator")]}),
    ("tool description Token ...", {"tools": [_tool("nlp", "Token classification helper")]},
     {"tools": [_tool("nlp", "Token counting helper")]}),
    ("response_format property password", {"response_format": _schema_format("string")},
     {"response_format": _schema_format("integer")}),
    ("stop sk-...", {"stop": ["sk-learnmodel"]}, {"stop": ["sk-othermodel"]}),
]


def _body_of_last(server) -> dict:
    return server.requests[-1]


def _assert_b_reached_the_model(server, a_params: dict, b_params: dict) -> None:
    assert server.request_count == 2, "B was answered from A's samples"
    body = _body_of_last(server)
    for name, value in b_params.items():
        if name == "extra_body":
            for inner, inner_value in value.items():
                assert body[inner] == inner_value
        else:
            assert json.loads(json.dumps(body[name])) == json.loads(json.dumps(value))


def _answer(response) -> str:
    message = response.choices[0].message
    if message.tool_calls:
        call = message.tool_calls[0]
        return f"{call.function.name}({call.function.arguments})"
    return message.content


@pytest.mark.parametrize("row,a_params,b_params", PAIRS, ids=[p[0] for p in PAIRS])
async def test_provider_keys_content_that_looks_like_a_credential(provider, server, call_kwargs, row, a_params, b_params):
    a = await litellm.acompletion(metadata=ns("a"), **call_kwargs, **a_params)
    b = await litellm.acompletion(metadata=ns("b"), **call_kwargs, **b_params)
    _assert_b_reached_the_model(server, a_params, b_params)
    assert a._hidden_params["cachesaver"]["key"] != b._hidden_params["cachesaver"]["key"]
    assert b._hidden_params["cachesaver"]["cached"] == [False]
    if "tool_choice" in b_params:  # the forced function is the one called, not A's
        assert b.choices[0].message.tool_calls[0].function.name == "pk_lookup_customers"
        assert a.choices[0].message.tool_calls[0].function.name == "pk_lookup_orders"


def test_sync_completion_keys_them_too(provider, server, call_kwargs):
    _, a_params, b_params = PAIRS[0]
    litellm.completion(metadata=ns("a"), **call_kwargs, **a_params)
    litellm.completion(metadata=ns("b"), **call_kwargs, **b_params)
    _assert_b_reached_the_model(server, a_params, b_params)


@pytest.mark.parametrize("row,a_params,b_params", [PAIRS[0], PAIRS[4], PAIRS[5]],
                         ids=[PAIRS[0][0], PAIRS[4][0], PAIRS[5][0]])
async def test_router_with_cachesaver_deployments_keys_them(provider, server, row, a_params, b_params):
    router = litellm.Router(model_list=[{"model_name": "g", "litellm_params": {
        "model": "cachesaver/" + REAL_MODEL, "api_base": server.base_url, "api_key": "sk-router",
        "max_retries": 0}}])
    await router.acompletion(model="g", messages=MESSAGES, metadata=ns("a"), **a_params)
    await router.acompletion(model="g", messages=MESSAGES, metadata=ns("b"), **b_params)
    _assert_b_reached_the_model(server, a_params, b_params)


@pytest.mark.parametrize("row,a_params,b_params", [PAIRS[1], PAIRS[2], PAIRS[7]],
                         ids=[PAIRS[1][0], PAIRS[2][0], PAIRS[7][0]])
async def test_cachesaver_router_keys_them(store_path, server, row, a_params, b_params):
    router = CacheSaverRouter(model_list=[{"model_name": "g", "litellm_params": {
        "model": REAL_MODEL, "api_base": server.base_url, "api_key": "sk-router", "max_retries": 0}}],
        store=store_path, timeout=0.01)
    async with router:
        await router.acompletion(model="g", messages=MESSAGES, metadata=ns("a"), **a_params)
        await router.acompletion(model="g", messages=MESSAGES, metadata=ns("b"), **b_params)
    _assert_b_reached_the_model(server, a_params, b_params)


async def test_the_same_request_still_replays(provider, server, call_kwargs):
    """The other half of the policy: identical content (credential-looking or not) shares samples."""
    _, a_params, _ = PAIRS[4]
    first = await litellm.acompletion(metadata=ns("a"), **call_kwargs, **a_params)
    again = await litellm.acompletion(metadata=ns("b"), **dict(call_kwargs, api_key="sk-another-key"), **a_params)
    assert server.request_count == 1
    assert _answer(again) == _answer(first)
    assert again._hidden_params["cachesaver"]["cached"] == [True]
