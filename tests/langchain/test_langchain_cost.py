"""LangChain runs report dollars: each inner call is priced (litellm's cost map by default, the
table the LiteLLM adapter bills from), stored with its samples, billed once (G8) and saved on
every reuse. Before, ``stats`` showed ``$ billed 0.000000`` for calls that went out."""
from __future__ import annotations

import os

import pytest

from _lc_helpers import ns

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")


def test_calls_that_went_out_are_billed_at_litellm_prices(make_chat, make_inner, fake_server):
    chat = make_chat(make_inner(model="gpt-4o-mini"))
    first = chat.invoke("Price me", config=ns("paid"))
    again = chat.invoke("Price me", config=ns("reused"))
    assert fake_server.request_count == 1
    usage = first.usage_metadata
    prompt, completion = litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=usage["input_tokens"],
                                                completion_tokens=usage["output_tokens"])
    stats = chat.stats
    assert stats.ns("paid").cost_billed == pytest.approx(prompt + completion) and prompt + completion > 0
    assert stats.ns("reused").cost_billed == 0
    assert stats.ns("reused").cost_saved == pytest.approx(prompt + completion)
    paid_row = next(line for line in stats.summary().splitlines() if line.startswith("paid"))
    assert paid_row.split()[-2] != "0.000000"  # the $ billed column shows the dollars
    assert again.content == first.content


def test_a_price_function_of_ones_own_and_no_prices(make_chat, make_inner, fake_server, tmp_path):
    seen = []

    def price(model, input_tokens, output_tokens):
        seen.append((model, input_tokens, output_tokens))
        return 0.5

    chat = make_chat(make_inner(model="house-model"), price=price, store=str(tmp_path / "own"))
    chat.invoke("Price me", config=ns("a"))
    assert seen and seen[0][0] == "house-model" and chat.stats.ns("a").cost_billed == pytest.approx(0.5)

    free = make_chat(make_inner(model="gpt-4o-mini"), price=None, store=str(tmp_path / "none"))
    free.invoke("Price me", config=ns("a"))
    assert free.stats.ns("a").cost_billed == 0


def test_an_unpriced_model_prints_nothing_and_is_billed_zero(make_chat, make_inner, fake_server, capfd,
                                                             monkeypatch):
    """A library never prints: asking litellm's ``cost_per_token`` about a model missing from its
    cost map (a local or self-hosted name) prints a red "Provider List" line on stdout, as
    litellm does by default (``suppress_debug_info=False``). The price is looked up quietly
    first, as the LiteLLM adapter does."""
    monkeypatch.setattr(litellm, "suppress_debug_info", False)
    chat = make_chat(make_inner(model="my-local-model"))
    capfd.readouterr()
    chat.invoke("Price a local model", config=ns("local"))
    chat.invoke("Price a local model", config=ns("again"))
    assert capfd.readouterr() == ("", "")
    assert fake_server.request_count == 1
    assert chat.stats.ns("local").cost_billed == 0 and chat.stats.ns("again").cost_saved == 0
