"""The savings simulator at small size: CacheSaver generates exactly the minimum and never hands a
sample out twice inside a namespace; the plain key-value cache does (issue 8).

Everything is real except the LLM: the engine's OnlineAPI over real diskcache stores in tmp_path,
with a seeded Game-of-24 model whose sample ids make identity checks exact.
"""
from __future__ import annotations

import asyncio
import os
import random

import pytest

from benchmarks.savings import run_all
from cachesaver_demo import game24 as g
from benchmarks.savings.__main__ import main as cli_main
from benchmarks.savings.backends import CacheSaverBackend, PlainCache, Trace
from benchmarks.savings.methods import FoA, SC, ToT, Ask
from benchmarks.savings.model import SimModel
from benchmarks.savings.scenarios import default_scenarios, namespace

PUZZLES = 4

# One worker runs this module: ``results`` (every scenario, seconds) is then computed once, not
# once per worker the module's tests land on.
pytestmark = pytest.mark.xdist_group("savings-simulator")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    store_dir = str(tmp_path_factory.mktemp("savings-stores"))
    return asyncio.run(run_all(puzzles=PUZZLES, seed=0, store_dir=store_dir))


def test_every_scenario_of_the_issue_is_measured(results):
    assert [r.scenario.key for r in results] == [s.key for s in default_scenarios()]
    groups = {r.scenario.group for r in results}
    assert groups == {"single", "repeated", "hyper", "ablation", "benchmark"}
    hyper = next(r for r in results if r.scenario.key == "hyper")
    assert len(hyper.scenario.runs[0]) == 9
    for r in results:
        assert set(r.tallies) == {"no cache", "plain cache", "CacheSaver", "minimum"}


def test_cachesaver_generates_exactly_the_minimum(results):
    for r in results:
        cs, low = r.tallies["CacheSaver"], r.tallies["minimum"]
        assert cs.samples == low.samples, r.scenario.key
        assert cs.completion_tokens == low.completion_tokens, r.scenario.key
        assert cs.n_sent == cs.samples, r.scenario.key          # never asked for more than it kept
        assert cs.calls >= low.calls and cs.prompt_tokens >= low.prompt_tokens  # the bound is a bound
        assert r.exact


def test_cachesaver_never_hands_a_sample_out_twice_in_a_namespace(results):
    for r in results:
        assert r.tallies["CacheSaver"].duplicates == 0, r.scenario.key
        assert r.tallies["no cache"].duplicates == 0, r.scenario.key


def test_the_plain_cache_breaks_sampling(results):
    plain = {r.scenario.key: r.tallies["plain cache"].duplicates for r in results}
    assert sum(plain.values()) > 0
    # FoA resamples agents onto the same state: a plain cache repeats its step (and values)
    assert plain["ablation"] > 0
    # a rerun of self-consistency gets one stored chain k times
    assert plain["repeated"] >= 4 * PUZZLES


def test_engine_stats_agree_with_the_model_and_the_flags(results):
    for r in results:
        cs = r.tallies["CacheSaver"]
        assert r.engine["model_calls"] == cs.calls
        assert r.engine["samples_requested"] == cs.n_sent
        assert r.engine["samples_generated"] == cs.samples
        assert r.engine["cost_billed"] == pytest.approx(cs.cost, rel=1e-9)
        assert r.billed_flags == cs.samples  # G8: one cached=False flag per generated sample


def test_cachesaver_saves_in_every_scenario(results):
    by_key = {r.scenario.key: r for r in results}
    for r in results:
        assert r.tallies["CacheSaver"].cost < r.tallies["no cache"].cost, r.scenario.key
        assert r.tallies["no cache"].samples == r.tallies["no cache"].samples_asked
    # a repeated run calls the model in its first run only
    first, second = by_key["repeated"].engine["calls_by_run"]
    assert first == by_key["repeated"].tallies["CacheSaver"].calls > 0 and second == 0


def test_prompts_recur_across_namespaces(results):
    """The workload is not rigged: reuse comes from states that recur across puzzles and methods."""
    bench = next(r for r in results if r.scenario.key == "benchmark")
    cs, low = bench.tallies["CacheSaver"], bench.tallies["minimum"]
    assert low.samples < cs.samples_asked
    assert low.calls < cs.requests


async def test_trace_minimum_is_the_most_any_namespace_consumed():
    model = SimModel(seed=3)
    trace = Trace()
    a, b = g.value_prompt(g.make_state([4, 6])), g.step_prompt(g.make_state([1, 2, 3, 4]))
    trace.add(0, "ns1", a, 2)
    trace.add(0, "ns1", a, 1)   # ns1 consumed 3 samples of a
    trace.add(0, "ns2", a, 2)
    trace.add(1, "ns1", a, 1)   # another run starts again from sample 0
    trace.add(0, "ns2", b, 1)
    low = trace.minimum(model)
    assert trace.needed() == {_pid(a): 3, _pid(b): 1}
    assert (low.calls, low.samples) == (2, 4)


async def test_plain_cache_behaves_like_litellm_and_langchain_caches():
    cache = PlainCache(seed=1)
    prompt = g.cot_prompt(g.make_state([4, 5, 6, 10]))
    # concurrent identical misses all go to the model (no in-flight merging)
    first = await asyncio.gather(*(cache(prompt, 1, "ns", f"r{i}") for i in range(3)))
    assert cache.model.calls == 3 and cache.duplicates == 0
    # a later identical request is a hit: the stored sample again, inside the same namespace
    again = await cache(prompt, 1, "ns", "r9")
    assert again == first[-1] and cache.duplicates == 1 and cache.model.calls == 3
    # n is part of the key, as in litellm and LangChain
    await cache(prompt, 2, "ns", "r10")
    assert cache.model.calls == 4


async def test_a_rerun_replays_exactly_and_calls_nothing(tmp_path):
    backend = CacheSaverBackend(seed=5, store=str(tmp_path / "store"))
    puzzles = g.puzzles(3, seed=5)
    seen: list[list[str]] = []

    async def llm(prompt, n, ns, rid):
        texts = await backend(prompt, n, ns, rid)
        seen[-1].append((ns, prompt, tuple(texts)))
        return texts

    methods = [ToT(), SC(k=4), FoA()]
    for run in range(2):
        if run:
            await backend.new_run()
        seen.append([])
        calls_before = backend.model.calls
        for m in methods:
            await asyncio.gather(*(m.solve(Ask(llm, namespace(m, p)), p, random.Random(namespace(m, p)))
                                   for p in puzzles))
        if run:
            assert backend.model.calls == calls_before  # zero model calls
    await backend.aclose()
    assert sorted(seen[0]) == sorted(seen[1])
    assert backend.duplicates == 0


def test_cli_writes_the_table_and_charts(tmp_path, capsys):
    out = tmp_path / "results"
    assert cli_main(["--quick", "--puzzles", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| hyperparameter search: ToT 3x3 |" in printed
    assert sorted(os.listdir(out)) == ["integrity.png", "relative_cost.png", "samples.png", "savings.md"]
    for name in ("integrity.png", "relative_cost.png", "samples.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_bad_puzzle_count(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--puzzles", "0"])
    assert "--puzzles must be >= 1" in capsys.readouterr().err


def _pid(prompt):
    from benchmarks.savings.model import prompt_id

    return prompt_id(prompt)
