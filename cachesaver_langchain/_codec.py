"""Conversions between LangChain objects and what the engine keys and stores.

Key material (what decides whether two calls may share samples):
  - the messages, dumped *without* ``id``, ``response_metadata``, ``usage_metadata``,
    ``artifact`` and content blocks' stream ``index`` (agents mint new message ids every run;
    metadata, usage, tool artifacts and stream positions never reach the provider), so a
    replayed trajectory keys exactly like the original one;
  - the inner model's invocation parameters (model, temperature, max_tokens, stop, tools,
    tool_choice, response_format, and any unknown parameter) minus transport settings and ``n``.

Stored sample: one JSON dict per generated message::

    {"message": dumpd(AIMessage), "generation_info": {...}, "sample_id": "..."}

The message is stored without its id (one sample is delivered to many runs, and LangGraph merges
messages that share an id) and without usage: a sample's usage is the engine's share of what
its call billed, stored beside it (``Response.sample_usage``), the same for every adapter.
Loading uses ``langchain_core.load.load(..., allowed_objects="messages")``, which instantiates
chat-message classes only, so a payload planted in the store cannot construct anything that
runs code (G7); anything that does not load as an ``AIMessage`` is reported as a
corrupt sample.
"""
from __future__ import annotations

import copy
import json
import re
import uuid
import warnings
from typing import Any, Iterable, Mapping, Optional, Sequence

from langchain_core.load import dumpd, load
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, BaseMessageChunk, message_chunk_to_message
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk
from pydantic import BaseModel

from cachesaver.errors import CorruptSampleError, NotSerializableError
from cachesaver.keypolicy import TRANSPORT

__all__ = [
    "SAMPLE_FORMAT",
    "TRANSPORT_PARAMS",
    "message_payload",
    "make_sample",
    "to_generation",
    "replay_chunks",
    "closing_chunk",
    "live_copy",
    "jsonable",
]

#: Keyed into every request: samples of this adapter are never shared with another adapter's.
SAMPLE_FORMAT = "langchain-aimessage/1"

#: Invocation parameters that do not shape the output distribution: the engine's transport fields
#: (:data:`cachesaver.keypolicy.TRANSPORT`) plus LangChain's and its providers' names for
#: credentials, endpoints, proxies, timeouts, client objects and tracing. Everything else is
#: keyed verbatim, unknown names included (:mod:`cachesaver.keypolicy`).
TRANSPORT_PARAMS = TRANSPORT | frozenset(
    {
        "stream_usage",
        "openai_api_key", "anthropic_api_key", "google_api_key",
        "openai_api_base", "anthropic_api_url", "endpoint",
        "openai_organization", "openai_proxy", "proxy",
        "default_request_timeout", "stream_chunk_timeout",
        "http_socket_options", "root_client", "root_async_client",
        "callback_manager", "run_manager", "verbose", "cache", "rate_limiter", "disable_streaming",
    }
)

_NOT_SENT = {"id", "response_metadata", "usage_metadata", "artifact"}
_ZERO_USAGE = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
_WORDS = re.compile(r"\S+\s*|\s+")
_WORDS_PER_CHUNK = 4


# -- keys ----------------------------------------------------------------------------------
def message_payload(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """The messages as JSON, minus what never reaches the provider (see module docstring)."""
    out = []
    for i, message in enumerate(messages):
        if isinstance(message, BaseMessageChunk):
            message = message_chunk_to_message(message)
        try:
            data = message.model_dump(mode="json", exclude=_NOT_SENT)
        except Exception as exc:
            raise NotSerializableError(
                f"message {i} ({type(message).__name__}) has no JSON form for the cache key "
                f"({exc}); keep message content and additional_kwargs to plain JSON values"
            ) from None
        if isinstance(data.get("content"), list):
            # "index" only records where a block sat in a stream: a streamed and a replayed
            # copy of one message must key alike.
            data["content"] = [
                {k: v for k, v in block.items() if k != "index"} if isinstance(block, dict) else block
                for block in data["content"]
            ]
        out.append(data)
    return out


# -- samples -------------------------------------------------------------------------------
def jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON: pydantic objects dumped, anything else foreign refused."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise NotSerializableError(
        f"{where} holds a {type(value).__name__}, which cannot be stored as JSON (G7: no pickle); "
        "the inner model returned a non-JSON value there"
    )


