"""Batch mode end to end: litellm's real batch calls to the fake server (issue 24)."""
from __future__ import annotations

import asyncio
import collections

import pytest
from _helpers import BATCH_IN, BATCH_OUT, ask_all, texts
from _helpers import QUICK

import cachesaver_litellm
from cachesaver.batchapi import BatchUnsupportedError


def _register(store_path, *, timeout=0.02, batch_size=64, **options):
    return cachesaver_litellm.register(store=store_path, timeout=timeout, batch_size=batch_size,
                                       batch_api={**QUICK, **options})


def test_partial_hits_across_namespaces_become_one_batch_of_missing_samples(batch_server, store_path):
    # Each wave in one engine batch (so both arms of a key are planned together: a key's second
    # engine batch would wait for the first one's provider batch, then make one of its own), and
    # a provider-batch window long enough for the whole wave, even on a loaded machine.
    _register(store_path, timeout=0.3, batch_size=4096, window=1.0)
    old = [f"question {i}" for i in range(40)]
    new = [f"new question {i}" for i in range(20)]

    async def run():
        first = await ask_all(batch_server, [(p, "arm-a", 2) for p in old])
        assert batch_server.batches.created == 1 and batch_server.batches.line_ns() == [2] * 40
        # 40 old prompts in two namespaces (partial hits: 2 stored, 3 and 4 wanted), 20 new ones.
        calls = ([(p, "arm-b", 3) for p in old] + [(p, "arm-c", 4) for p in old]
                 + [(p, "arm-b", 2) for p in new] + [(p, "arm-c", 1) for p in new])
        second = await ask_all(batch_server, calls)
        return first, calls, second

    first, calls, second = asyncio.run(run())
    assert not [r for r in first + second if isinstance(r, BaseException)]
    # One more batch, asking only what is missing: 4 - 2 per old key (merged over both arms),
    # 2 per new key (merged), each key once.
    assert batch_server.batches.created == 2
    assert sorted(batch_server.batches.line_ns()[40:]) == sorted([2] * 40 + [2] * 20)
    assert batch_server.request_count == 0  # nothing went to the interactive endpoint
    # G1: within a namespace no sample is handed out twice; another namespace reuses from sample 1.
    per_ns = collections.defaultdict(list)
    for (prompt, ns, n), response in zip(calls, second):
        assert len(response.choices) == n
        per_ns[ns, prompt].extend(texts(response))
    for values in per_ns.values():
        assert len(values) == len(set(values))
    for (prompt, _ns, _n), response in zip([(p, "arm-a", 2) for p in old], first):
        assert per_ns["arm-b", prompt][:2] == texts(response)
    # G8: every generated sample is billed to exactly one response (cached=False once).
    flags = [f for r in first + second for f in r._hidden_params["cachesaver"]["cached"]]
    assert flags.count(False) == batch_server.batches.samples_generated == 40 * 2 + 40 * 2 + 20 * 2
    # Honest money: the cost billed is the batch price of the tokens billed (half of interactive).
    stats = cachesaver_litellm.stats()
    billed = sum(c.cost_billed for c in stats.namespaces.values())
    tokens_in = sum(c.prompt_tokens_billed for c in stats.namespaces.values())
    tokens_out = sum(c.completion_tokens_billed for c in stats.namespaces.values())
    assert billed == pytest.approx(tokens_in * BATCH_IN + tokens_out * BATCH_OUT) and billed > 0


def test_failed_lines_fail_exactly_their_waiters_and_retry(batch_server, store_path):
    _register(store_path)
    prompts = [f"p{i}" for i in range(12)]

    async def run():
        batch_server.batches.fail_lines_next([0, 3, 5, 8, 11])
        results = await ask_all(batch_server, [(p, "ns", 2) for p in prompts])
        failed_lines = {b["messages"][0]["content"] for i, (_, _, b) in enumerate(batch_server.batches.lines)
                        if i in (0, 3, 5, 8, 11)}
        retried = await ask_all(batch_server, [(p, "ns", 2) for p in sorted(failed_lines)])
        return results, failed_lines, retried

    results, failed_lines, retried = asyncio.run(run())
    failed = {p for p, r in zip(prompts, results) if isinstance(r, BaseException)}
    assert failed == failed_lines and len(failed) == 5
    assert all("with an error" in str(r) for r in results if isinstance(r, BaseException))
    # G5: nothing of theirs was stored; asking again submits exactly those lines, once.
    assert batch_server.batches.created == 2 and batch_server.batches.line_ns()[12:] == [2] * 5
    assert all(not isinstance(r, BaseException) and len(r.choices) == 2 for r in retried)
    flags = [f for r in results + retried if not isinstance(r, BaseException)
             for f in r._hidden_params["cachesaver"]["cached"]]
    assert flags.count(False) == batch_server.batches.samples_generated == 12 * 2


def test_expired_batch_resubmits_only_unanswered_lines(batch_server, store_path):
    _register(store_path)
    batch_server.batches.expire_next(keep=4)
    results = asyncio.run(ask_all(batch_server, [(f"e{i}", "ns", 1) for i in range(10)]))
    assert all(not isinstance(r, BaseException) for r in results)
    assert batch_server.batches.created == 2 and len(batch_server.batches.line_ns()) == 10 + 6
    assert batch_server.batches.samples_generated == 10


def test_a_lost_creation_reply_creates_no_second_batch(batch_server, store_path):
    """litellm's client retries a POST whose reply was lost; for a batch creation that retry
    creates (and would bill) a second batch. The creation goes out once; its waiters learn it
    may exist, and asking again finds that batch by its input file."""
    _register(store_path)
    prompts = [f"l{i}" for i in range(3)]
    batch_server.batches.lose_create_reply_next()
    lost = asyncio.run(ask_all(batch_server, [(p, "ns", 1) for p in prompts]))
    assert all(isinstance(r, BaseException) for r in lost), lost
    assert all("may exist" in str(r) for r in lost), lost
    assert batch_server.batches.created == 1
    again = asyncio.run(ask_all(batch_server, [(p, "ns", 1) for p in prompts]))
    assert not [r for r in again if isinstance(r, BaseException)], again
    # before the fix: 2 batches created, 6 samples generated for 3 wanted
    assert batch_server.batches.created == 1 and batch_server.batches.samples_generated == 3
    assert [r._hidden_params["cachesaver"]["cached"] for r in again] == [[False]] * 3


def test_provider_without_batch_api_is_refused_before_any_cost(batch_server, store_path):
    _register(store_path)

    async def run():
        import litellm

        return await litellm.acompletion(
            model="cachesaver/anthropic/claude-3-5-sonnet-20240620", api_base=batch_server.base_url,
            api_key="sk-test", messages=[{"role": "user", "content": "hi"}], max_retries=0)

    with pytest.raises(Exception) as caught:
        asyncio.run(run())
    assert "batch_api" in str(caught.value) and "'anthropic'" in str(caught.value)
    assert batch_server.batches.created == 0 and batch_server.request_count == 0


def test_batch_mode_needs_a_store_with_a_journal():
    from cachesaver.batchapi import BatchAPI
    from cachesaver.pipelines import OnlineAPI
    from cachesaver.stores import MemoryStore
    from cachesaver.testing import FakeModel

    class NoJournal(MemoryStore):
        location = "somewhere"

        def batch_journal(self):
            return None

    with pytest.raises(BatchUnsupportedError, match="somewhere keeps no batch journal"):
        OnlineAPI(FakeModel(), NoJournal(), batch_api=BatchAPI(backend=object()))
