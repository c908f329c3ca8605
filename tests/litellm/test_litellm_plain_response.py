"""``build_plain_response`` (the CacheSaverLM hit path) builds exactly what ``build_response``
builds, field for field, pydantic bookkeeping included, and never shares an object."""
from __future__ import annotations

import itertools

import pytest

from cachesaver.typedefs import Response, Usage
from cachesaver_litellm._samples import build_plain_response, build_response, plain_structure


def sample(content: str, *, finish_reason: str = "stop", fingerprint=None, extra_choice=None, extra_message=None,
           created: int = 1_700_000_000) -> dict:
    message = {"content": content, "role": "assistant", "tool_calls": None, "function_call": None,
               "provider_specific_fields": None, **(extra_message or {})}
    choice = {"finish_reason": finish_reason, "index": 0, "message": message, "provider_specific_fields": {},
              "logprobs": None, **(extra_choice or {})}
    return {"v": 1, "choice": choice, "id": f"chatcmpl-{content[:8]}", "model": "gpt-4o-mini", "provider": "openai",
            "created": created, "system_fingerprint": fingerprint}


def result(data: dict, prompt_tokens: float, completion_tokens: float, cached: bool = True) -> Response:
    return Response(data=[data], cached=[cached], duplicated=[False],
                    sample_usage=[Usage(prompt_tokens, completion_tokens, 0.001)],
                    usage=Usage() if cached else Usage(prompt_tokens, completion_tokens, 0.001), key="k")


def state(model) -> tuple:
    """Everything pydantic keeps for a model, recursively."""
    def of(value):
        if hasattr(value, "__pydantic_fields_set__"):
            return (type(value), {k: of(v) for k, v in value.__dict__.items()},
                    frozenset(value.__pydantic_fields_set__),
                    {k: of(v) for k, v in (value.__pydantic_extra__ or {}).items()},
                    {k: of(v) for k, v in (value.__pydantic_private__ or {}).items()})
        if isinstance(value, list):
            return [of(v) for v in value]
        if isinstance(value, dict):
            return {k: of(v) for k, v in value.items()}
        return value
    return of(model)


CASES = [
    sample("The quick fox."),
    sample("Another answer, longer, with unicode: é 実験 🚀", fingerprint="fp_1"),
    sample("", finish_reason="length"),
    sample("Text", extra_message={"reasoning_content": None, "annotations": []}),
]


@pytest.mark.parametrize("data, tokens", list(itertools.product(CASES, [(0, 0), (12, 7), (3.4, 2.6)])))
def test_plain_response_is_the_validated_response(data, tokens):
    kwargs = dict(namespace="ns", request_id="r-1", key="k", model="openai/gpt-4o-mini", provider="openai")
    for cached in (True, False):
        res = result(data, *tokens, cached=cached)
        structure = plain_structure(res)
        assert structure is not None
        built = build_response(res, **kwargs)
        for _ in range(2):  # the first call keeps a pattern, the second copies it
            plain = build_plain_response(res, **kwargs, structure=structure)
            assert state(plain) == state(built)
            assert plain.model_dump() == built.model_dump()
            assert plain._hidden_params == built._hidden_params


def test_plain_responses_share_no_object():
    kwargs = dict(namespace="ns", request_id="", key="k", model="openai/gpt-4o-mini", provider="openai")
    first_result, second_result = result(sample("one"), 1, 1), result(sample("two"), 2, 2)
    first = build_plain_response(first_result, **kwargs, structure=plain_structure(first_result))
    second = build_plain_response(second_result, **kwargs, structure=plain_structure(second_result))
    assert first.choices[0].message.content == "one" and second.choices[0].message.content == "two"
    for a, b in ((first, second), (first.choices[0], second.choices[0]),
                 (first.choices[0].message, second.choices[0].message), (first.usage, second.usage)):
        assert a is not b
    assert first._hidden_params is not second._hidden_params
    assert first.choices[0].provider_specific_fields is not second.choices[0].provider_specific_fields
    first.choices[0].message.content = "changed"
    first.choices[0].provider_specific_fields["x"] = 1
    again = build_plain_response(first_result, **kwargs, structure=plain_structure(first_result))
    assert again.choices[0].message.content == "one" and again.choices[0].provider_specific_fields == {}


@pytest.mark.parametrize("data", [
    sample("x", extra_message={"tool_calls": [{"id": "c", "type": "function",
                                               "function": {"name": "f", "arguments": "{}"}}]}),
    sample("x", extra_message={"reasoning_content": "because"}),
    sample("x", extra_choice={"logprobs": {"content": []}}),
    {**sample("x"), "choice": {**sample("x")["choice"], "message": {"content": None, "role": "assistant"}}},
])
def test_other_samples_are_not_plain(data):
    assert plain_structure(result(data, 1, 1)) is None
