"""The ``cachesaver/<model>`` provider: a ``litellm.CustomLLM`` in front of the engine.

``litellm.acompletion(model="cachesaver/openai/gpt-4o-mini", ...)`` reaches
:class:`CacheSaverLLM`, which turns the call into an engine request (key from the real model,
messages and output-shaping params; namespace and request id from metadata) and hands it to the
runtime's :class:`~cachesaver.runtime.HostedPipeline`: a hit is answered on the caller's own
thread, a miss on the engine's loop. On a miss the engine calls the real model through
``litellm.acompletion`` inside ``litellm._internal_context.internal_sub_call()``, so litellm
logs and bills the call once, as the outer ``cachesaver/`` call, with the cost the engine billed
to that caller.

Streaming: a stored sample replays as a stream of chunks; a miss streams live to the caller the
engine hands the first new sample to, and is stored whole when it ends.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator, Mapping, Optional

import litellm
from litellm import CustomLLM
from litellm.utils import custom_llm_setup

from cachesaver.errors import InvalidRequestTypeError
from cachesaver.pipelines import OnlineAPI
from cachesaver.runtime import (
    NAMESPACE_KEY,
    REQUEST_ID_KEY,
    HostedPipeline,
    PipelineSettings,
    check_n,
    check_namespace,
    read_identity,
)
from cachesaver.runtime.host import SHUTDOWN_TIMEOUT
from cachesaver.secrets import url_without_userinfo
from cachesaver.stats import Stats
from cachesaver.typedefs import Response

from ._backend import LiteLLMBackend, LiteLLMRequest, RealCall, supports_n
from ._callback import CostCallback, never_store, record_call
from ._capabilities import mirror_known_models
from ._dspy_guard import install_if_loaded as guard_dspy_cache
from ._keys import normalise_messages, normalise_model, split_params
from ._namespace_warning import warn_no_namespace_once
from ._samples import build_response
from ._streams import async_stream, sync_stream

__all__ = [
    "CacheSaverLLM",
    "register",
    "unregister",
    "get_pipeline",
    "get_handler",
    "stats",
    "consumption",
    "PROVIDER",
    "NAMESPACE_KEY",
    "REQUEST_ID_KEY",
]

log = logging.getLogger("cachesaver.litellm.provider")

PROVIDER = "cachesaver"

#: litellm_params worth forwarding to the real call (credentials and pricing, never keyed).
FORWARDED_LITELLM_PARAMS = (
    "api_version",
    "azure_ad_token",
    "azure_ad_token_provider",
    "azure_username",
    "azure_password",
    "azure_scope",
    "client_id",
    "client_secret",
    "tenant_id",
    "base_model",
    "drop_params",
    "ssl_verify",
    "input_cost_per_token",
    "output_cost_per_token",
    "input_cost_per_second",
    "output_cost_per_second",
    "cost_per_query",
)


def _internal_sub_call():
    """litellm's private 'nested call' marker (pinned: litellm 1.110.x); a no-op if missing."""
    try:
        from litellm._internal_context import internal_sub_call
    except ImportError:  # pragma: no cover - other litellm versions
        log.warning("litellm._internal_context.internal_sub_call is missing in litellm %s: "
                    "inner calls will be logged and costed twice", getattr(litellm, "version", "?"))
        return contextlib.nullcontext
    return internal_sub_call


def _make_backend() -> LiteLLMBackend:
    """The engine model (built again in a forked child)."""
    return LiteLLMBackend(wrap_call=_internal_sub_call())


