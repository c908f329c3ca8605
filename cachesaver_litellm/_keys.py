"""What goes into a cache key, and what only travels to the real call.

The key is the engine's canonical SHA-256 of ``{prompt: messages, model, params}``:

- ``model``: the real model as ``provider/name`` (``gpt-4o-mini`` and ``openai/gpt-4o-mini`` are
  one model), never the ``cachesaver/`` prefix, so a Router deployment and a direct call share samples;
- ``messages``: plain dicts with ``None`` values dropped (pydantic messages dumped);
- ``params``: litellm's ``optional_params`` minus the transport fields of
  :data:`LITELLM_TRANSPORT` (the engine's :data:`cachesaver.keypolicy.TRANSPORT` plus litellm's
  own: caching switches, retries and fallbacks, logging and tracing ids, ``mock_response``,
  and the provider credential fields litellm declares in ``CredentialLiteLLMParams``),
  everything else verbatim at any depth: ``extra_body``, tools, ``response_format``, ``stop`` and
  unknown parameters (a parameter we do not know might change the answer).

Credentials travel in transport fields (``api_key``, ``headers``, ``api_base``, litellm's
``azure_ad_token`` and friends), so they never enter a key; nothing else is dropped because of
how it looks (:mod:`cachesaver.keypolicy`).
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any, Iterable

from cachesaver.keypolicy import TRANSPORT, split_transport

__all__ = [
    "split_params",
    "normalise_messages",
    "normalise_model",
    "LITELLM_TRANSPORT",
]

log = logging.getLogger("cachesaver.litellm.keys")

def _litellm_credentials() -> frozenset[str]:
    """The provider credential and endpoint fields litellm itself declares (Azure AD, AWS,
    Vertex, Watsonx, workload identity ...): they may arrive among ``optional_params``."""
    names: set[str] = set()
    try:
        from litellm.types.router import CredentialLiteLLMParams

        names.update(CredentialLiteLLMParams.model_fields)
    except ImportError:  # pragma: no cover - other litellm versions
        log.debug("litellm.types.router.CredentialLiteLLMParams is missing")
    try:
        from litellm.litellm_core_utils.get_litellm_params import AWS_CREDENTIAL_KWARGS_KEYS

        names.update(AWS_CREDENTIAL_KWARGS_KEYS)
    except ImportError:  # pragma: no cover - other litellm versions
        log.debug("litellm's AWS_CREDENTIAL_KWARGS_KEYS is missing")
    return frozenset(names | {"azure_ad_token", "azure_ad_token_provider"})


#: litellm's transport fields beyond the engine's (see module docstring): never keyed.
LITELLM_TRANSPORT = TRANSPORT | frozenset(
    {
        "litellm_metadata",
        "caching",
        "cache",
        "drop_params",
        "additional_drop_params",
        "ssl_verify",
        "litellm_logging_obj",
        "litellm_call_id",
        "litellm_trace_id",
        "litellm_session_id",
        "proxy_server_request",
        "mock_response",
        "fallbacks",
        "context_window_fallback_dict",
        "disable_fallbacks",
    }
) | _litellm_credentials()

#: Parameters the engine owns: ``n`` is the missing count, streaming is the adapter's choice.
#: Fallbacks are never sent to the inner call: its samples are stored under the keyed model, so
#: that model alone must answer (a Router or CacheSaverRouter applies fallbacks above the cache).
_NOT_SENT = frozenset({"n", "stream", "stream_options", "fallbacks", "context_window_fallback_dict"})


def split_params(optional_params: Mapping[str, Any], extra_unkeyed: Iterable[str] = ()) -> tuple[dict, dict]:
    """``(keyed, sent)`` from litellm's ``optional_params`` (never mutated).

    ``keyed``: what shapes the output, verbatim (everything but :data:`LITELLM_TRANSPORT` and
    ``extra_unkeyed``); ``sent``: every parameter the real call receives (all but the engine's
    ``n``, the stream flags and fallbacks).
    """
    transport = LITELLM_TRANSPORT | frozenset(extra_unkeyed) if extra_unkeyed else LITELLM_TRANSPORT
    return split_transport(optional_params, transport, _NOT_SENT)


def normalise_messages(messages: Any) -> list:
    """Messages as plain JSON-like dicts, ``None`` values dropped (key material only)."""
    if messages is None:
        raise TypeError("messages is required: pass a list of chat messages (dicts with role/content)")
    if not isinstance(messages, (list, tuple)):
        raise TypeError(
            f"messages must be a list of chat messages, got {type(messages).__name__}; "
            "pass e.g. [{'role': 'user', 'content': '...'}]"
        )
    return [_plain(m) for m in messages]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, type):  # a pydantic class (response_format): the engine hashes its schema
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return _plain(dump(exclude_none=True))
    return value


@functools.lru_cache(maxsize=4096)
def normalise_model(model: str) -> tuple[str, str]:
    """``(provider/name, provider)`` as litellm resolves ``model``; unknown models stay as given."""
    import litellm

    try:
        name, provider, _, _ = litellm.get_llm_provider(model=model)
    except Exception:  # an unknown model fails later, in the real call, with litellm's own error
        head, _, tail = model.partition("/")
        return model, head if tail else ""
    return f"{provider}/{name}", provider
