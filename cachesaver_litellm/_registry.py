"""Registering the ``cachesaver`` provider with litellm, and reaching its engine run.

``register()`` is idempotent (same settings: same handler, same run and ledger); other settings
close the old run and install a new one. ``unregister()`` removes the provider and closes its
run, committing what is in flight.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Optional

import litellm
from litellm import CustomLLM
from litellm.utils import custom_llm_setup

from cachesaver.batchapi import BatchAPI
from cachesaver.checks import MAX_CONCURRENT_CALLS, MAX_FANOUT, MAX_N, call_bounds, check_max_n
from cachesaver.errors import InvalidRequestTypeError
from cachesaver.pipelines import OnlineAPI
from cachesaver.runtime import HostedPipeline, PipelineSettings, check_namespace
from cachesaver.runtime.host import SHUTDOWN_TIMEOUT
from cachesaver.stats import Stats

from ._batches import BATCH_BACKEND
from ._callback import CostCallback
from ._capabilities import mirror_known_models
from ._dspy_guard import install_if_loaded as guard_dspy_cache
from ._issue_order import IssueOrder
from ._provider import PROVIDER, CacheSaverLLM, make_backend
from ._unregistered import Unregistered

__all__ = ["register", "unregister", "install_stand_in", "get_handler", "get_pipeline", "get_callback", "stats",
           "consumption"]

log = logging.getLogger("cachesaver.litellm.provider")

_lock = threading.RLock()
_handler: Optional[CacheSaverLLM] = None
_callback: Optional[CostCallback] = None
#: Numbers async calls without an id in issue order (G4); installed with the provider.
_issue_order = IssueOrder(lambda: _handler)
#: Answers ``cachesaver/`` calls while no engine is registered (see ``_unregistered``).
_stand_in = Unregistered()


def register(store: Any = "./.cachesaver", *, batch_size: int = 64, timeout: float = 0.02,
             run_id: Optional[str] = None, namespace: str = "default", key_api_base: bool = False,
             offline: bool = False, cost_callback: bool = True, max_n: int = MAX_N,
             batch_api: Any = False, max_fanout: int = MAX_FANOUT,
             max_concurrent_calls: int = MAX_CONCURRENT_CALLS) -> CacheSaverLLM:
    """Add the ``cachesaver`` provider to litellm; ``cachesaver/<model>`` then goes through the engine.

    ``store`` takes what the engine's ``cache=`` takes (a directory path, a ``diskcache.Cache``,
    ``"memory"``, a ``redis://`` URL or a cachesaver store). ``batch_size``/``timeout`` close a
    batch of misses; ``run_id`` shares one usage ledger between processes; ``namespace`` is used
    when a call's metadata has no ``cachesaver_namespace``; ``key_api_base=True`` keys samples
    on the endpoint too (for different servers that serve different models under one name);
    ``offline=True`` serves stored samples only and turns every miss into an
    ``OfflineMissError`` without calling a model (a bundle as ``store`` is always offline);
    ``max_n`` is the most samples one call may ask for (refused above it, before any cost);
    ``max_fanout`` bounds the provider calls one call's samples take at once from a provider
    without ``n`` (one call per sample), and ``max_concurrent_calls`` the provider calls in
    flight for all callers together, so cost in flight is bounded whatever the callers send;
    ``batch_api=True`` (or a dict of :class:`cachesaver.batchapi.BatchAPI` options such as
    ``{"window": 5.0}``) sends misses through the provider's Batch API at its batch price: a call
    returns when its batch does (see the README's "Batch API mode").

    Idempotent: registering again with the same settings returns the same handler (same run,
    same ledger); other settings close the old engine and install a new one. Also installs a
    :class:`CostCallback` (``cost_callback=False`` to skip) that keeps a user's global
    ``litellm.cache`` away from ``cachesaver/`` calls and tallies litellm's cost per model.
    """
    global _handler
    check_namespace(namespace)
    settings = PipelineSettings(store, batch_size=batch_size, timeout=timeout, run_id=run_id, namespace=namespace,
                                extra={"offline": bool(offline), "max_n": check_max_n(max_n),
                                       **_batch_api(batch_api)},
                                call_bounds=call_bounds(max_fanout, max_concurrent_calls))
    mirror_known_models()  # cachesaver/<model> reports what <model> reports (see _capabilities)
    guard_dspy_cache()  # warns once if DSPy's own cache sits in front of cachesaver/ (see _dspy_guard)
    with _lock:
        current = _handler
        if (current is not None and not current.closed and current.settings.same_as(settings)
                and current.key_api_base == bool(key_api_base)):
            _install(current)
            _ensure_callback(cost_callback)
            return current
        handler = CacheSaverLLM(HostedPipeline(make_backend, settings), bool(key_api_base))
        old, _handler = _handler, handler
        _install(handler)
        _ensure_callback(cost_callback)
    if old is not None:
        _close_handler(old)
    # The store's location, not what the user passed: a redis:// URL may carry a password.
    log.debug("registered litellm provider %r (store at %s)", PROVIDER, handler.pipeline.store.location)
    return handler


def _batch_api(option: Any) -> dict:
    """The engine's ``batch_api=`` for register's ``batch_api`` (False/None: interactive)."""
    if option is None or option is False:
        return {}
    if option is True:
        return {"batch_api": BatchAPI(BATCH_BACKEND)}
    if isinstance(option, dict):
        return {"batch_api": BatchAPI(BATCH_BACKEND, **option)}
    raise InvalidRequestTypeError(
        f"batch_api must be True, False or a dict of BatchAPI options (e.g. {{'window': 5.0}}), got {option!r}")


def _install(handler: CustomLLM) -> None:
    entries = [e for e in litellm.custom_provider_map if e.get("provider") != PROVIDER]
    entries.append({"provider": PROVIDER, "custom_handler": handler})
    litellm.custom_provider_map = entries
    if handler is _stand_in:
        custom_llm_setup()
        return
    if _issue_order not in litellm.callbacks:
        litellm.logging_callback_manager.add_litellm_callback(_issue_order)
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


def install_stand_in() -> None:
    """Answer ``cachesaver/`` calls with "call register() first" until :func:`register` runs
    (done when ``cachesaver_litellm`` is imported; a registered engine is left in place)."""
    with _lock:
        if _handler is None:
            _install(_stand_in)


def unregister() -> None:
    """Remove the provider, close its engine run (committing what is in flight) and its callback.

    ``cachesaver/`` calls made afterwards raise litellm's ``BadRequestError`` naming
    ``cachesaver_litellm.register()``."""
    global _handler, _callback
    with _lock:
        handler, _handler = _handler, None
        callback, _callback = _callback, None
        # The name stays known to litellm: logging threads of calls already made still resolve
        # "cachesaver/..." when they price them, and a new call gets the stand-in's "call
        # register() first" instead of litellm's provider-guessing error.
        _install(_stand_in)
        if callback is not None:
            litellm.logging_callback_manager.remove_callback_from_all_lists(callback)
        litellm.logging_callback_manager.remove_callback_from_all_lists(_issue_order)
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