class CacheSaverLLM(CustomLLM):
    """litellm handler for ``cachesaver/<real model>``: one engine run per handler.

    Build it with :func:`register`. litellm calls every entry point with keywords only
    (``model``, ``messages``, ``optional_params``, ``litellm_params``, ``api_key``, ...).
    """

    def __init__(self, hosted: HostedPipeline, key_api_base: bool = False) -> None:
        super().__init__()
        self.hosted = hosted
        self.settings = hosted.settings
        self.key_api_base = key_api_base

    @property
    def pipeline(self) -> OnlineAPI:
        return self.hosted.pipeline

    @property
    def closed(self) -> bool:
        return self.hosted.closed

    async def aclose(self) -> None:
        """Close the engine run; ``unregister()`` is the public way."""
        await self.hosted.aclose()

    # -- litellm entry points ------------------------------------------------------------------
    async def acompletion(self, **call: Any) -> Any:
        request = self._request(call)
        return self._finish(request, await self.hosted.request_async(request), call)

    def completion(self, **call: Any) -> Any:
        request = self._request(call)
        return self._finish(request, self.hosted.request_sync(request), call)

    async def astreaming(self, **call: Any) -> AsyncIterator[Any]:
        request = self._request(call)
        async for chunk in async_stream(self.hosted, request, lambda r: self._finish(request, r, call, True)):
            yield chunk

    def streaming(self, **call: Any) -> Iterator[Any]:
        request = self._request(call)
        return sync_stream(self.hosted, request, lambda r: self._finish(request, r, call, True))

    # -- conversion ------------------------------------------------------------------------------
    def _request(self, call: Mapping[str, Any]) -> LiteLLMRequest:
        never_store(call.get("logging_obj"))
        return build_request(
            model=call.get("model"),
            messages=call.get("messages"),
            optional_params=call.get("optional_params") or {},
            litellm_params=call.get("litellm_params") or {},
            api_key=call.get("api_key"),
            api_base=call.get("api_base"),
            headers=call.get("headers"),
            timeout=call.get("timeout"),
            default_namespace=self.settings.namespace,
            key_api_base=self.key_api_base,
        )

    def _finish(self, request: LiteLLMRequest, result: Response, call: Mapping[str, Any],
                stream: bool = False) -> Any:
        real = request.call
        response = build_response(
            result,
            namespace=request.namespace,
            request_id=request.request_id,
            key=result.key or "",
            model=request.model,
            provider=real.provider if real is not None else "",
        )
        hidden = response._hidden_params
        details = getattr(call.get("logging_obj"), "model_call_details", None)
        if isinstance(details, dict):
            # Streams are logged from the chunks, not from this response: the flags travel here.
            details["cachesaver"] = hidden["cachesaver"]
            # Log under the real provider, as litellm's own cache hits are: its cost map is keyed
            # by it (pricing and saved-cost lookups stay exact and take the fast path).
            if hidden.get("custom_llm_provider"):
                details["custom_llm_provider"] = hidden["custom_llm_provider"]
            if stream and hidden["cache_hit"]:
                details["cache_hit"] = True
        record_call(hidden["cachesaver"], response)  # the cost tally is complete on return
        return response


def build_request(*, model: Any, messages: Any, optional_params: Mapping[str, Any],
                  litellm_params: Mapping[str, Any], api_key: Any, api_base: Any, headers: Any, timeout: Any,
                  default_namespace: str, key_api_base: bool) -> LiteLLMRequest:
    """The engine request for one ``cachesaver/`` call (see ``_keys`` for what is keyed)."""
    if not isinstance(model, str) or not model:
        raise InvalidRequestTypeError("model must be 'cachesaver/<litellm model>', e.g. 'cachesaver/openai/gpt-4o-mini'")
    keyed_model, provider = normalise_model(model)
    n = check_n(optional_params.get("n"))
    metadata = (litellm_params.get("metadata"), litellm_params.get("litellm_metadata"))
    if not any(isinstance(m, Mapping) and m.get(NAMESPACE_KEY) is not None for m in metadata):
        warn_no_namespace_once(model, default_namespace)  # once per process (see _namespace_warning)
    namespace, request_id = read_identity(*metadata, default_namespace=default_namespace)
    keyed, kwargs = split_params(optional_params)
    for name in FORWARDED_LITELLM_PARAMS:
        value = litellm_params.get(name)
        if value is not None:
            kwargs.setdefault(name, value)
    for name, value in (("api_key", api_key), ("api_base", api_base), ("timeout", timeout)):
        if value is not None:
            kwargs[name] = value
    if headers:
        kwargs["headers"] = dict(headers)
    name = keyed_model.partition("/")[2] or keyed_model
    return LiteLLMRequest(
        prompt=normalise_messages(messages),
        n=n,
        request_id=request_id,
        namespace=namespace,
        model=keyed_model,
        params=keyed,
        endpoint=url_without_userinfo(str(api_base)) if key_api_base and api_base else None,
        call=RealCall(
            invoke=litellm.acompletion,
            model=model,
            messages=messages,
            kwargs=kwargs,
            use_n=functools.partial(supports_n, name, provider),
            provider=provider,
        ),
    )


# -- registration ----------------------------------------------------------------------------------
_lock = threading.RLock()
_handler: Optional[CacheSaverLLM] = None
_callback: Optional[CostCallback] = None