def make_sample(
    message: BaseMessage,
    generation_info: Optional[Mapping[str, Any]],
    extra_metadata: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """The stored form of one generated message (see module docstring)."""
    if isinstance(message, BaseMessageChunk):
        message = message_chunk_to_message(message)
    if not isinstance(message, AIMessage):
        raise NotSerializableError(
            f"the inner model returned a {type(message).__name__}, not an AIMessage"
        )
    response_metadata = {
        **dict(extra_metadata or {}),
        **dict(generation_info or {}),
        **message.response_metadata,
    }
    clean = message.model_copy(
        update={
            "id": None,
            "usage_metadata": None,
            "additional_kwargs": jsonable(message.additional_kwargs, "additional_kwargs"),
            "response_metadata": jsonable(response_metadata, "response_metadata"),
        }
    )
    data = dumpd(clean)
    _check_loadable(data, "message")
    return {
        "message": data,
        "generation_info": jsonable(dict(generation_info or {}), "generation_info") or None,
        "sample_id": uuid.uuid4().hex,
    }


def _check_loadable(data: Any, where: str, root: bool = True) -> None:
    """Refuse to store what would not load back as a plain message (nested LC objects)."""
    if isinstance(data, dict):
        if data.get("lc") == 1 and not root and data.get("type") in ("constructor", "not_implemented", "secret"):
            raise NotSerializableError(
                f"{where} holds a LangChain object ({data.get('id')}); a stored message may hold "
                "plain JSON only, so it can be loaded without running any constructor"
            )
        for k, v in data.items():
            _check_loadable(v, f"{where}.{k}", root=False)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _check_loadable(v, f"{where}[{i}]", root=False)


_AI_MESSAGE_PATH = ["langchain", "schema", "messages", "AIMessage"]


def _load_message(data: Any, where: str) -> AIMessage:
    """A stored message back as an ``AIMessage``, constructing nothing else (G7).

    What CacheSaver writes (``dumpd`` of a plain ``AIMessage``, nested LangChain objects refused
    at write time) is built directly: ``AIMessage(**kwargs)`` validates plain JSON and runs no
    lookup of classes or secrets. Anything else goes through ``load(allowed_objects="messages")``.
    """
    if (isinstance(data, dict) and data.get("lc") == 1 and data.get("type") == "constructor"
            and data.get("id") == _AI_MESSAGE_PATH and isinstance(data.get("kwargs"), dict)):
        try:
            return AIMessage(**data["kwargs"])
        except Exception as exc:
            raise CorruptSampleError(
                f"{where} is not a storable LangChain message and was not loaded ({exc}); it was "
                "not written by CacheSaver: remove that key from the store"
            ) from None
    try:
        message = load(data, allowed_objects="messages")
    except Exception as exc:
        raise CorruptSampleError(
            f"{where} is not a storable LangChain message and was not loaded ({exc}); it was not "
            "written by CacheSaver: remove that key from the store"
        ) from None
    if not isinstance(message, AIMessage) or isinstance(message, AIMessageChunk):
        raise CorruptSampleError(
            f"{where} loads as {type(message).__name__}, not an AIMessage; it was not written by "
            "CacheSaver: remove that key from the store"
        )
    return message


def usage_metadata(share: Any) -> dict[str, int]:
    """The engine's per-sample usage share (``Usage``) as LangChain usage metadata."""
    if share is None:
        return dict(_ZERO_USAGE)
    input_tokens = int(round(share.prompt_tokens))
    output_tokens = int(round(share.completion_tokens))
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens}


