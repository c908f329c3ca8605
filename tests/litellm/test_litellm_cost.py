"""Costs: litellm logs each ``cachesaver/`` call once (never the inner call), hits as litellm's
own cache hits (zero spend, saved cost computed by litellm), and ``CostCallback`` feeds those
figures into per-model engine ``Stats``.
"""
from __future__ import annotations

import asyncio

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger

import cachesaver_litellm

from _litellm_helpers import REAL_MODEL, ns


class Spy(CustomLogger):
    """Standard logging payloads of calls to one api_base (late events of earlier tests ignored)."""

    def __init__(self, api_base: str) -> None:
        super().__init__()
        self.api_base = api_base
        self.events: list[dict] = []

    def _add(self, kwargs) -> None:
        payload = kwargs.get("standard_logging_object") or {}
        if str(payload.get("api_base") or "").startswith(self.api_base):
            self.events.append(payload)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._add(kwargs)

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._add(kwargs)


async def settle(spy: Spy, count: int) -> None:
    """litellm logs in the background: wait (bounded) until ``count`` events arrived."""
    for _ in range(200):
        if len(spy.events) >= count:
            return
        await asyncio.sleep(0.01)


@pytest.fixture
def spy(server):
    spy = Spy(server.base_url)
    litellm.callbacks.append(spy)
    return spy


async def test_each_call_is_logged_once_with_the_cost_billed_to_it(spy, provider, server, call_kwargs):
    miss = await litellm.acompletion(n=2, metadata=ns("a"), **call_kwargs)
    hit = await litellm.acompletion(n=2, metadata=ns("b"), **call_kwargs)
    partial = await litellm.acompletion(n=3, metadata=ns("c"), **call_kwargs)
    await settle(spy, 3)
    await asyncio.sleep(0.05)

    # One success event per outer call; the inner real calls were not logged a second time.
    assert len(spy.events) == 3
    assert {e["hidden_params"]["litellm_model_name"] for e in spy.events} == {"cachesaver/openai/gpt-4o-mini"}
    assert {e["custom_llm_provider"] for e in spy.events} == {"openai"}  # priced as the real provider
    by_cost = sorted(e["response_cost"] for e in spy.events)
    expected = sorted(r._hidden_params["response_cost"] for r in (miss, hit, partial))
    assert by_cost == pytest.approx(expected)

    hit_event = next(e for e in spy.events if e["response_cost"] == 0.0)
    assert hit_event["cache_hit"] is True
    assert hit_event["saved_cache_cost"] == pytest.approx(miss._hidden_params["response_cost"])  # litellm's figure
    # A partial hit pays only for its one new sample, a third of a 3-sample call's price at most.
    assert 0 < partial._hidden_params["response_cost"] < miss._hidden_params["response_cost"]

    engine = cachesaver_litellm.stats()
    assert engine.ns("a").cost_billed == pytest.approx(miss._hidden_params["response_cost"])
    assert engine.ns("b").cost_billed == 0 and engine.ns("b").cost_saved == pytest.approx(
        miss._hidden_params["response_cost"])


async def test_cost_callback_tallies_litellm_figures_per_model_and_namespace(spy, provider, server, call_kwargs):
    miss = await litellm.acompletion(n=2, metadata=ns("a"), **call_kwargs)
    await litellm.acompletion(n=2, metadata=ns("b"), **call_kwargs)
    litellm.completion(n=1, metadata=ns("b"), **dict(call_kwargs, messages=[{"role": "user", "content": "Hi"}]))
    callback = cachesaver_litellm.get_callback()
    # Complete as soon as the calls returned: no waiting for litellm's background logging.
    table = callback.stats[REAL_MODEL]
    a, b = table.ns("a"), table.ns("b")
    assert (a.requests, a.samples_generated, a.samples_from_store) == (1, 2, 0)
    assert (b.requests, b.samples_generated, b.samples_from_store) == (2, 1, 2)
    assert a.cost_billed == pytest.approx(miss._hidden_params["response_cost"])
    assert b.cost_saved == pytest.approx(miss._hidden_params["response_cost"])
    assert b.cost_billed > 0  # the sync call on another prompt was a miss
    assert "openai/gpt-4o-mini" in callback.summary()
    # ...and it agrees with the engine's own counters.
    engine = cachesaver_litellm.stats()
    assert table.model_calls == engine.model_calls == 2
    for name in ("a", "b"):
        mine, theirs = table.ns(name), engine.ns(name)
        assert (mine.requests, mine.samples_generated, mine.samples_from_store, mine.model_calls) == (
            theirs.requests, theirs.samples_generated, theirs.samples_from_store, theirs.model_calls)
        assert mine.cost_billed == pytest.approx(theirs.cost_billed)
    assert "model calls: 2" in callback.summary()
    # The footer too (before: "samples requested from the model: 0, returned: 0" while the
    # engine's said 3 and 3): one billing record, every view computed from it.
    assert (table.samples_requested, table.samples_returned) == (engine.samples_requested, engine.samples_returned) == (3, 3)
    assert callback.summary().splitlines()[-1].endswith(engine.summary().splitlines()[-1].split("model calls: ")[1])