def register(store: Any = "./.cachesaver", *, batch_size: int = 64, timeout: float = 0.02,
             run_id: Optional[str] = None, namespace: str = "default", key_api_base: bool = False,
             offline: bool = False, cost_callback: bool = True) -> CacheSaverLLM:
    """Add the ``cachesaver`` provider to litellm; ``cachesaver/<model>`` then goes through the engine.

    ``store`` takes what the engine's ``cache=`` takes (a directory path, a ``diskcache.Cache``,
    ``"memory"``, a ``redis://`` URL or a cachesaver store). ``batch_size``/``timeout`` close a
    batch of misses; ``run_id`` shares one usage ledger between processes; ``namespace`` is used
    when a call's metadata has no ``cachesaver_namespace``; ``key_api_base=True`` keys samples
    on the endpoint too (for different servers that serve different models under one name);
    ``offline=True`` serves stored samples only and turns every miss into an
    ``OfflineMissError`` without calling a model (a bundle as ``store`` is always offline).

    Idempotent: registering again with the same settings returns the same handler (same run,
    same ledger); other settings close the old engine and install a new one. Also installs a
    :class:`CostCallback` (``cost_callback=False`` to skip) that keeps a user's global
    ``litellm.cache`` away from ``cachesaver/`` calls and tallies litellm's cost per model.
    """
    global _handler
    check_namespace(namespace)
    settings = PipelineSettings(store, batch_size=batch_size, timeout=timeout, run_id=run_id, namespace=namespace,
                                extra={"offline": bool(offline)})
    mirror_known_models()  # cachesaver/<model> reports what <model> reports (see _capabilities)
    guard_dspy_cache()  # warns once if DSPy's own cache sits in front of cachesaver/ (see _dspy_guard)
    with _lock:
        current = _handler
        if (current is not None and not current.closed and current.settings.same_as(settings)
                and current.key_api_base == bool(key_api_base)):
            _install(current)
            _ensure_callback(cost_callback)
            return current
        handler = CacheSaverLLM(HostedPipeline(_make_backend, settings), bool(key_api_base))
        old, _handler = _handler, handler
        _install(handler)
        _ensure_callback(cost_callback)
    if old is not None:
        _close_handler(old)
    # The store's location, not what the user passed: a redis:// URL may carry a password.
    log.debug("registered litellm provider %r (store at %s)", PROVIDER, handler.pipeline.store.location)
    return handler


def _install(handler: CacheSaverLLM) -> None:
    entries = [e for e in litellm.custom_provider_map if e.get("provider") != PROVIDER]
    entries.append({"provider": PROVIDER, "custom_handler": handler})
    litellm.custom_provider_map = entries
    custom_llm_setup()  # litellm also runs it on every call; running it now makes the name known at once


def _ensure_callback(wanted: bool) -> None:
    global _callback
    if wanted:
        if _callback is None:
            _callback = CostCallback()
        if _callback not in litellm.callbacks:
            litellm.logging_callback_manager.add_litellm_callback(_callback)
    elif _callback is not None:
        litellm.logging_callback_manager.remove_callback_from_all_lists(_callback)


def unregister() -> None:
    """Remove the provider, close its engine run (committing what is in flight) and its callback."""
    global _handler, _callback
    with _lock:
        handler, _handler = _handler, None
        callback, _callback = _callback, None
        # The name stays in litellm's provider lists: logging threads of calls already made still
        # resolve "cachesaver/..." when they price them, and a new call fails with litellm's
        # clear "unknown provider" error instead of a provider-guessing error.
        litellm.custom_provider_map = [e for e in litellm.custom_provider_map if e.get("provider") != PROVIDER]
        if callback is not None:
            litellm.logging_callback_manager.remove_callback_from_all_lists(callback)
    if handler is not None:
        _close_handler(handler)


def _close_handler(handler: CacheSaverLLM) -> None:
    if handler.closed:
        return
    if not handler.hosted.close(timeout=SHUTDOWN_TIMEOUT):
        # Calls still in flight after SHUTDOWN_TIMEOUT: they finish without holding up
        # register()/unregister().
        log.warning("the replaced cachesaver engine still has calls in flight; not waiting for them")


def get_handler() -> CacheSaverLLM:
    if _handler is None:
        raise RuntimeError("cachesaver_litellm.register() has not been called")
    return _handler


def get_pipeline() -> OnlineAPI:
    """The engine pipeline behind ``cachesaver/`` models (for ``.stats`` and ``.store``)."""
    return get_handler().pipeline


def stats() -> Stats:
    """The engine's counters: ``print(cachesaver_litellm.stats().summary())``."""
    return get_pipeline().stats


def consumption() -> Any:
    """What this run handed out so far, ``{namespace: {key: samples}}``: pass it to
    ``cachesaver.bundle.write_bundle`` to publish exactly the samples behind a result."""
    return get_handler().hosted.consumption()


def get_callback() -> Optional[CostCallback]:
    return _callback
