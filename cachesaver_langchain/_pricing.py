"""What an inner model's call cost in dollars (LangChain reports tokens, not prices).

Without a price every view of a LangChain run says ``$ billed 0`` for calls that went out. The
default prices a call from litellm's cost map, the table the LiteLLM adapter bills from, so both
adapters report one figure for one call; litellm is imported on the first priced call, only if
it is installed (``pip install litellm``; with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` it reads its
bundled map, offline). The model is the one the provider says it answered with
(``response_metadata["model_name"]`` or ``["model"]``), else the inner model's configured
``model_name``/``model``. A model litellm does not know is priced 0.

``CacheSaverChatModel(price=...)`` replaces the default: a callable ``(model, input_tokens,
output_tokens) -> dollars``, or None for no prices at all.

Batch mode (``batch_api=``) bills a line at the batch price: litellm's batch prices
(``input_cost_per_token_batches``/``output_cost_per_token_batches``, the figures the LiteLLM
adapter's batch mode bills) with the default price where litellm has them, else half of the
interactive price (what OpenAI's Batch API bills), also for a ``price=`` of the user's.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Optional

__all__ = ["Price", "litellm_price", "model_of", "batch_price"]

log = logging.getLogger("cachesaver.langchain.pricing")

#: ``(model, input_tokens, output_tokens) -> dollars``.
Price = Callable[[str, int, int], float]

_UNAVAILABLE = object()
_litellm: Any = None


def _cost_per_token() -> Any:
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
        except ImportError:
            _litellm = _UNAVAILABLE
        else:
            _litellm = litellm
    return None if _litellm is _UNAVAILABLE else _litellm.cost_per_token


def litellm_price(model: str, input_tokens: int, output_tokens: int) -> float:
    """litellm's price of a call (0 if litellm is not installed or does not know ``model``).

    Asking ``cost_per_token`` about a model missing from litellm's cost map (a local or
    self-hosted name) prints a red "Provider List" line, and a library never prints: such a
    model is found missing in the cost map first, quietly (logged at DEBUG)."""
    cost_per_token = _cost_per_token()
    if cost_per_token is None or not model or not (input_tokens or output_tokens):
        return 0.0
    cost_map = getattr(_litellm, "model_cost", None) or {}
    if model not in cost_map and model.partition("/")[2] not in cost_map:
        log.debug("litellm has no price for model %r", model)
        return 0.0
    try:
        prompt, completion = cost_per_token(model=model, prompt_tokens=input_tokens,
                                            completion_tokens=output_tokens)
    except Exception:  # litellm raises a bare Exception (or NotFoundError) for a model it lacks
        log.debug("litellm has no price for model %r", model)
        return 0.0
    return float(prompt) + float(completion)


def model_of(message: Any, inner: Any) -> str:
    """The model a call was answered by: the provider's word for it, else the configured one."""
    metadata = getattr(message, "response_metadata", None)
    if isinstance(metadata, dict):
        for field in ("model_name", "model"):
            value = metadata.get(field)
            if isinstance(value, str) and value:
                return value
    for field in ("model_name", "model"):
        value = getattr(inner, field, None)
        if isinstance(value, str) and value:
            return value
    return ""


def priced(price: Optional[Price], model: str, input_tokens: int, output_tokens: int) -> float:
    """``price(model, ...)``, never raising (a price is a report, it must not fail a call)."""
    if price is None:
        return 0.0
    try:
        return float(price(model, input_tokens, output_tokens))
    except Exception as exc:
        log.warning("the price function failed for model %r (%s): billed as $0", model, type(exc).__name__)
        return 0.0


def batch_price(price: Optional[Price], model: str, input_tokens: int, output_tokens: int) -> tuple[float, str]:
    """What a batch line billed and where the price came from (see the module docstring)."""
    if price is None:
        return 0.0, "no price"
    if price is litellm_price and _cost_per_token() is not None and model:
        entry = _litellm.model_cost.get(model) or {}
        per_in, per_out = entry.get("input_cost_per_token_batches"), entry.get("output_cost_per_token_batches")
        if isinstance(per_in, (int, float)) and isinstance(per_out, (int, float)):
            return input_tokens * per_in + output_tokens * per_out, "litellm batch price"
    return priced(price, model, input_tokens, output_tokens) / 2, "half the interactive price"
