"""A loud warning when DSPy's own cache sits in front of a ``cachesaver/`` model.

DSPy caches every LM call itself (``cache=True`` by default, in memory and on disk in
``~/.dspy_cache``) before litellm is reached: a plain ``dspy.LM("cachesaver/...")`` then hands
the same answer to every repeated call (k calls at temperature 0.7 give one answer) and CacheSaver
never sees them, so neither fresh samples nor namespaces work. The fix is
:class:`cachesaver_litellm.dspy.CacheSaverLM` (or ``dspy.LM(..., cache=False)``).

This module never imports DSPy by itself: :func:`install_if_loaded` adds the guard only when DSPy
is already imported (``register()`` calls it; importing ``cachesaver_litellm.dspy`` calls
:func:`install`). The guard is a DSPy callback appended to ``dspy.settings.callbacks`` (DSPy's
documented extension point); it runs on every LM call, cache hits included, and logs one WARNING
per process on ``cachesaver.litellm.dspy``.
"""
from __future__ import annotations

import logging
import sys
import threading

__all__ = ["install", "install_if_loaded", "WARNING_TEXT"]

log = logging.getLogger("cachesaver.litellm.dspy")

PREFIX = "cachesaver/"
WARNING_TEXT = (
    "dspy.LM(%r) has DSPy's own cache on: DSPy answers repeated calls from its cache before "
    "CacheSaver sees them (one answer for k samples, no namespaces, an old answer even with a new "
    "CacheSaver store). Use cachesaver_litellm.dspy.CacheSaverLM(%r, namespace=...) "
    "or dspy.LM(%r, cache=False)."
)

_lock = threading.Lock()
_warned = False
_guard = None  # the callback instance, once built


def _uses_dspy_cache(instance, inputs) -> bool:
    model = getattr(instance, "model", None)
    if not isinstance(model, str) or not model.startswith(PREFIX):
        return False
    kwargs = inputs.get("kwargs") if isinstance(inputs, dict) else None
    per_call = kwargs.get("cache") if isinstance(kwargs, dict) else None
    return bool(getattr(instance, "cache", False) if per_call is None else per_call)


def _check(instance, inputs) -> None:
    global _warned
    if _warned or not _uses_dspy_cache(instance, inputs):
        return
    with _lock:
        if _warned:
            return
        _warned = True
    model = instance.model
    log.warning(WARNING_TEXT, model, model, model)


def _build_guard():
    from dspy.utils.callback import BaseCallback

    class CacheSaverDSPyGuard(BaseCallback):
        """Warns (once per process) when a ``cachesaver/`` model runs behind DSPy's cache."""

        def on_lm_start(self, call_id, instance, inputs):
            _check(instance, inputs)

    return CacheSaverDSPyGuard()


def install() -> None:
    """Append the guard to ``dspy.settings.callbacks`` (idempotent; imports dspy)."""
    global _guard
    import dspy

    with _lock:
        if _guard is None:
            _guard = _build_guard()
        guard = _guard
    callbacks = dspy.settings.get("callbacks")
    if callbacks is None:
        return
    if not any(cb is guard for cb in callbacks):
        # In place: dspy.configure() may only be called from the thread that owns the settings.
        callbacks.append(guard)


def install_if_loaded() -> None:
    """:func:`install` when the application has imported DSPy; otherwise nothing (DSPy is heavy)."""
    if "dspy" in sys.modules:
        try:
            install()
        except Exception:  # a DSPy this guard does not know: no guard rather than a failed register()
            log.debug("could not install the DSPy cache guard", exc_info=True)
