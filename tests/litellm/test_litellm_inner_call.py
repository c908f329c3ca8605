"""A ``cachesaver/`` miss runs litellm's pipeline once: the real call inside it is the provider
request only (no second round of deployment hooks, no second logging), priced once, by litellm.
"""
from __future__ import annotations

import asyncio
from collections import Counter

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger

from _litellm_helpers import ns


class HookCounter(CustomLogger):
    """Counts every litellm hook and logging event per model name, for one api_base."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()

    async def async_pre_call_deployment_hook(self, kwargs, call_type):
        self.counts["pre_call_deployment_hook", kwargs.get("model")] += 1
        return None

    async def async_post_call_success_deployment_hook(self, request_data, response, call_type):
        self.counts["post_call_success_deployment_hook", request_data.get("model")] += 1
        return None

    def log_pre_api_call(self, model, messages, kwargs):
        self.counts["pre_api_call", model] += 1

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.counts["success", kwargs.get("model")] += 1

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self.counts["failure", kwargs.get("model")] += 1


async def settle(counter: HookCounter, event: str, count: int) -> None:
    """litellm logs success in the background: wait (bounded) for ``count`` events."""
    for _ in range(200):
        if sum(n for (name, _), n in counter.counts.items() if name == event) >= count:
            return
        await asyncio.sleep(0.01)


async def test_a_miss_runs_each_hook_once_and_reports_what_litellm_prices(provider, server, call_kwargs):
    counter = HookCounter()
    litellm.callbacks.append(counter)

    miss = await litellm.acompletion(n=2, metadata=ns("a"), **call_kwargs)
    hit = await litellm.acompletion(n=2, metadata=ns("b"), **call_kwargs)
    await settle(counter, "success", 2)
    await asyncio.sleep(0.05)  # a late second event would show up here

    assert server.request_count == 1
    outer = "cachesaver/openai/gpt-4o-mini"
    # Two outer calls, one real request: the deployment hooks and the success event once per
    # outer call, never again for the real call inside the miss (before: twice for the miss).
    assert counter.counts == Counter({
        ("pre_call_deployment_hook", outer): 2,
        ("post_call_success_deployment_hook", outer): 2,
        ("success", "openai/gpt-4o-mini"): 2,  # litellm logs a custom provider's model without it
        # The real request's own pre-API-call event, once (the outer call sends no request).
        ("pre_api_call", "gpt-4o-mini"): 1,
    })
    # The miss reports what litellm prices the real call at, from its usage; the hit nothing.
    prompt_cost, completion_cost = litellm.cost_per_token(
        model="gpt-4o-mini", custom_llm_provider="openai",
        prompt_tokens=miss.usage.prompt_tokens, completion_tokens=miss.usage.completion_tokens)
    assert miss._hidden_params["response_cost"] == pytest.approx(prompt_cost + completion_cost)
    assert miss._hidden_params["response_cost"] > 0
    assert hit._hidden_params["response_cost"] == 0.0


async def test_a_failed_real_call_is_litellm_s_error_and_logged_once(provider, server, call_kwargs):
    counter = HookCounter()
    litellm.callbacks.append(counter)
    server.fail_next(status=429)

    with pytest.raises(litellm.RateLimitError):
        await litellm.acompletion(n=1, metadata=ns("a"), **call_kwargs)
    await settle(counter, "failure", 1)
    await asyncio.sleep(0.05)

    failures = {key: n for key, n in counter.counts.items() if key[0] == "failure"}
    assert failures == {("failure", "openai/gpt-4o-mini"): 1}  # the outer call's (no provider prefix)
    assert counter.counts["pre_call_deployment_hook", "cachesaver/openai/gpt-4o-mini"] == 1
    assert sum(n for (name, _), n in counter.counts.items() if name == "pre_call_deployment_hook") == 1