async def test_cost_callback_bills_nothing_for_a_streamed_full_hit(spy, provider, server, call_kwargs):
    await litellm.acompletion(n=1, metadata=ns("first"), **call_kwargs)
    stream = await litellm.acompletion(stream=True, metadata=ns("replay"), **call_kwargs)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
    assert text and server.request_count == 1  # the stream was a replay
    callback = cachesaver_litellm.get_callback()
    replay = callback.stats[REAL_MODEL].ns("replay")
    # litellm prices a replayed stream as if it were real; the callback must not bill it
    assert replay.samples_from_store == 1 and replay.cost_billed == 0


async def test_saved_cost_is_what_the_reused_samples_cost_when_generated(provider, server, call_kwargs):
    # Generated at one price...
    miss = await litellm.acompletion(n=2, metadata=ns("paid"), **call_kwargs)
    paid = miss._hidden_params["response_cost"]
    assert paid > 0
    # ...replayed after litellm's price map changed (a price update, a user's register_model):
    # the replay saved what those samples cost, not a re-priced figure, and the hit prices nothing.
    entry = dict(litellm.model_cost["gpt-4o-mini"])
    litellm.register_model({"gpt-4o-mini": dict(entry, input_cost_per_token=entry["input_cost_per_token"] * 10,
                                                 output_cost_per_token=entry["output_cost_per_token"] * 10)})
    try:
        await litellm.acompletion(n=2, metadata=ns("replay"), **call_kwargs)
        partial = await litellm.acompletion(n=3, metadata=ns("partial"), **call_kwargs)
    finally:
        litellm.register_model({"gpt-4o-mini": entry})
    assert server.request_count == 2
    table = cachesaver_litellm.get_callback().stats[REAL_MODEL]
    engine = cachesaver_litellm.stats()
    assert table.ns("replay").cost_saved == pytest.approx(paid) == engine.ns("replay").cost_saved
    assert table.ns("replay").cost_billed == 0
    # The partial hit reused the two paid samples and paid (at the new price) for its third.
    assert table.ns("partial").cost_saved == pytest.approx(paid) == engine.ns("partial").cost_saved
    assert table.ns("partial").cost_billed == pytest.approx(partial._hidden_params["response_cost"])


async def test_every_view_of_one_experiment_shows_one_figure(spy, store_path, server, call_kwargs, tmp_path):
    """Issue 22: one scripted experiment (a shared run, two namespaces, misses, a partial hit,
    hits, a stream), and every view of what it paid agrees: the responses' flags and costs,
    ``stats()``, the cost callback, litellm's logged spend and a bundle of the run."""
    from cachesaver.bundle import consumption_of_runs, read_bundle, write_bundle

    cachesaver_litellm.register(store=store_path, timeout=0.02, run_id="one-experiment")
    other = dict(call_kwargs, messages=[{"role": "user", "content": "Another question"}])
    responses = [
        await litellm.acompletion(n=2, metadata=ns("arm-a"), **call_kwargs),
        await litellm.acompletion(n=3, metadata=ns("arm-b"), **call_kwargs),   # 2 reused, 1 new
        await litellm.acompletion(n=1, metadata=ns("arm-a"), **other),
        await litellm.acompletion(n=1, metadata=ns("arm-b"), **other),         # reused
    ]
    streamed_kwargs = dict(call_kwargs, messages=[{"role": "user", "content": "A streamed question"}])
    stream = await litellm.acompletion(n=1, stream=True, metadata=ns("arm-a"), **streamed_kwargs)  # new
    streamed = [chunk async for chunk in stream]
    assert streamed
    await settle(spy, 5)

    flags = [r._hidden_params["cachesaver"] for r in responses]
    billed_by_flags = sum(f["cached"].count(False) for f in flags) + 1   # + the stream's one sample
    engine = cachesaver_litellm.stats()
    table = cachesaver_litellm.get_callback().stats[REAL_MODEL]
    assert billed_by_flags == engine.total.samples_generated == table.total.samples_generated
    assert billed_by_flags == server.samples_generated == engine.samples_returned == table.samples_returned
    cost_by_responses = sum(r._hidden_params["response_cost"] for r in responses)
    logged = sum(e["response_cost"] for e in spy.events)
    assert engine.total.cost_billed == pytest.approx(table.total.cost_billed) == pytest.approx(logged)
    assert cost_by_responses < logged  # the stream's cost is in the logs and the tables too
    assert engine.total.cost_saved == pytest.approx(table.total.cost_saved) and engine.total.cost_saved > 0

    store = cachesaver_litellm.get_pipeline().store
    await write_bundle(store, await consumption_of_runs(store, ["one-experiment"]), tmp_path / "exp.csbundle")
    summary = read_bundle(tmp_path / "exp.csbundle").summary
    assert summary["samples"] == billed_by_flags
    assert summary["cost"] == pytest.approx(engine.total.cost_billed)
    assert summary["consumed_cost"] == pytest.approx(engine.total.cost_billed + engine.total.cost_saved)
    assert summary["consumed_samples"] == engine.total.samples_generated + engine.total.samples_from_store
