"""The key: model, messages and output-shaping params; never metadata, credentials or api_base.

Identity across entry points is shown end to end (one sample list, zero extra requests);
the payload itself is checked on ``build_request``, the function every entry point uses.
"""
from __future__ import annotations

import litellm
import pytest

import cachesaver_litellm
from cachesaver.keys import make_key, request_key
from cachesaver_litellm._provider import build_request

from _litellm_helpers import MESSAGES, ns, sample_ids


def key_of(model="openai/gpt-4o-mini", messages=MESSAGES, optional_params=None, litellm_params=None,
           api_key="sk-1", api_base="http://a/v1", headers=None, timeout=600.0, key_api_base=False) -> str:
    request = build_request(model=model, messages=messages, optional_params=optional_params or {},
                            litellm_params=litellm_params or {}, api_key=api_key, api_base=api_base,
                            headers=headers, timeout=timeout, default_namespace="default",
                            key_api_base=key_api_base)
    return request_key(request)


def test_the_key_payload_is_model_messages_and_params():
    expected = make_key({"prompt": MESSAGES, "model": "openai/gpt-4o-mini", "params": {"temperature": 0.5}})
    assert key_of(optional_params={"temperature": 0.5}) == expected
    assert key_of(model="gpt-4o-mini", optional_params={"temperature": 0.5}) == expected  # provider resolved


def test_transport_metadata_and_credentials_are_not_keyed():
    base = key_of(optional_params={"temperature": 0.5})
    assert key_of(
        optional_params={"temperature": 0.5, "n": 3, "stream": True, "stream_options": {"include_usage": True},
                         "max_retries": 0, "extra_headers": {"x": "1"}, "aws_secret_access_key": "s3cr3t",
                         "vertex_credentials": "{}", "azure_ad_token": "t"},
        litellm_params={"metadata": {"cachesaver_namespace": "x", "trace": "y"}, "litellm_call_id": "z"},
        api_key="sk-other", api_base="http://b/v1", headers={"Authorization": "x"}, timeout=3.0,
    ) == base


def test_output_shaping_params_are_keyed_in_any_dict_order():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    a = key_of(optional_params={"temperature": 0.5, "tools": tools, "seed": 1, "unknown_param": "x"})
    b = key_of(optional_params={"unknown_param": "x", "seed": 1, "tools": tools, "temperature": 0.5})
    assert a == b
    for change in ({"temperature": 0.7}, {"seed": 2}, {"unknown_param": "y"}, {"tools": []}):
        params = {"temperature": 0.5, "tools": tools, "seed": 1, "unknown_param": "x", **change}
        assert key_of(optional_params=params) != a
    messages = [{"content": MESSAGES[0]["content"], "role": "user", "name": None}]
    assert key_of(messages=messages) == key_of()  # dict order and None values do not matter


def test_api_base_is_keyed_only_when_asked():
    assert key_of(api_base="http://a/v1") == key_of(api_base="http://b/v1")
    assert key_of(api_base="http://a/v1", key_api_base=True) != key_of(api_base="http://b/v1", key_api_base=True)


async def test_one_key_across_acompletion_completion_router_and_streaming(provider, server, call_kwargs):
    first = await litellm.acompletion(n=1, temperature=0.5, seed=3, metadata=ns("a"), **call_kwargs)
    sync = litellm.completion(n=1, seed=3, temperature=0.5, metadata=ns("b", "x"), **call_kwargs)
    router = litellm.Router(model_list=[{"model_name": "g", "litellm_params": {
        "model": call_kwargs["model"], "api_base": server.base_url, "api_key": "sk-router", "max_retries": 0}}])
    routed = await router.acompletion(model="g", messages=call_kwargs["messages"], temperature=0.5, seed=3,
                                      metadata=ns("c"))
    stream = await litellm.acompletion(stream=True, temperature=0.5, seed=3, metadata=ns("d"), **call_kwargs)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    keys = {r._hidden_params["cachesaver"]["key"] for r in (first, sync, routed)}
    assert len(keys) == 1
    assert sample_ids(first) == sample_ids(sync) == sample_ids(routed) == [1]
    assert text == first.choices[0].message.content
    assert server.request_count == 1


async def test_secrets_never_reach_the_store(provider, server, call_kwargs):
    await litellm.acompletion(metadata=ns("a", "req-1"), **dict(call_kwargs, api_key="sk-very-secret"))
    handler = cachesaver_litellm.get_handler()
    store = handler.pipeline.store

    async def dump() -> bytes:
        out = b""
        async for key in store.iter_keys():
            out += (await store.get_meta(key)) or b""
            out += b"".join(await store.read(key, 0, await store.length(key)))
        return out

    raw = handler.hosted.host.run(dump())
    assert raw and b"sk-very-secret" not in raw and b"req-1" not in raw


def test_bad_messages_give_a_clear_error():
    with pytest.raises(TypeError, match="messages must be a list"):
        key_of(messages="hello")
