"""The real call of a ``cachesaver/`` miss: litellm's provider request, without a second pipeline.

A miss reaches the engine from inside litellm's own pipeline (the outer ``cachesaver/`` call
already ran litellm's pre-call deployment hooks, credential and cache checks, and will log and
price what the caller is billed). The engine's real call needs only litellm's provider side:
``litellm.main.completion`` builds the provider request (parameter mapping, credentials,
transformation) and, with ``acompletion=True``, returns the provider's coroutine. This module
calls that directly, on the engine's loop, instead of ``litellm.acompletion``:

- no second ``@client`` pass: no second ``function_setup`` (a new logging object, callback
  list set-up), no second ``async_pre_call_deployment_hook`` / ``async_post_call_success_
  deployment_hook`` round, no second cache lookup, no success/failure dispatch;
- no executor hop: ``litellm.acompletion`` runs ``completion`` on a worker thread to keep the
  caller's loop free; here that loop is the engine's, and the hop cost more CPU than the work it
  moved. ``completion`` only builds the request for HTTP providers; a provider whose request
  building blocks (a cloud token fetched synchronously) now holds the engine's loop, not a
  worker thread, for that time;
- priced once: the answer is priced by its own logging object's ``response_cost_calculator``
  (litellm's figure, custom pricing included, exactly what ``litellm.acompletion`` stamps) and
  the price travels in ``_hidden_params["response_cost"]``; the outer call logs that figure.

Still litellm's: the provider request and its errors (mapped by ``litellm.exception_type`` as
``acompletion`` maps them), and the provider-level ``log_pre_api_call`` / ``log_post_api_call``
events of the real request (the outer ``cachesaver/`` call makes no provider request, so they
fire once per real request).

Calls that need the rest of ``acompletion`` (litellm-level retries or fallbacks, streaming,
a mock response, prompt management, ``litellm.modify_params``) take the full path:
``litellm.acompletion`` inside ``internal_sub_call`` as before.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from typing import Any

log = logging.getLogger("cachesaver.litellm.inner")

__all__ = ["inner_acompletion", "needs_full_pipeline"]

#: Arguments whose meaning lives in ``litellm.acompletion`` or its ``@client`` wrapper, not in
#: the provider request: a call carrying one takes the full path.
_FULL_PIPELINE_ARGS = frozenset({
    "stream",
    "num_retries",
    "retry_policy",
    "fallbacks",
    "context_window_fallback_dict",
    "mock_response",
    "mock_tool_calls",
    "mock_timeout",
    "mock_delay",
    "prompt_id",
    "callbacks",
    "success_callback",
    "failure_callback",
    "logger_fn",
    "model_list",
    "litellm_logging_obj",
})


def needs_full_pipeline(kwargs: dict) -> bool:
    """Whether this real call needs ``litellm.acompletion`` itself (see module docstring)."""
    import litellm

    if any(kwargs.get(name) is not None for name in _FULL_PIPELINE_ARGS):
        return True
    return bool(litellm.num_retries or litellm.model_fallbacks or litellm.modify_params)


async def inner_acompletion(*, model: str, messages: Any, **kwargs: Any) -> Any:
    """The real call of a miss (non-streaming): ``litellm.main.completion``'s provider request,
    awaited on this loop, priced once; litellm's exceptions as ``litellm.acompletion`` raises them."""
    import litellm

    try:  # litellm's own parts, pinned at litellm 1.110.x
        from litellm import main
        from litellm._internal_context import internal_sub_call
        from litellm.litellm_core_utils.litellm_logging import Logging
    except ImportError:  # pragma: no cover - other litellm versions: the full pipeline
        log.debug("litellm %s lacks the provider-call parts: full acompletion", getattr(litellm, "version", "?"))
        return await litellm.acompletion(model=model, messages=messages, **kwargs)
    if needs_full_pipeline(kwargs):
        with internal_sub_call():
            return await litellm.acompletion(model=model, messages=messages, **kwargs)
    call_id = str(uuid.uuid4())
    logging_obj = Logging(model=model, messages=messages, stream=False, call_type="acompletion",
                          start_time=datetime.datetime.now(), litellm_call_id=call_id, function_id=call_id)
    with internal_sub_call():
        try:
            arguments = {**kwargs, "acompletion": True, "litellm_logging_obj": logging_obj,
                         "litellm_call_id": call_id}
            pending = main.completion(model=model, messages=messages, **arguments)
            response = await pending if asyncio.iscoroutine(pending) else pending
        except Exception as exc:
            provider = logging_obj.model_call_details.get("custom_llm_provider") or None
            raise litellm.exception_type(model=model, original_exception=exc, custom_llm_provider=provider,
                                         completion_kwargs={"model": model, "messages": messages},
                                         extra_kwargs=kwargs) from exc
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict) and hidden.get("response_cost") is None:
        hidden["response_cost"] = logging_obj.response_cost_calculator(result=response, litellm_model_name=model)
    return response
