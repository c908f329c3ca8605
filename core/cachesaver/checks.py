"""The engine's one validation of a request's identity fields: ``n``, namespace, request id.

Every entry point checks them here (``Pipeline``, the adapters' metadata via
:func:`cachesaver.runtime.read_identity`, adapters' constructors, the proxy), so the same bad
value raises the same class everywhere: a wrong *type* is an
:class:`~cachesaver.errors.InvalidRequestTypeError` (a ``TypeError``), a wrong *value* of the
right type (``n=0``, an empty namespace) an :class:`~cachesaver.errors.InvalidRequestError` (a
``ValueError``). Each message names the field and shows a good value.

A namespace or request id may be any ``str`` the engine can store (every Unicode plane, control
characters too); front ends that carry names in HTTP headers add their own rule (the LiteLLM
Proxy refuses control characters). Numbers in keyed fields must be finite: that check lives in
the one walk that keys a request (:mod:`cachesaver.keys`), so every adapter refuses NaN alike.
"""
from __future__ import annotations

from typing import Any, Optional

from .errors import InvalidRequestError, InvalidRequestTypeError

__all__ = ["check_n", "check_max_n", "check_call_bound", "call_bounds", "check_namespace", "check_request_id", "MAX_N",
           "MAX_FANOUT", "MAX_CONCURRENT_CALLS"]

#: The default limit of samples one request may ask for (OpenAI's own limit of ``n``): one
#: careless or hostile request cannot cost more than this many samples (G2).
MAX_N = 128
#: Provider calls one request's fan-out makes at once (a provider without ``n`` answers one
#: sample per call): a request for many samples is spread over time, never sent all at once.
MAX_FANOUT = 8
#: Provider calls one pipeline (one adapter instance: ``register()``, a ``CacheSaverRouter``, a
#: ``CacheSaverChatModel``, a proxy process) has in flight at once, whatever its callers ask.
MAX_CONCURRENT_CALLS = 64


def check_n(n: Any, field: str = "n", *, optional: bool = True, limit: Optional[int] = None) -> int:
    """``n`` as a number of samples: ``None`` means 1 where ``optional`` (framework arguments);
    anything else but an int >= 1 (and <= ``limit``) is refused."""
    if n is None and optional:
        return 1
    if isinstance(n, bool) or not isinstance(n, int):
        raise InvalidRequestTypeError(f"{field} must be an int >= 1, got {type(n).__name__} {n!r}")
    if n < 1:
        raise InvalidRequestError(f"{field} must be an int >= 1, got {n}")
    if limit is not None and n > limit:
        raise InvalidRequestError(
            f"{field} is {n}, above the limit of {limit} samples per request; ask in several "
            f"requests, or raise the limit with max_n= (the pipeline's or the adapter's; "
            f"CACHESAVER_MAX_N behind the LiteLLM Proxy)")
    return n


def check_max_n(max_n: Any, field: str = "max_n") -> int:
    """A pipeline's limit of samples per request: an int >= 1."""
    if isinstance(max_n, bool) or not isinstance(max_n, int):
        raise InvalidRequestTypeError(f"{field} must be an int >= 1, e.g. {MAX_N}; got {max_n!r}")
    if max_n < 1:
        raise InvalidRequestError(f"{field} must be an int >= 1, e.g. {MAX_N}; got {max_n}")
    return max_n


def check_call_bound(value: Any, field: str, example: int) -> int:
    """A bound on provider calls in flight (``max_fanout``, ``max_concurrent_calls``): an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestTypeError(f"{field} must be an int >= 1, e.g. {example}; got {value!r}")
    if value < 1:
        raise InvalidRequestError(f"{field} must be an int >= 1, e.g. {example}; got {value}")
    return value


def call_bounds(max_fanout: Any = MAX_FANOUT, max_concurrent_calls: Any = MAX_CONCURRENT_CALLS) -> dict:
    """An adapter's bounds on its provider calls in flight, checked (ints >= 1), as
    ``PipelineSettings.call_bounds`` takes them."""
    return {"max_fanout": check_call_bound(max_fanout, "max_fanout", MAX_FANOUT),
            "max_concurrent_calls": check_call_bound(max_concurrent_calls, "max_concurrent_calls",
                                                     MAX_CONCURRENT_CALLS)}


def check_namespace(namespace: Any, field: str = "namespace", example: str = "'agent-1'") -> str:
    """A namespace: a non-empty str."""
    if not isinstance(namespace, str):
        raise InvalidRequestTypeError(
            f"{field} must be a non-empty str, e.g. {example}; got {type(namespace).__name__} {namespace!r}")
    if not namespace:
        raise InvalidRequestError(f"{field} must be a non-empty str, e.g. {example}; got ''")
    return namespace


def check_request_id(request_id: Any, field: str = "request_id", example: str = "'q-17'", *,
                     optional: bool = True) -> str:
    """A request id: a str (``""``, or ``None`` where ``optional``, mean "none": arrival order)."""
    if request_id is None and optional:
        return ""
    if not isinstance(request_id, str):
        raise InvalidRequestTypeError(
            f"{field} must be a str, e.g. {example}; got {type(request_id).__name__} {request_id!r}")
    return request_id
