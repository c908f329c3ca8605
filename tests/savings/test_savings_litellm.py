"""Issue 8, item 4: the savings workload through ``litellm.acompletion("cachesaver/...")`` against the
local OpenAI-compatible server, with every count taken from the server's own request log."""
from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
import pytest

import cachesaver_litellm
from benchmarks.savings.through_litellm import litellm_markdown, run_through_litellm


@pytest.fixture(autouse=True)
def clean_litellm():
    callbacks = list(litellm.callbacks)
    yield
    cachesaver_litellm.unregister()
    litellm.callbacks = callbacks


def test_through_litellm_generates_exactly_the_minimum(tmp_path):
    results = run_through_litellm(puzzles=2, seed=0, scenario_keys=("repeated", "benchmark"),
                                  directory=str(tmp_path), batch=False)
    for r in results:
        cs, none, low = r.tallies["CacheSaver"], r.tallies["no cache"], r.tallies["minimum"]
        # the server generated exactly what the trace says any correct cache must generate
        assert cs.samples == low.samples, r.scenario.key
        assert cs.n_sent == cs.samples                       # n on the wire = samples kept
        assert r.engine["model_calls"] == cs.calls           # every engine call is one HTTP request
        assert r.engine["samples_generated"] == cs.samples
        assert cs.duplicates == 0                            # by the server's [sample k] tags
        # without a cache every request is an HTTP request and every sample is paid
        assert none.calls == none.requests and none.samples == none.samples_asked
        assert cs.cost < none.cost
    repeated = next(r for r in results if r.scenario.key == "repeated")
    # the second run of the script is served from the store: not one HTTP request
    first, second = repeated.engine["calls_by_run"]
    assert first == repeated.tallies["CacheSaver"].calls > 0 and second == 0
    text = litellm_markdown(results, 2, 0, "test")
    assert "| benchmarking: ToT, GoT, FoA | CacheSaver |" in text and " NO" not in text


def test_the_batch_api_column_generates_the_minimum_at_half_the_price(tmp_path):
    """Issue 24: the savings workload through CacheSaver's Batch API mode: the samples the
    server generated through /v1/batches are exactly the minimum for that run's trace, none is
    handed out twice, and each costs half the interactive price (litellm's batch prices)."""
    from benchmarks.savings.model import price
    from benchmarks.savings.through_litellm import BATCH

    [result] = run_through_litellm(puzzles=1, seed=0, scenario_keys=("repeated",), directory=str(tmp_path))
    batch, interactive = result.tallies[BATCH], result.tallies["CacheSaver"]
    assert batch.samples == batch.n_sent == result.engine["batch"]["minimum"] > 0
    assert batch.samples == result.engine["batch"]["samples_generated"] and batch.duplicates == 0
    assert 0 < batch.calls < interactive.calls  # a few batches instead of one call per key and step
    # dollars: the engine's bill at litellm's batch prices = half the list price of the same tokens
    assert batch.cost == pytest.approx(price(batch.prompt_tokens, batch.completion_tokens) / 2, rel=1e-6)
    text = litellm_markdown([result], 1, 0, "test")
    assert f"| {BATCH} |" in text and " NO" not in text
