"""One call's identity (namespace, request id) and its answer: from the run's metadata to an
engine request, from an engine response to a ``ChatResult``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from langchain_core.outputs import ChatResult

from cachesaver.errors import CorruptSampleError, InvalidRequestTypeError
from cachesaver.keys import request_key
from cachesaver.typedefs import Response

from ._codec import to_generation
from ._model import ChatRequest

__all__ = ["NAMESPACE_KEY", "REQUEST_ID_KEY", "SCOPE_KW", "Scope", "identity", "flags", "chat_result"]

#: Run-metadata keys read on every call (the LiteLLM adapter reads the same ones).
NAMESPACE_KEY = "cachesaver_namespace"
REQUEST_ID_KEY = "cachesaver_request_id"

#: Private call keyword carrying a :class:`Scope` from ``invoke``/``stream`` to ``_generate``/
#: ``_stream``; removed before anything is keyed, traced or sent.
SCOPE_KW = "__cachesaver_scope__"


@dataclass
class Scope:
    """The run metadata of an ``invoke``/``stream`` call, carried to ``_generate``/``_stream``."""

    metadata: Mapping[str, Any]
    single: bool = True  # invoke/stream return one message: ask for one sample
    #: Set by ``_astream``: what to do if the caller leaves (LangChain does not close the inner
    #: generator when its own is closed, so ``astream`` calls this itself).
    leave: Optional[Any] = None


def identity(metadata: Mapping[str, Any], default_namespace: str) -> tuple[str, str]:
    """``(namespace, request_id)`` of a call, checked (an empty request id: arrival order)."""
    namespace = metadata.get(NAMESPACE_KEY, default_namespace)
    if not isinstance(namespace, str) or not namespace:
        raise InvalidRequestTypeError(
            f"run metadata {NAMESPACE_KEY!r} must be a non-empty str, got {namespace!r}; pass "
            f"config={{'metadata': {{'{NAMESPACE_KEY}': 'agent-1'}}}}"
        )
    request_id = metadata.get(REQUEST_ID_KEY) or ""
    if not isinstance(request_id, str):
        raise InvalidRequestTypeError(
            f"run metadata {REQUEST_ID_KEY!r} must be a str, got {type(request_id).__name__}"
        )
    return namespace, request_id


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
    for i, sample in enumerate(response.data):
        where = f"sample {i} delivered to namespace {request.namespace!r}"
        try:
            generations.append(
                to_generation(sample, cached=bool(response.cached[i]),
                              cachesaver=flags(response, i, request), where=where)
            )
        except CorruptSampleError as exc:
            raise CorruptSampleError(f"{exc} (key {request_key(request)})") from None
    return ChatResult(generations=generations)
