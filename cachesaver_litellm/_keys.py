"""What goes into a cache key, and what only travels to the real call.

The key is the engine's canonical SHA-256 of ``{prompt: messages, model, params}``:

- ``model``: the real model as ``provider/name`` (``gpt-4o-mini`` and ``openai/gpt-4o-mini`` are
  one model), never the ``cachesaver/`` prefix, so a Router deployment and a direct call share samples;
- ``messages``: plain dicts with ``None`` values dropped (pydantic messages dumped);
- ``params``: litellm's ``optional_params`` minus what never shapes the output distribution:
  ``n`` (the engine's business), stream flags, retries and transport settings. Unknown
  parameters *are* keyed (a parameter we do not know might change the answer).

Credentials never enter a key (G7): by name or by value, at any depth (``extra_body``
included), with the engine's one rule (``cachesaver.secrets``); the real call still gets them.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any, Iterable

from cachesaver.secrets import is_secret_name, without_secrets

__all__ = [
    "split_params",
    "normalise_messages",
    "normalise_model",
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

def is_transport(name: str) -> bool:
    """True for parameters that go to the real call but never into the key."""
    return name in NOT_KEYED_PARAMS or is_secret_name(name)


def split_params(optional_params: Mapping[str, Any], extra_unkeyed: Iterable[str] = ()) -> tuple[dict, dict]:
    """``(keyed, sent)`` from litellm's ``optional_params`` (never mutated).

    ``keyed``: what shapes the output, with every credential removed at any depth (the
    engine's one rule, :func:`cachesaver.secrets.without_secrets`); ``sent``: every parameter
    the real call receives (all of them but the engine's ``n`` and the stream flags).
    """
    extra = frozenset(extra_unkeyed)
    keyed: dict[str, Any] = {}
    sent: dict[str, Any] = {}
    for name, value in optional_params.items():
        if value is None:
            continue
        if name not in _NOT_SENT:
            sent[name] = value
        if not (is_transport(name) or name in extra):
            keyed[name] = value
    return without_secrets(keyed), sent


#: Parameters the engine owns: ``n`` is the missing count, streaming is the adapter's choice.
_NOT_SENT = frozenset({"n", "stream", "stream_options"})


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
