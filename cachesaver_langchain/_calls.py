"""One call's identity (namespace, request id) and its answer: from the run's metadata to an
engine request, from an engine response to a ``ChatResult``."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableConfig

from cachesaver.errors import CorruptSampleError
from cachesaver.keys import request_key
from cachesaver.runtime import NAMESPACE_KEY, REQUEST_ID_KEY, read_identity
from cachesaver.typedefs import Response

from ._codec import to_generation
from ._model import ChatRequest
from ._namespace_warning import warn_no_namespace_once

__all__ = ["NAMESPACE_KEY", "REQUEST_ID_KEY", "SCOPE_KW", "Scope", "cachesaver_config", "identity", "flags",
           "chat_result"]

#: Private call keyword carrying a :class:`Scope` from ``invoke``/``stream`` to ``_generate``/
#: ``_stream``; removed before anything is keyed, traced or sent.
SCOPE_KW = "__cachesaver_scope__"


def cachesaver_config(namespace: str, request_id: Optional[str] = None) -> RunnableConfig:
    """``config=`` for one call (or ``.with_config(**...)``): ``{"metadata": {...}}``."""
    metadata: dict[str, Any] = {NAMESPACE_KEY: namespace}
    if request_id is not None:
        metadata[REQUEST_ID_KEY] = request_id
    return {"metadata": metadata}


@dataclass
class Scope:
    """The run metadata of an ``invoke``/``stream`` call, carried to ``_generate``/``_stream``."""

    metadata: Mapping[str, Any]
    single: bool = True  # invoke/stream return one message: ask for one sample
    #: Set by ``_astream``: what to do if the caller leaves (LangChain does not close the inner
    #: generator when its own is closed, so ``astream`` calls this itself).
    leave: Optional[Any] = None
    #: The call's place in a batch (``_batching``): served with the batch, in input order.
    member: Optional[Any] = None


def identity(metadata: Mapping[str, Any], default_namespace: str) -> tuple[str, str]:
    """``(namespace, request_id)`` of a call, from its run metadata (the runtime's one rule).
    No namespace from anyone: warned once per process (see ``_namespace_warning``)."""
    if not (isinstance(metadata, Mapping) and metadata.get(NAMESPACE_KEY) is not None):
        warn_no_namespace_once(default_namespace)
    return read_identity(metadata, default_namespace=default_namespace, where="run metadata", known_keys=())


def flags(response: Response, i: int, request: ChatRequest) -> dict[str, Any]:
    """``response_metadata["cachesaver"]`` of sample ``i`` (G8 flags)."""
    return {
        "namespace": request.namespace,
        "request_id": request.request_id or None,
        "cached": bool(response.cached[i]),
        "duplicated": bool(response.duplicated[i]),
    }


def chat_result(response: Response, request: ChatRequest) -> ChatResult:
    generations = []
    schema = _response_schema(request)
    shares = response.sample_usage or [None] * len(response.data)
    for i, sample in enumerate(response.data):
        where = f"sample {i + 1} delivered to namespace {request.namespace!r}"
        try:
            generations.append(
                to_generation(sample, cached=bool(response.cached[i]), share=shares[i],
                              cachesaver=flags(response, i, request), where=where)
            )
        except CorruptSampleError as exc:
            raise CorruptSampleError(f"{exc} (key {request_key(request)})") from None
        if schema:
            _add_parsed(generations[-1].message)
    return ChatResult(generations=generations)


def _response_schema(request: ChatRequest) -> bool:
    """Whether the call asked for structured output by a class (``response_format=Model``)."""
    call = request.call
    return call is not None and isinstance(call.kwargs.get("response_format"), type)


def _add_parsed(message: Any) -> None:
    """``additional_kwargs["parsed"]`` from the JSON content, where the sample has none.

    An interactive ``ChatOpenAI`` call with ``response_format=Model`` goes through the SDK's
    ``parse()``, which adds the parsed object (stored with the sample); a batch line's answer is
    a plain completion without it (a Batch API output file has no parsed field). LangChain's
    structured-output parser reads ``parsed``, so it is derived here, at delivery, from the
    content the model answered: the same dict a stored ``parsed`` replays as.
    """
    kwargs = getattr(message, "additional_kwargs", None)
    if not isinstance(kwargs, dict) or kwargs.get("parsed") is not None or kwargs.get("refusal"):
        return
    content = getattr(message, "content", None)
    if not isinstance(content, str):
        return
    try:
        parsed = json.loads(content)
    except ValueError:
        return  # not JSON: the parser reports it as for any answer
    if isinstance(parsed, dict):
        kwargs["parsed"] = parsed
