"""The batch backend ``cachesaver batches collect``/``cancel`` use for batches submitted
through litellm (entry point ``litellm`` of group ``cachesaver.batch_backends``).

The journal keeps no credential: a batch is reached at the endpoint it was submitted to (or
``--api-base``) with the API key litellm reads from the environment (``OPENAI_API_KEY``, or
``AZURE_API_KEY`` for azure), and its answers are billed by the prices it recorded
(:mod:`._batches`).
"""
from __future__ import annotations

from typing import Optional

from ._backend import LiteLLMRequest, RealCall
from ._batches import _PRICES, BATCH_BACKEND, LiteLLMBatchBackend

__all__ = ["batch_backend"]


def batch_backend(info: dict, api_base: Optional[str]) -> "tuple[LiteLLMBatchBackend, LiteLLMRequest]":
    """The backend and a request of the batch ``info`` describes (see the module docstring)."""
    import litellm

    provider, model = str(info.get("provider") or "openai"), str(info.get("model") or "")
    kwargs: dict = {}
    base = api_base or info.get("endpoint")
    if base:
        kwargs["api_base"] = base
    for name in _PRICES:
        if name in info:
            kwargs[name] = info[name]
    full = f"{provider}/{model}"
    call = RealCall(invoke=litellm.acompletion, model=full, messages=[], kwargs=kwargs, provider=provider)
    return BATCH_BACKEND, LiteLLMRequest([], model=full, call=call)