def to_generation(
    sample: Any, *, cached: bool, share: Any, cachesaver: dict[str, Any], where: str
) -> ChatGeneration:
    """A delivered sample as a ``ChatGeneration``.

    ``usage_metadata`` is what this response was billed (G8): the sample's share of its call
    (the engine's one policy, ``Usage.split``) if this caller is the first to receive it, zero
    tokens if it was served from the store; the share itself is kept in
    ``response_metadata["cachesaver"]["sample_usage"]``.
    """
    if not isinstance(sample, dict) or "message" not in sample:
        raise CorruptSampleError(
            f"{where} is not a CacheSaver LangChain sample (got {type(sample).__name__}); "
            "remove that key from the store"
        )
    message = _load_message(sample["message"], where)
    usage = usage_metadata(share)
    message.usage_metadata = dict(_ZERO_USAGE) if cached else usage
    message.response_metadata = {
        **message.response_metadata,
        "cachesaver": {**cachesaver, "sample_usage": usage},
    }
    info = sample.get("generation_info")
    return ChatGeneration(message=message, generation_info=dict(info) if info else None)


# -- streaming -----------------------------------------------------------------------------
def _text_pieces(text: str) -> Iterable[str]:
    units = _WORDS.findall(text)
    for i in range(0, len(units), _WORDS_PER_CHUNK):
        yield "".join(units[i : i + _WORDS_PER_CHUNK])


def replay_chunks(generation: ChatGeneration) -> list[ChatGenerationChunk]:
    """A stored message as a stream: text in chunks; tool calls, metadata, usage and
    ``chunk_position="last"`` only on the final chunk, so the chunks add up to the message."""
    message = generation.message
    content = message.content
    chunks = []
    if isinstance(content, str):
        chunks = [ChatGenerationChunk(message=AIMessageChunk(content=p)) for p in _text_pieces(content)]
        empty: Any = ""
    else:
        if content:
            chunks = [ChatGenerationChunk(message=AIMessageChunk(content=list(content)))]
        empty = []
    calls = [
        tool_call_chunk(name=tc["name"], args=json.dumps(tc["args"]), id=tc.get("id"), index=i)
        for i, tc in enumerate(message.tool_calls)
    ]
    calls += [
        tool_call_chunk(name=tc.get("name"), args=tc.get("args"), id=tc.get("id"), index=len(calls) + i)
        for i, tc in enumerate(message.invalid_tool_calls)
    ]
    last = AIMessageChunk(
        content=empty,
        additional_kwargs=dict(message.additional_kwargs),
        response_metadata=dict(message.response_metadata),
        tool_call_chunks=calls,
        usage_metadata=message.usage_metadata,
        name=message.name,
        chunk_position="last",
    )
    chunks.append(ChatGenerationChunk(message=last, generation_info=generation.generation_info))
    return chunks


def closing_chunk(list_content: bool, cachesaver: dict[str, Any]) -> ChatGenerationChunk:
    """The last chunk of a live stream: it only adds ``response_metadata["cachesaver"]``."""
    return ChatGenerationChunk(
        message=AIMessageChunk(
            content=[] if list_content else "",
            response_metadata={"cachesaver": cachesaver},
            chunk_position="last",
        )
    )


def live_copy(chunk: ChatGenerationChunk) -> ChatGenerationChunk:
    """A copy of a live chunk for the caller (LangChain mutates what it is given), without the
    provider's message id (one sample reaches many runs; LangChain gives each call its own id)."""
    message = chunk.message.model_copy(deep=True)
    message.id = None
    return ChatGenerationChunk(message=message, generation_info=copy.deepcopy(chunk.generation_info))


def _warm_up() -> None:
    """``load`` is a beta API that warns once per process; spend that warning here, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load(dumpd(AIMessage(content="")), allowed_objects="messages")


_warm_up()
