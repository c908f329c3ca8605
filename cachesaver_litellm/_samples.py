"""Samples <-> litellm responses.

A *sample* is one choice of a chat completion as plain JSON (re-indexed to 0) plus what a
rebuilt response needs: the response id, model, real provider, ``created`` and
``system_fingerprint``. ``_hidden_params`` are not serialised by litellm, so the provider
travels inside the sample. Its usage is the engine's share of its call (``Usage.split``, the one
policy of every adapter), stored beside it and delivered as ``Response.sample_usage``.

Rebuilding merges the samples a caller received into a *fresh* ``ModelResponse`` (choices
re-indexed 0..k-1), so no two callers ever share a mutable object.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, Iterator, Optional, Sequence

from cachesaver.typedefs import Response

__all__ = [
    "split_response",
    "response_tokens",
    "response_cost",
    "build_response",
    "build_plain_response",
    "plain_structure",
    "stream_chunks",
    "final_usage_chunk",
    "with_usage",
    "hidden_params",
]

SAMPLE_VERSION = 1

log = logging.getLogger("cachesaver.litellm.samples")


def split_response(response: Any, provider: str) -> list[dict]:
    """One JSON sample per choice of ``response`` (a litellm ``ModelResponse``)."""
    choices = list(getattr(response, "choices", None) or [])
    hidden = getattr(response, "_hidden_params", None) or {}
    real_provider = hidden.get("custom_llm_provider") or provider
    samples = []
    for choice in choices:
        data = choice.model_dump(mode="json") if hasattr(choice, "model_dump") else dict(choice)
        data["index"] = 0
        samples.append(
            {
                "v": SAMPLE_VERSION,
                "choice": data,
                "id": getattr(response, "id", None),
                "model": getattr(response, "model", None),
                "provider": real_provider,
                "created": getattr(response, "created", None),
                "system_fingerprint": getattr(response, "system_fingerprint", None),
            }
        )
    return samples


def response_tokens(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return 0, 0
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


def response_cost(response: Any, model: str) -> float:
    """What litellm says the call cost (its own cost map); 0.0 when the model is not priced.

    ``completion_cost`` prints a "Provider List" line for models missing from the cost map, and
    a library never prints: unpriced models are looked up first, quietly, and logged at DEBUG.
    """
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if isinstance(cost, (int, float)) and cost >= 0:
        return float(cost)
    import litellm

    if not is_priced(litellm, model, getattr(response, "model", None)):
        log.debug("no litellm price for %s: its cost is reported as 0", model)
        return 0.0
    try:
        return float(litellm.completion_cost(completion_response=response, model=model) or 0.0)
    except Exception:  # unpriced after all: report zero rather than fail a paid-for call
        log.debug("litellm could not price %s: its cost is reported as 0", model)
        return 0.0


def is_priced(litellm: Any, *names: Optional[str]) -> bool:
    """Whether litellm's cost map knows one of ``names`` (asking it about others prints)."""
    cost_map = getattr(litellm, "model_cost", None) or {}
    for name in names:
        if not name:
            continue
        if name in cost_map or name.partition("/")[2] in cost_map:
            return True
    return False


