"""litellm-side hooks: keep litellm's own response cache off ``cachesaver/`` calls, tally costs.

A user's global ``litellm.cache`` would store the first ``cachesaver/`` answer and replay it for
every later identical call, collapsing fresh samples into one. Two levers stop that:

- :class:`CostCallback.async_pre_call_deployment_hook` marks async ``cachesaver/`` calls
  ``no-cache``/``no-store`` before litellm looks them up;
- :func:`never_store` (called by the handler on every call, sync and streaming included, where
  no hook runs before the lookup) tells that call's litellm caching handler not to store the
  result, so a lookup can never find a ``cachesaver/`` entry.

:class:`CostCallback` keeps engine ``Stats`` tables of ``cachesaver/`` calls, one per model:
``cost_billed`` is what the engine billed each call (litellm's price of the real call, split
over its samples), ``cost_saved`` the stored price of the samples reused from the store. The
provider records each call *when it answers* (:meth:`CostCallback.record`), not from litellm's
logging, which runs later in the background: a summary read right after the calls returned is
complete, and agrees with ``cachesaver_litellm.stats()``.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Mapping, Optional

from litellm.integrations.custom_logger import CustomLogger

from cachesaver.stats import Stats

__all__ = ["CostCallback", "never_store", "record_call", "CACHESAVER_PREFIX"]

log = logging.getLogger("cachesaver.litellm.callback")

CACHESAVER_PREFIX = "cachesaver/"
_NO_LITELLM_CACHE = {"no-cache": True, "no-store": True}


def _never(*args: Any, **kwargs: Any) -> bool:
    return False


def never_store(logging_obj: Any) -> None:
    """Stop litellm's response cache from storing this one call's result (sync, async, streams)."""
    handler = getattr(logging_obj, "llm_caching_handler", None) if logging_obj is not None else None
    if handler is not None:
        try:
            handler.should_store_result_in_cache = _never
        except (AttributeError, TypeError):  # a slotted or frozen handler: the hook still covers async
            log.debug("could not disable litellm's cache store on %s", type(handler).__name__)


class CostCallback(CustomLogger):
    """Cost ledger of ``cachesaver/`` calls per model, from litellm's own cost figures.

    ``stats[model]`` is an engine :class:`~cachesaver.stats.Stats` (namespaces as rows) where
    ``cost_billed`` is litellm's ``response_cost`` of each call (the caller's share of it, G8) and
    ``cost_saved`` what the samples reused from the store cost when litellm priced them at
    generation, the same figure as the engine's own ``cost_saved``. ``register()`` installs one; add more with
    ``litellm.callbacks.append(CostCallback())``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[str, Stats] = {}
        self._lock = threading.Lock()

    # -- keep litellm's cache off cachesaver calls (async path) --------------------------------------
    async def async_pre_call_deployment_hook(self, kwargs: dict, call_type: Any) -> Optional[dict]:
        model = kwargs.get("model")
        if not (isinstance(model, str) and model.startswith(CACHESAVER_PREFIX)):
            return None
        cache = kwargs.get("cache")
        kwargs["cache"] = {**(cache if isinstance(cache, Mapping) else {}), **_NO_LITELLM_CACHE}
        return kwargs

    # -- cost tally ------------------------------------------------------------------------------
    def record(self, flags: Mapping[str, Any], response_obj: Any) -> None:
        """Tally one answered ``cachesaver/`` call (its ``_hidden_params["cachesaver"]`` flags).

        Costs come from the flags: what the engine billed this caller, and what the reused
        samples cost when they were generated. Nothing is priced here, so a hit stays cheap.
        """
        try:
            billed = float(flags.get("cost_billed") or 0.0)
            full_hit = bool(flags.get("cached")) and all(flags["cached"])
            if full_hit:
                billed = 0.0
            saved = float(flags.get("cost_saved") or 0.0)
            with self._lock:
                self._add(flags, response_obj, billed, saved)
        except Exception as exc:  # a tally must never break the caller
            log.debug("CostCallback could not record a call: %s", type(exc).__name__)

    def _add(self, flags: Mapping[str, Any], response_obj: Any, billed: float, saved: float) -> None:
        model = str(flags.get("model") or "unknown")
        stats = self.stats.get(model)
        if stats is None:
            stats = self.stats[model] = Stats()
        c = stats.ns(str(flags.get("namespace") or "default"))
        calls = int(flags.get("model_calls") or 0)
        stats.model_calls += calls
        c.model_calls += calls
        cached = list(flags.get("cached") or [])
        # The model-call figures from the same billing record as the rows: each sample billed
        # to a response (cached=False) was asked of the model and returned by it (G8).
        generated = sum(1 for x in cached if not x)
        stats.samples_requested += generated
        stats.samples_returned += generated
        duplicated = list(flags.get("duplicated") or [])
        c.requests += 1
        c.samples_asked += len(cached)
        c.samples_generated += sum(1 for x in cached if not x)
        c.samples_from_store += sum(1 for x in cached if x)
        c.samples_merged += sum(1 for x in duplicated if x)
        usage = getattr(response_obj, "usage", None)
        prompt = float(getattr(usage, "prompt_tokens", 0) or 0)
        completion = float(getattr(usage, "completion_tokens", 0) or 0)
        prompt_billed = float(flags.get("prompt_tokens_billed") or 0)
        completion_billed = float(flags.get("completion_tokens_billed") or 0)
        c.prompt_tokens_billed += prompt_billed
        c.completion_tokens_billed += completion_billed
        c.prompt_tokens_saved += max(0.0, prompt - prompt_billed)
        c.completion_tokens_saved += max(0.0, completion - completion_billed)
        c.cost_billed += billed
        c.cost_saved += saved

    def summary(self) -> str:
        """One engine stats table per model."""
        with self._lock:
            parts = [f"model: {model}\n{stats.summary()}" for model, stats in sorted(self.stats.items())]
        return "\n\n".join(parts) if parts else "(no cachesaver calls logged)"

    def reset(self) -> None:
        with self._lock:
            self.stats.clear()


def record_call(flags: Mapping[str, Any], response_obj: Any) -> None:
    """Feed one answered call to every ``CostCallback`` installed in litellm."""
    import litellm

    for callback in list(litellm.callbacks):
        if isinstance(callback, CostCallback):
            callback.record(flags, response_obj)
