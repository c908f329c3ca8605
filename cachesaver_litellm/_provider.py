"""The ``cachesaver/<model>`` provider: a ``litellm.CustomLLM`` in front of the engine.

``litellm.acompletion(model="cachesaver/openai/gpt-4o-mini", ...)`` reaches
:class:`CacheSaverLLM`, which turns the call into an engine request (key from the real model,
messages and output-shaping params; namespace and request id from metadata), awaits the
engine on the shared background loop and rebuilds a fresh ``ModelResponse`` for the caller.
On a miss the engine calls the real model through ``litellm.acompletion`` inside
``litellm._internal_context.internal_sub_call()``, so litellm logs and bills the call once,
as the outer ``cachesaver/`` call, with the cost the engine billed to that caller.

Streaming: a stored sample replays as a stream of chunks. A miss is generated through the
engine (a normal, non-streamed real call, so it can be stored and merged) and then replayed;
time-to-first-token of a miss is therefore the full generation time.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import os
import threading
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Iterator, Mapping, Optional

import litellm
from litellm import CustomLLM
from litellm.utils import custom_llm_setup

from cachesaver.errors import InvalidRequestError, InvalidRequestTypeError
from cachesaver.keys import request_key
from cachesaver.pipelines import OnlineAPI
from cachesaver.stats import Stats

from ._backend import LiteLLMBackend, LiteLLMRequest, RealCall, supports_n
from ._callback import CostCallback, never_store
from ._capabilities import mirror_known_models
from ._dspy_guard import install_if_loaded as guard_dspy_cache
from ._namespace_warning import warn_no_namespace_once
from ._keys import metadata_value, normalise_messages, normalise_model, split_params
from ._loop import LoopThread, acquire_loop, release_loop, track
from ._samples import build_response, stream_chunks

__all__ = [
    "CacheSaverLLM",
    "register",
    "unregister",
    "get_pipeline",
    "get_handler",
    "stats",
    "PROVIDER",
    "NAMESPACE_KEY",
    "REQUEST_ID_KEY",
]

log = logging.getLogger("cachesaver.litellm.provider")

PROVIDER = "cachesaver"
NAMESPACE_KEY = "cachesaver_namespace"
REQUEST_ID_KEY = "cachesaver_request_id"

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


@dataclass(frozen=True)
class _Settings:
    store: Any
    batch_size: int
    timeout: float
    run_id: Optional[str]
    namespace: str
    key_api_base: bool

    def same_as(self, other: "_Settings") -> bool:
        """Same engine settings: paths compare by value, store objects by identity."""
        paths = (str, os.PathLike)
        if isinstance(self.store, paths) and isinstance(other.store, paths):
            store_same = os.fspath(self.store) == os.fspath(other.store)
        else:
            store_same = self.store is other.store
        return store_same and replace(self, store=None) == replace(other, store=None)


class CacheSaverLLM(CustomLLM):
    """litellm handler for ``cachesaver/<real model>``; one engine pipeline per handler.

    Build it with :func:`register`. Every entry point (``acompletion``, sync ``completion``,
    ``astreaming``, ``streaming``) runs the engine on the shared background loop.
    """

    def __init__(self, pipeline: OnlineAPI, loop_thread: LoopThread, settings: _Settings) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.loop_thread = loop_thread
        self.settings = settings
        self.closed = False
        track(self)

    async def aclose(self) -> None:
        """Close the engine (on the background loop); ``unregister()`` is the public way."""
        self.closed = True
        await self.pipeline.aclose()

    # -- litellm entry points ------------------------------------------------------------------
    async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                          encoding, api_key, logging_obj, optional_params, acompletion=None, litellm_params=None,
                          logger_fn=None, headers={}, timeout=None, client=None, **_: Any):
        prepared = self._prepare(model, messages, api_base, api_key, optional_params, litellm_params, headers,
                                 timeout, logging_obj)
        result = await self.loop_thread.run_async(self.pipeline.request(prepared.request))
        return self._finish(prepared, result, logging_obj)

    def completion(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                   encoding, api_key, logging_obj, optional_params, acompletion=None, litellm_params=None,
                   logger_fn=None, headers={}, timeout=None, client=None, **_: Any):
        prepared = self._prepare(model, messages, api_base, api_key, optional_params, litellm_params, headers,
                                 timeout, logging_obj)
        result = self.loop_thread.run_sync(self.pipeline.request(prepared.request))
        return self._finish(prepared, result, logging_obj)

    async def astreaming(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                         encoding, api_key, logging_obj, optional_params, acompletion=None, litellm_params=None,
                         logger_fn=None, headers={}, timeout=None, client=None, **_: Any) -> AsyncIterator[Any]:
        prepared = self._prepare(model, messages, api_base, api_key, optional_params, litellm_params, headers,
                                 timeout, logging_obj)
        result = await self.loop_thread.run_async(self.pipeline.request(prepared.request))
        response = self._finish(prepared, result, logging_obj, stream=True)
        for chunk in stream_chunks(response):
            yield chunk

    def streaming(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                  encoding, api_key, logging_obj, optional_params, acompletion=None, litellm_params=None,
                  logger_fn=None, headers={}, timeout=None, client=None, **_: Any) -> Iterator[Any]:
        prepared = self._prepare(model, messages, api_base, api_key, optional_params, litellm_params, headers,
                                 timeout, logging_obj)
        result = self.loop_thread.run_sync(self.pipeline.request(prepared.request))
        response = self._finish(prepared, result, logging_obj, stream=True)
        return stream_chunks(response)

    # -- conversion --------------------------------------------------------------------------------
    def _prepare(self, model, messages, api_base, api_key, optional_params, litellm_params, headers, timeout,
                 logging_obj) -> "_Prepared":
        if self.closed:
            raise RuntimeError(
                "this cachesaver provider was unregistered or replaced; call cachesaver_litellm.register() again"
            )
        never_store(logging_obj)
        request = build_request(
            model=model,
            messages=messages,
            optional_params=optional_params or {},
            litellm_params=litellm_params or {},
            api_key=api_key,
            api_base=api_base,
            headers=headers,
            timeout=timeout,
            default_namespace=self.settings.namespace,
            key_api_base=self.settings.key_api_base,
        )
        return _Prepared(request, request_key(request))

    def _finish(self, prepared: "_Prepared", result: Any, logging_obj: Any, stream: bool = False) -> Any:
        request = prepared.request
        call = request.call
        response = build_response(
            result,
            namespace=request.namespace,
            request_id=request.request_id,
            key=prepared.key,
            model=request.model,
            provider=call.provider if call is not None else "",
        )
        hidden = response._hidden_params
        details = getattr(logging_obj, "model_call_details", None)
        if isinstance(details, dict):
            # Streams are logged from the chunks, not from this response: the flags travel here.
            details["cachesaver"] = hidden["cachesaver"]
            # Log under the real provider, as litellm's own cache hits are: its cost map is keyed
            # by it (pricing and saved-cost lookups stay exact and take the fast path).
            if hidden.get("custom_llm_provider"):
                details["custom_llm_provider"] = hidden["custom_llm_provider"]
            if stream and hidden["cache_hit"]:
                details["cache_hit"] = True
        return response


@dataclass(frozen=True)
class _Prepared:
    request: LiteLLMRequest
    key: str


def build_request(*, model: str, messages: Any, optional_params: Mapping[str, Any],
                  litellm_params: Mapping[str, Any], api_key: Any, api_base: Any, headers: Any, timeout: Any,
                  default_namespace: str, key_api_base: bool) -> LiteLLMRequest:
    """The engine request for one ``cachesaver/`` call (see ``_keys`` for what is keyed)."""
    if not isinstance(model, str) or not model:
        raise InvalidRequestTypeError("model must be 'cachesaver/<litellm model>', e.g. 'cachesaver/openai/gpt-4o-mini'")
    keyed_model, provider = normalise_model(model)
    n = optional_params.get("n")
    n = 1 if n is None else n
    if isinstance(n, bool) or not isinstance(n, int):
        raise InvalidRequestTypeError(f"n must be an int >= 1, got {type(n).__name__}")
    if n < 1:
        raise InvalidRequestError(f"n must be >= 1, got {n}")
    namespace = metadata_value(litellm_params, NAMESPACE_KEY)
    if namespace is None:
        warn_no_namespace_once(model, default_namespace)  # once per process (see _namespace_warning)
        namespace = default_namespace
    if not isinstance(namespace, str) or not namespace:
        raise InvalidRequestTypeError(
            f"metadata['{NAMESPACE_KEY}'] must be a non-empty str, got {namespace!r}"
        )
    request_id = metadata_value(litellm_params, REQUEST_ID_KEY)
    if request_id is None:
        request_id = ""
    if not isinstance(request_id, str):
        raise InvalidRequestTypeError(
            f"metadata['{REQUEST_ID_KEY}'] must be a str, got {type(request_id).__name__}"
        )
    keyed, transport = split_params(optional_params)
    kwargs: dict[str, Any] = dict(keyed)
    for name, value in transport.items():
        if name not in ("n", "stream", "stream_options") and value is not None:
            kwargs[name] = value
    for name in FORWARDED_LITELLM_PARAMS:
        value = litellm_params.get(name)
        if value is not None:
            kwargs.setdefault(name, value)
    if api_key is not None:
        kwargs["api_key"] = api_key
    if api_base is not None:
        kwargs["api_base"] = api_base
    if timeout is not None:
        kwargs["timeout"] = timeout
    if headers:
        kwargs["headers"] = dict(headers)
    name = keyed_model.partition("/")[2] or keyed_model
    call = RealCall(
        invoke=litellm.acompletion,
        model=model,
        messages=messages,
        kwargs=kwargs,
        use_n=functools.partial(supports_n, name, provider),
        provider=provider,
    )
    return LiteLLMRequest(
        prompt=normalise_messages(messages),
        n=n,
        request_id=request_id,
        namespace=namespace,
        model=keyed_model,
        params=keyed,
        endpoint=str(api_base) if key_api_base and api_base else None,
        call=call,
    )


# -- registration ----------------------------------------------------------------------------------
_lock = threading.RLock()
_handler: Optional[CacheSaverLLM] = None
_callback: Optional[CostCallback] = None


def register(store: Any = "./.cachesaver", *, batch_size: int = 64, timeout: float = 0.02,
             run_id: Optional[str] = None, namespace: str = "default", key_api_base: bool = False,
             cost_callback: bool = True) -> CacheSaverLLM:
    """Add the ``cachesaver`` provider to litellm; ``cachesaver/<model>`` then goes through the engine.

    ``store`` takes what the engine's ``cache=`` takes (a directory path, a ``diskcache.Cache``,
    ``"memory"``, a ``redis://`` URL or a cachesaver store). ``batch_size``/``timeout`` close a
    batch of misses; ``run_id`` shares one usage ledger between processes; ``namespace`` is used
    when a call's metadata has no ``cachesaver_namespace``; ``key_api_base=True`` keys samples
    on the endpoint too (for different servers that serve different models under one name).

    Idempotent: registering again with the same settings returns the same handler (same run,
    same ledger); other settings close the old engine and install a new one. Also installs a
    :class:`CostCallback` (``cost_callback=False`` to skip) that keeps a user's global
    ``litellm.cache`` away from ``cachesaver/`` calls and tallies litellm's cost per model.
    """
    global _handler, _callback
    if not isinstance(namespace, str) or not namespace:
        raise InvalidRequestTypeError(f"namespace must be a non-empty str, got {namespace!r}")
    settings = _Settings(store, batch_size, timeout, run_id, namespace, bool(key_api_base))
    mirror_known_models()  # cachesaver/<model> reports what <model> reports (see _capabilities)
    guard_dspy_cache()  # warns once if DSPy's own cache sits in front of cachesaver/ (see _dspy_guard)
    with _lock:
        if _handler is not None and not _handler.closed and _handler.settings.same_as(settings):
            _install(_handler)
            _ensure_callback(cost_callback)
            return _handler
        loop_thread = acquire_loop()
        try:
            pipeline = OnlineAPI(
                model=LiteLLMBackend(wrap_call=_internal_sub_call()),
                cache=store,
                batch_size=batch_size,
                timeout=timeout,
                run_id=run_id,
                namespace=namespace,
            )
        except BaseException:
            release_loop(loop_thread)
            raise
        handler = CacheSaverLLM(pipeline, loop_thread, settings)
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
    """Remove the provider, close its engine (committing what is in flight) and its callback."""
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
    handler.closed = True
    try:
        handler.loop_thread.call(handler.pipeline.aclose)
    except concurrent.futures.TimeoutError:
        # Calls still in flight after SHUTDOWN_TIMEOUT: they finish (or, if this was the loop's
        # last user, are cancelled with it) without holding up register()/unregister().
        log.warning("the replaced cachesaver engine still has calls in flight; not waiting for them")
    finally:
        release_loop(handler.loop_thread)


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


def get_callback() -> Optional[CostCallback]:
    return _callback
