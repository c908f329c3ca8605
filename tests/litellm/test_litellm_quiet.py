"""A library never prints: ``cachesaver/`` calls on models missing from litellm's price map
(local or self-hosted names) print nothing, as plain litellm calls print nothing there.

The adapter used to ask ``litellm.completion_cost`` about every miss, which prints a red
"Provider List" line for an unmapped model; an unknown price is now a DEBUG log and a zero cost.
"""
from __future__ import annotations

import litellm

from _litellm_helpers import MESSAGES, ns


async def test_an_unpriced_model_prints_nothing_and_costs_zero(provider, server, capfd, monkeypatch):
    monkeypatch.setattr(litellm, "suppress_debug_info", False)  # what a user has by default
    kwargs = dict(model="cachesaver/openai/my-local-model", messages=MESSAGES, api_base=server.base_url,
                  api_key="sk-test", max_retries=0)
    miss = await litellm.acompletion(metadata=ns("a"), **kwargs)
    hit = litellm.completion(metadata=ns("b"), **kwargs)
    stream = await litellm.acompletion(stream=True, metadata=ns("c"), **kwargs)
    chunks = [chunk async for chunk in stream]
    out, err = capfd.readouterr()
    assert "Provider List" not in out + err and out == ""
    assert miss._hidden_params["cachesaver"]["cost_billed"] == 0.0 and hit._hidden_params["cache_hit"]
    assert chunks and server.request_count == 1
