"""The inner chat model: applying the wrapper's standard parameters to it, and a snapshot of what
every call reads from it.

Standard parameters (``temperature``, ``max_tokens``, ``timeout``, ``stop``, ``max_retries``,
``api_key``) given to the wrapper go to the inner model where it has them (by name or alias).
Models build their SDK clients from several of these at construction, so the inner model is
rebuilt from its explicitly set fields plus the new values (never mutated: it may be shared).

Every call needs the inner model's invocation parameters (for the key) and tracing parameters;
computing them costs more than the rest of a cache hit, so :class:`InnerView` keeps them and
recomputes only when an attribute of the inner model is reassigned (LangChain's own cache
serialises a model once and never looks again).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from langchain_core.language_models import BaseChatModel

from cachesaver.keypolicy import split_transport

from ._codec import TRANSPORT_PARAMS

__all__ = ["FORWARDED", "configure_inner", "field_for", "InnerView"]

log = logging.getLogger("cachesaver.langchain")

#: Constructor parameters of LangChain's standard interface, applied to the inner model.
FORWARDED = ("temperature", "max_tokens", "timeout", "stop", "max_retries", "api_key")
#: SDK clients that models build from their other fields; dropped when the model is rebuilt.
_SDK_CLIENTS = frozenset({"client", "async_client", "root_client", "root_async_client"})


def field_for(fields: Mapping[str, Any], name: str) -> Optional[str]:
    """The field a constructor argument ``name`` sets (by name or alias), if any."""
    if name in fields:
        return name
    for field_name, info in fields.items():
        if info.alias == name or info.validation_alias == name:
            return field_name
    return None


def configure_inner(inner: BaseChatModel, given: Mapping[str, Any], *, new_process: bool = False) -> BaseChatModel:
    """``inner`` with the standard parameters in ``given`` applied (a rebuilt copy if needed).

    The inner model's own ``streaming`` is turned off: the wrapper decides when to stream, and
    a streaming ``_agenerate`` cannot return ``n`` generations. ``new_process=True`` (a forked
    child): the HTTP client the copy holds belongs to the parent's engine loop, so a new one is
    made even if the copy was given one.
    """
    cls = type(inner)
    fields = cls.model_fields
    updates: dict[str, Any] = {}
    for name, value in given.items():
        target = field_for(fields, name)
        if target is None:
            log.debug("%s has no %r parameter; not applied", cls.__name__, name)
        elif getattr(inner, target, None) != value:
            updates[target] = value
    if "streaming" in fields and getattr(inner, "streaming", False) is True:
        updates["streaming"] = False
    # The wrapper runs the inner model on its own event loop. An SDK client the caller already
    # used on theirs is bound to that loop, so models that hold SDK clients get a private copy
    # with fresh ones (the caller's model is never touched).
    private_copy = bool(_SDK_CLIENTS & set(fields))
    if not updates and not private_copy:
        return inner
    if private_copy and "http_async_client" in fields and (
            new_process or "http_async_client" not in inner.model_fields_set):
        # langchain-openai shares one cached httpx client per base_url across all instances;
        # its pooled connections belong to whichever loop used them first.
        fresh = _fresh_async_http_client()
        if fresh is not None:
            updates["http_async_client"] = fresh
    by_name = bool(cls.model_config.get("populate_by_name") or cls.model_config.get("validate_by_name"))

    def arg(name: str) -> str:
        alias = fields[name].alias
        return name if by_name or not alias else alias

    kwargs = {
        arg(name): getattr(inner, name)
        for name in inner.model_fields_set - _SDK_CLIENTS - {"http_async_client"} - set(updates)
        if name in fields
    }
    if "http_async_client" in inner.model_fields_set and "http_async_client" not in updates:
        kwargs[arg("http_async_client")] = inner.http_async_client  # type: ignore[attr-defined]
    kwargs.update({arg(name): value for name, value in updates.items()})
    try:
        return cls(**kwargs)
    except Exception as exc:
        if not updates:  # only the private copy failed: the original model still works
            log.debug("could not rebuild %s with fresh clients (%s); using it as given", cls.__name__, exc)
            return inner
        raise ValueError(
            f"could not apply {sorted(updates)} to {cls.__name__} ({exc}); pass these "
            "parameters to the inner model instead of CacheSaverChatModel"
        ) from exc


class InnerView:
    """Per-call reads of the inner model, kept until one of its attributes is reassigned."""

    __slots__ = ("inner", "_values", "params", "ls_params", "identifying", "has_stop")

    def __init__(self, inner: BaseChatModel) -> None:
        self.inner = inner
        self._values = tuple(inner.__dict__.values())
        params = inner._get_invocation_params(stop=None)
        self.params = split_transport(params, TRANSPORT_PARAMS)[0]
        self.ls_params = dict(inner._get_ls_params(stop=None))
        self.identifying = {"_type": inner._llm_type, **inner._identifying_params}
        self.has_stop = field_for(type(inner).model_fields, "stop") is not None

    @classmethod
    def of(cls, inner: BaseChatModel, previous: Optional["InnerView"]) -> "InnerView":
        # Tuple equality checks identity first, element by element, in C: ~1 us.
        if previous is not None and previous.inner is inner and tuple(inner.__dict__.values()) == previous._values:
            return previous
        return cls(inner)

    def key_params(self, stop: Optional[list[str]], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """What shapes this call's output: the model's parameters, the call's stop and kwargs.

        The call's ``stop`` wins over the model's, as it does in the request sent.
        """
        params = dict(self.params)
        if stop is not None:
            params["stop"] = stop
        params.update(split_transport(kwargs, TRANSPORT_PARAMS)[0])
        return params


def _fresh_async_http_client() -> Any:
    """A new async HTTP client of the kind openai builds by default (None if openai is absent)."""
    try:
        import openai
    except ImportError:
        return None
    return openai.DefaultAsyncHttpxClient()
