"""The LiteLLM Proxy's hooks for ``cachesaver/`` calls: what a client sees and what is billed.

- :func:`response_headers`: the ``x-cachesaver-*`` headers of a response, from its flags;
- :func:`correct_stream_cost`: a streamed response logged at what the engine billed;
- :func:`client_error`: a request CacheSaver refuses answers HTTP 400, not litellm's 500;
- :class:`ProxyHooks`: the ``CustomLogger`` that applies them, installed by the handler.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from litellm.integrations.custom_logger import CustomLogger

from cachesaver.errors import InvalidRequestError, InvalidRequestTypeError

from ._http_identity import header_value

log = logging.getLogger("cachesaver.litellm.proxy")

__all__ = ["ProxyHooks", "response_headers", "correct_stream_cost", "log_saving", "client_error", "install_hooks"]


def response_headers(flags: Mapping[str, Any]) -> dict[str, str]:
    """The ``x-cachesaver-*`` headers for one response, from its ``_hidden_params["cachesaver"]``.

    - ``x-cachesaver-cache-hit``: ``true`` when every choice came from the store (nothing was
      billed; the proxy's ``x-litellm-response-cost`` is then 0), ``partial``, or ``false``;
    - ``x-cachesaver-cached`` / ``x-cachesaver-duplicated``: one ``0``/``1`` per choice, in order;
    - ``x-cachesaver-namespace``, ``x-cachesaver-request-id``: percent-encoded UTF-8 where the
      name is not printable ASCII (``实验`` is ``%E5%AE%9E%E9%AA%8C``; a ``%`` is ``%25``;
      ``urllib.parse.unquote`` decodes them), so any valid name makes a valid header;
    - ``x-litellm-cache-key``: the sample list's key on a full hit (where litellm's own cache
      puts its key on a hit); a SHA-256 of the request, never a secret.
    """
    cached = [bool(x) for x in flags.get("cached") or []]
    duplicated = [bool(x) for x in flags.get("duplicated") or []]
    full = bool(cached) and all(cached)
    state = "true" if full else ("partial" if any(cached) else "false")
    headers = {
        "x-cachesaver-cache-hit": state,
        "x-cachesaver-cached": ",".join("1" if x else "0" for x in cached),
        "x-cachesaver-duplicated": ",".join("1" if x else "0" for x in duplicated),
        "x-cachesaver-namespace": header_value(str(flags.get("namespace") or "")),
    }
    if flags.get("request_id"):
        headers["x-cachesaver-request-id"] = header_value(str(flags["request_id"]))
    if full and flags.get("key"):
        headers["x-litellm-cache-key"] = str(flags["key"])
    return headers


def _flags_of(data: Mapping[str, Any], response: Any) -> Optional[Mapping[str, Any]]:
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, Mapping) and isinstance(hidden.get("cachesaver"), Mapping):
        return hidden["cachesaver"]
    # Streams: the handler leaves the flags on the call's logging object before the first chunk.
    logging_obj = data.get("litellm_logging_obj") if isinstance(data, Mapping) else None
    details = getattr(logging_obj, "model_call_details", None)
    if isinstance(details, Mapping) and isinstance(details.get("cachesaver"), Mapping):
        return details["cachesaver"]
    return None


_headers_hook: Any = None


def install_hooks(litellm: Any) -> None:
    """Add one :class:`ProxyHooks` to ``litellm.callbacks`` (idempotent)."""
    global _headers_hook
    if _headers_hook is None:
        _headers_hook = ProxyHooks()
    if _headers_hook not in litellm.callbacks:
        litellm.logging_callback_manager.add_litellm_callback(_headers_hook)


def correct_stream_cost(kwargs: dict) -> None:
    """Log a streamed ``cachesaver/`` response at what it was billed, not at its list price.

    litellm logs a stream from the chunks it assembled and prices them as if they had all been
    generated for this caller, so a streamed full hit would be logged (and charged to the
    virtual key by the proxy's spend tracking) at the full price, with ``cache_hit`` false.
    The handler leaves the engine's flags in the call's logging details (``kwargs["cachesaver"]``);
    this sets ``response_cost`` to what the engine billed this caller (0 for a full hit), marks
    full hits ``cache_hit`` and keeps litellm's price as ``saved_cache_cost``. Runs after
    litellm built its logging payload and before any success callback reads it.
    """
    flags = kwargs.get("cachesaver")
    if not kwargs.get("stream") or not isinstance(flags, Mapping):
        return
    billed = float(flags.get("cost_billed") or 0.0)
    cached = list(flags.get("cached") or [])
    full_hit = bool(cached) and all(cached)
    payload = kwargs.get("standard_logging_object")
    listed = payload.get("response_cost") if isinstance(payload, dict) else kwargs.get("response_cost")
    kwargs["response_cost"] = billed
    if full_hit:
        kwargs["cache_hit"] = True
    if isinstance(payload, dict):
        payload["response_cost"] = billed
        if full_hit:
            payload["cache_hit"] = True
            if not payload.get("saved_cache_cost") and isinstance(listed, (int, float)):
                payload["saved_cache_cost"] = float(listed)


def log_saving(kwargs: dict) -> None:
    """Log what a response that reused samples saved: their stored price (the engine's figure).

    litellm fills ``saved_cache_cost`` for full cache hits only, re-pricing the response as if
    it were one call: a partial hit was logged as saving nothing, and a full hit of fewer
    samples than their call generated at more than their share (the call's prompt counted
    again). ``stats()``, the cost callback and bundles count each reused sample at its stored
    price; the engine's flags carry that sum (``cost_saved``), logged here, so the proxy's
    logs say what every other view says.
    """
    flags = kwargs.get("cachesaver")
    payload = kwargs.get("standard_logging_object")
    if not isinstance(flags, Mapping) or not isinstance(payload, dict) or "cost_saved" not in flags:
        return
    if any(flags.get("cached") or []):
        payload["saved_cache_cost"] = float(flags.get("cost_saved") or 0.0)


def client_error(exc: BaseException) -> Optional[BaseException]:
    """The CacheSaver request error behind ``exc`` (litellm wraps it), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (InvalidRequestError, InvalidRequestTypeError)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class ProxyHooks(CustomLogger):
    """LiteLLM Proxy hooks for ``cachesaver/`` deployments (other requests are left alone):

    - the ``x-cachesaver-*`` response headers (:func:`response_headers`);
    - a request CacheSaver refuses (:class:`~cachesaver.errors.InvalidRequestError`, e.g. an
      empty namespace, a control character in a name, a NaN parameter, an over-long header)
      answers HTTP 400 with its message; litellm would report it as a 500 connection error.
      The provider raises these while it builds the engine request, before any upstream call;
      this failure hook only changes the status the client sees;
    - the logged cost of streamed responses (:func:`correct_stream_cost`), which the proxy's
      spend tracking reads, and the logged saving of responses that reused samples (:func:`log_saving`).
    """

    async def async_logging_hook(self, kwargs: dict, result: Any, call_type: str) -> tuple[dict, Any]:
        try:
            correct_stream_cost(kwargs)
            log_saving(kwargs)
        except Exception as exc:  # a logging hook must never break logging
            log.debug("could not correct the logged cost or saving of a cachesaver response: %r", exc)
        return kwargs, result

    def logging_hook(self, kwargs: dict, result: Any, call_type: str) -> tuple[dict, Any]:
        try:
            correct_stream_cost(kwargs)
            log_saving(kwargs)
        except Exception as exc:
            log.debug("could not correct the logged cost or saving of a cachesaver response: %r", exc)
        return kwargs, result

    async def async_post_call_response_headers_hook(self, data: dict, user_api_key_dict: Any, response: Any,
                                                    request_headers: Optional[dict] = None,
                                                    litellm_call_info: Optional[dict] = None) -> Optional[dict]:
        try:
            flags = _flags_of(data, response)
            return response_headers(flags) if flags is not None else None
        except Exception as exc:  # a header hook must never fail a response
            log.debug("could not build cachesaver response headers: %r", exc)
            return None

    async def async_post_call_failure_hook(self, request_data: dict, original_exception: Exception,
                                           user_api_key_dict: Any, traceback_str: Optional[str] = None) -> Any:
        refused = client_error(original_exception)
        if refused is None:
            return None
        from fastapi import HTTPException

        return HTTPException(status_code=400, detail=str(refused))
