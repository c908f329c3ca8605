"""What goes into a cache key, and what only travels to the real call.

The key is the engine's canonical SHA-256 of ``{prompt: messages, model, params}``:

- ``model``: the real model as ``provider/name`` (``gpt-4o-mini`` and ``openai/gpt-4o-mini`` are
  one model), never the ``cachesaver/`` prefix, so a Router deployment and a direct call share samples;
- ``messages``: plain dicts with ``None`` values dropped (pydantic messages dumped);
- ``params``: litellm's ``optional_params`` minus what never shapes the output distribution:
  ``n`` (the engine's business), stream flags, retries and transport settings. Unknown
  parameters *are* keyed (a parameter we do not know might change the answer).

Credentials never enter a key (G7): anything that looks like a secret is moved to the
transport side even when litellm files it among the optional params.
"""
from __future__ import annotations

import functools
import logging
import re
from typing import Any, Iterable, Mapping

from ._http_identity import identity_from_headers

__all__ = [
    "split_params",
    "normalise_messages",
    "normalise_model",
    "metadata_value",
    "NOT_KEYED_PARAMS",
]

log = logging.getLogger("cachesaver.litellm.keys")

#: Optional params that never shape the output distribution (see module docstring).
NOT_KEYED_PARAMS = frozenset(
    {
        "n",
        "stream",
        "stream_options",
        "max_retries",
        "num_retries",
        "timeout",
        "request_timeout",
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "organization",
        "headers",
        "extra_headers",
        "metadata",
        "litellm_metadata",
        "caching",
        "cache",
        "drop_params",
        "additional_drop_params",
        "ssl_verify",
        "client",
        "litellm_logging_obj",
        "litellm_call_id",
        "litellm_trace_id",
        "litellm_session_id",
        "proxy_server_request",
        "mock_response",
        "fallbacks",
        "context_window_fallback_dict",
    }
)

# Secrets by name: matched anywhere in a parameter name (max_tokens is not a secret).
_SECRET = re.compile(r"(api_key|secret|password|credential|access_key|session_token|ad_token|auth_token|bearer)", re.I)


def is_transport(name: str) -> bool:
    """True for parameters that go to the real call but never into the key."""
    return name in NOT_KEYED_PARAMS or bool(_SECRET.search(name))


def split_params(optional_params: Mapping[str, Any], extra_unkeyed: Iterable[str] = ()) -> tuple[dict, dict]:
    """Split litellm's ``optional_params`` into ``(keyed, transport)`` dicts (neither mutated)."""
    extra = frozenset(extra_unkeyed)
    keyed: dict[str, Any] = {}
    transport: dict[str, Any] = {}
    for name, value in optional_params.items():
        if is_transport(name) or name in extra:
            transport[name] = value
        elif value is not None:
            keyed[name] = value
    return keyed, transport


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


def metadata_value(litellm_params: Mapping[str, Any] | None, name: str) -> Any:
    """Read ``name`` from ``metadata`` or ``litellm_metadata`` (Router and proxy use either),
    else from the request's ``x-cachesaver-*`` headers (LiteLLM Proxy; see ``_http_identity``)."""
    if not litellm_params:
        return None
    for field in ("metadata", "litellm_metadata"):
        meta = litellm_params.get(field)
        if isinstance(meta, Mapping) and meta.get(name) is not None:
            return meta[name]
    return identity_from_headers(litellm_params).get(name)