def build_response(
    result: Response,
    *,
    namespace: str,
    request_id: str,
    key: str,
    model: str,
    provider: str,
) -> Any:
    """A fresh ``litellm.ModelResponse`` for one caller, with cachesaver's hidden params."""
    from litellm import ModelResponse

    samples: Sequence[Mapping[str, Any]] = result.data
    first = samples[0] if samples else {}
    choices = []
    for i, sample in enumerate(samples):
        choice = dict(sample["choice"])
        choice["index"] = i
        choices.append(choice)
    shares = result.sample_usage or []
    prompt_tokens = int(round(sum(share.prompt_tokens for share in shares)))
    completion_tokens = int(round(sum(share.completion_tokens for share in shares)))
    response = ModelResponse(
        id=first.get("id") or f"chatcmpl-cachesaver-{uuid.uuid4().hex}",
        created=first.get("created") or int(time.time()),
        model=first.get("model") or model.partition("/")[2] or model,
        object="chat.completion",
        system_fingerprint=first.get("system_fingerprint"),
        choices=choices,
        usage={
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    )
    response._hidden_params = hidden_params(
        result, namespace=namespace, request_id=request_id, key=key, model=model,
        provider=first.get("provider") or provider,
    )
    return response


#: Validated responses kept as patterns for :func:`build_plain_response`, by structure.
_patterns: dict[tuple, Any] = {}
_patterns_lock = threading.Lock()
#: Structures kept (a handful occur: role, finish reason, which fields are None).
MAX_PATTERNS = 64


def build_plain_response(result: Response, *, namespace: str, request_id: str, key: str, model: str,
                         provider: str, structure: Optional[tuple]) -> Any:
    """:func:`build_response`'s response, built without re-validating it when it can be copied.

    For the common hit, one sample of plain text (no tool calls, reasoning, logprobs or other
    fields set), the response is a copy of a validated response of the very same structure
    (same fields, same ``None`` fields, same role and finish reason) with this sample's text,
    ids and token counts put in; pydantic would store those values unchanged. Anything else
    is :func:`build_response`. ``structure`` is :func:`plain_structure` of ``result``. Each call
    returns fresh objects (nothing is shared between callers or with the pattern). ~3x faster
    than validating: the hit path of ``CacheSaverLM``.
    """
    samples: Sequence[Mapping[str, Any]] = result.data
    if structure is None:
        return build_response(result, namespace=namespace, request_id=request_id, key=key, model=model,
                              provider=provider)
    pattern = _patterns.get(structure)
    if pattern is None:
        pattern = build_response(result, namespace=namespace, request_id=request_id, key=key, model=model,
                                 provider=provider)
        with _patterns_lock:
            if len(_patterns) >= MAX_PATTERNS:
                _patterns.clear()
            _patterns[structure] = pattern
    sample = samples[0]
    choice_data = sample["choice"]
    shares = result.sample_usage or []
    prompt_tokens = int(round(sum(share.prompt_tokens for share in shares)))
    completion_tokens = int(round(sum(share.completion_tokens for share in shares)))

    message = _copy_model(pattern.choices[0].message)
    _fresh_empties(message.__dict__)
    message.__dict__["content"] = choice_data["message"]["content"]
    choice = _copy_model(pattern.choices[0])
    _fresh_empties(choice.__dict__)
    choice.__dict__["message"] = message
    usage = _copy_model(pattern.usage)
    usage.__dict__.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          total_tokens=prompt_tokens + completion_tokens)
    response = _copy_model(pattern)
    response.__dict__.update(
        id=sample.get("id") or f"chatcmpl-cachesaver-{uuid.uuid4().hex}",
        created=sample.get("created") or int(time.time()),
        model=sample.get("model") or model.partition("/")[2] or model,
        system_fingerprint=sample.get("system_fingerprint"),
        choices=[choice],
    )
    response.__pydantic_extra__["usage"] = usage
    response._hidden_params = hidden_params(result, namespace=namespace, request_id=request_id, key=key,
                                            model=model, provider=sample.get("provider") or provider)
    return response


_set = object.__setattr__


def _copy_model(model: Any) -> Any:
    """``model.model_copy()`` (pydantic 2's ``__copy__``: a new instance with copies of its field
    dict, extras, fields-set and private values), without the generic ``copy.copy`` dispatch of
    each part: the hit path makes four of these per response."""
    cls = type(model)
    new = cls.__new__(cls)
    _set(new, "__dict__", model.__dict__.copy())
    extra = model.__pydantic_extra__
    _set(new, "__pydantic_extra__", None if extra is None else extra.copy())
    _set(new, "__pydantic_fields_set__", model.__pydantic_fields_set__.copy())
    private = getattr(model, "__pydantic_private__", None)
    if private is not None:
        from pydantic_core import PydanticUndefined  # (loaded with litellm; not at this import)

        private = {k: v for k, v in private.items() if v is not PydanticUndefined}
    _set(new, "__pydantic_private__", private)
    return new


def plain_structure(result: Response) -> Optional[tuple]:
    """The structure of ``result`` if it is one sample of plain text, else None (see
    :func:`build_plain_response`)."""
    return _plain_structure(result.data[0]) if len(result.data) == 1 else None


_PLAIN_CHOICE = frozenset({"index", "finish_reason", "message"})
_PLAIN_MESSAGE = frozenset({"content", "role"})


def _plain_structure(sample: Mapping[str, Any]) -> Optional[tuple]:
    """The structure of a one-choice sample of plain text, or None for any other sample."""
    choice = sample.get("choice")
    if type(choice) is not dict:
        return None
    message = choice.get("message")
    if (type(message) is not dict or type(message.get("content")) is not str
            or type(message.get("role")) is not str or type(choice.get("finish_reason")) is not str
            or type(choice.get("index")) is not int):
        return None
    for name, value in choice.items():
        if not (value is None or name in _PLAIN_CHOICE or _empty(value)):
            return None
    for name, value in message.items():
        if not (value is None or name in _PLAIN_MESSAGE or _empty(value)):
            return None
    for name, kind in (("id", str), ("created", int), ("model", str)):
        if type(sample.get(name)) is not kind:
            return None
    fingerprint = sample.get("system_fingerprint")
    if fingerprint is not None and type(fingerprint) is not str:
        return None
    return (tuple((name, _kind(value)) for name, value in choice.items() if name != "message"),
            tuple((name, _kind(value)) for name, value in message.items() if name != "content"),
            message["role"], choice["finish_reason"], fingerprint is None)


def _empty(value: Any) -> bool:
    return (type(value) is dict or type(value) is list) and not value


