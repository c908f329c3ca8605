"""A library never prints: ``cachesaver/`` calls on models missing from litellm's price map
(local or self-hosted names) print nothing, as plain litellm calls print nothing there.

The adapter used to ask ``litellm.completion_cost`` about every miss, which prints a red
"Provider List" line for an unmapped model; an unknown price is now a DEBUG log and a zero cost.
"""
from __future__ import annotations

import litellm
import pytest

from _litellm_helpers import MESSAGES, ns

pytestmark = pytest.mark.usefixtures("output_of_this_test_only")


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


async def test_streamed_misses_of_an_unpriced_model_print_nothing(provider, server, capfd, monkeypatch):
    """Issue 26: each streamed miss printed the red "Provider List" line twice (litellm's stream
    builder priced the answer by the server's model name, which names no provider)."""
    monkeypatch.setattr(litellm, "suppress_debug_info", False)
    kwargs = dict(model="cachesaver/openai/my-local-model", api_base=server.base_url, api_key="sk-test",
                  max_retries=0, stream=True)
    texts = []
    for i in range(3):
        stream = await litellm.acompletion(messages=[{"role": "user", "content": f"Name colour {i}."}],
                                           metadata=ns("a"), **kwargs)
        texts.append("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
    stream = litellm.completion(messages=[{"role": "user", "content": "Name a river."}], metadata=ns("a"), **kwargs)
    texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert server.request_count == 4 and all(texts)
    # The stored answer keeps the model name the server sent (replayed as a plain response).
    replay = litellm.completion(messages=[{"role": "user", "content": "Name a river."}], metadata=ns("b"),
                                **{**kwargs, "stream": False})
    assert replay.choices[0].message.content == texts[3] and replay.model == "my-local-model"