def _kind(value: Any) -> Any:
    """What a structure records of a field: None, an empty container's type, or the type."""
    if value is None:
        return None
    return ("empty", type(value).__name__) if _empty(value) else type(value).__name__


def _fresh_empties(fields: dict) -> None:
    """A copied model's empty dicts and lists replaced by new ones (never shared with the pattern)."""
    for name, value in fields.items():
        if _empty(value):
            fields[name] = type(value)()


def hidden_params(result: Response, *, namespace: str, request_id: str, key: str, model: str,
                  provider: str) -> dict:
    """Mark the response the way litellm's own cache marks hits, plus cachesaver's flags.

    ``cache_hit=True`` with ``response_cost=0.0`` when every sample was stored: litellm's
    callbacks then log zero spend and compute the saved cost themselves. Otherwise
    ``response_cost`` is what the engine billed to this caller (G8), never the whole shared call.
    """
    cached = list(result.cached or [])
    usage = result.usage
    billed_cost = float(usage.cost) if usage is not None else 0.0
    # What the reused samples cost when they were generated (litellm's price then, stored with
    # each sample): the engine's own saved figure, so no re-pricing on the hit path.
    saved_cost = sum(float(share.cost) for share, hit in zip(result.sample_usage or (), cached) if hit)
    full_hit = bool(cached) and all(cached)
    return {
        "cache_hit": full_hit,
        "response_cost": 0.0 if full_hit else billed_cost,
        "custom_llm_provider": provider,
        "cachesaver": {
            "namespace": namespace,
            "request_id": request_id,
            "key": key,
            "model": model,
            "cached": cached,
            "duplicated": list(result.duplicated or []),
            "prompt_tokens_billed": float(usage.prompt_tokens) if usage is not None else 0.0,
            "completion_tokens_billed": float(usage.completion_tokens) if usage is not None else 0.0,
            "cost_billed": billed_cost,
            "cost_saved": saved_cost,
            "model_calls": result.model_calls,
        },
    }


def final_usage_chunk(response: Any) -> Any:
    """A choice-less chunk carrying ``response.usage``: the OpenAI-style end of a stream, where
    litellm's stream wrapper takes the stream's usage from (it strips it unless asked for)."""
    from litellm.types.utils import ModelResponseStream

    chunk = ModelResponseStream(id=response.id, created=response.created, model=response.model,
                                system_fingerprint=getattr(response, "system_fingerprint", None),
                                usage=response.usage)
    chunk.choices = []
    return chunk


def with_usage(chunk: Any, usage: Any) -> Any:
    """``chunk`` (a ``ModelResponseStream`` with choices) carrying ``usage``: on the last content
    chunk is where litellm's stream wrapper reads a stream's usage (and strips it unless asked)."""
    from litellm.types.utils import ModelResponseStream

    return ModelResponseStream(id=chunk.id, created=chunk.created, model=chunk.model,
                               system_fingerprint=getattr(chunk, "system_fingerprint", None),
                               choices=chunk.choices, usage=usage)


def stream_chunks(response: Any, include_usage: bool = True, usage_chunk: bool = False) -> Iterator[Any]:
    """Replay a complete response as ``ModelResponseStream`` chunks.

    Per choice: one chunk with the role and the whole content (and reasoning), one with its
    tool calls; then one chunk per choice carrying its finish reason. Usage rides on the last
    content chunk (litellm's stream wrapper reads it there and strips it unless the caller
    asked for it) or, with ``usage_chunk=True``, on a final OpenAI-style chunk without choices.
    """
    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

    head = {
        "id": response.id,
        "created": response.created,
        "model": response.model,
        "system_fingerprint": getattr(response, "system_fingerprint", None),
    }

    def chunk(index: int, delta: Any, finish_reason: Optional[str] = None, **extra: Any) -> Any:
        choice = StreamingChoices(index=index, delta=delta, finish_reason=finish_reason)
        return ModelResponseStream(**head, choices=[choice], **extra)

    usage = getattr(response, "usage", None) if include_usage else None
    body: list = []
    for choice in response.choices:
        message = choice.message
        body.append(chunk(choice.index, Delta(role="assistant", content=message.content or "",
                                              reasoning_content=getattr(message, "reasoning_content", None))))
        tool_calls = getattr(message, "tool_calls", None)
        if tool_calls:
            calls = [
                {
                    "index": j,
                    "id": call.id,
                    "type": getattr(call, "type", None) or "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments or ""},
                }
                for j, call in enumerate(tool_calls)
            ]
            body.append(chunk(choice.index, Delta(tool_calls=calls)))
    if usage is not None and body and not usage_chunk:
        last = body[-1]
        body[-1] = ModelResponseStream(**head, choices=last.choices, usage=usage)
    for choice in response.choices:
        body.append(chunk(choice.index, Delta(), finish_reason=choice.finish_reason or "stop"))
    if usage is not None and usage_chunk:
        body.append(final_usage_chunk(response))
    return iter(body)
