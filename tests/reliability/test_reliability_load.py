"""Load, structurally: 5,000 requests over 1,000 namespaces leave no per-request state behind.

The timed version (50,000 requests, requests/s per 10% slice, ledger bytes per entry, peak RSS)
is ``benchmarks/bench_load.py``; here nothing is timed. What must hold whatever the speed:

- the ledger has exactly one entry per distinct (namespace, key) pair asked, and nothing else
  grows with the number of requests (stats: one row per namespace);
- per-request state (in-flight ids, tick, queued slots, batcher, per-key turns, unbilled
  samples, tasks, futures, Pending objects) never exceeds what is in flight, and is empty after;
- G1 and G2 at scale: no sample twice in a namespace, and exactly the minimal samples generated.
"""
from __future__ import annotations

import asyncio
import gc
import random
from collections import defaultdict

from cachesaver.pending import Pending
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import DiskStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

REQUESTS = 5_000
NAMESPACES = 1_000
PROMPTS = 200
IN_FLIGHT = 100


def workload(seed: int = 7) -> list[Request]:
    """Each namespace is one run of an experiment: 5 prompts from a shared pool, n = 1..3."""
    rng = random.Random(seed)
    reqs = []
    for i in range(REQUESTS):
        ns = i % NAMESPACES
        reqs.append(Request(prompt=f"prompt {rng.randrange(PROMPTS)}", n=rng.randint(1, 3),
                            namespace=f"ns{ns:04d}", request_id=f"{i:06d}"))
    return reqs


def live_pending() -> int:
    gc.collect()
    return sum(isinstance(o, Pending) for o in gc.get_objects())


async def test_five_thousand_requests_over_a_thousand_namespaces_leave_nothing_behind(tmp_path, leftovers, other_tasks):
    model = FakeModel(seed=3)
    store = DiskStore(str(tmp_path / "c"))
    reqs = workload()
    delivered: dict[tuple[str, str], list] = defaultdict(list)
    consumed: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    peak = defaultdict(int)
    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.002) as p:
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(r: Request):
            async with gate:
                resp = await p.request(r)
                for name, size in (("inflight", len(p._inflight_ids)), ("queued", len(p.queues.held())),
                                   ("turns", len(p.cacher._turns)), ("tasks", len(p._tasks))):
                    peak[name] = max(peak[name], size)
                return resp

        responses = await asyncio.gather(*(one(r) for r in reqs))
        for r, resp in zip(reqs, responses):
            assert len(resp.data) == r.n
            delivered[(r.namespace, r.prompt)].extend(resp.data)
            consumed[r.prompt][r.namespace] += r.n
        # bounded: what is in flight, never what has been asked
        assert all(size <= IN_FLIGHT for size in peak.values()), dict(peak)
        assert leftovers(p) == {}
        assert len(p.ledger._positions) == len(delivered)  # one entry per (namespace, key) asked
        assert len(p.stats.namespaces) == NAMESPACES
        assert p.stats.total.requests == REQUESTS
    assert other_tasks() == [] and live_pending() == 0
    for slot, got in delivered.items():  # G1
        assert len(got) == len(set(got)), slot
    assert model.samples_generated == sum(max(by_ns.values()) for by_ns in consumed.values())  # G2
    assert p.stats.total.samples_from_store > 3 * p.stats.total.samples_generated  # reuse dominates
    store.close()


async def test_a_second_run_over_the_same_store_adds_no_samples_and_no_state(tmp_path, leftovers):
    """The replay of the whole load is all hits: zero calls, and the ledger is rebuilt, not grown."""
    store = DiskStore(str(tmp_path / "c"))
    reqs = workload(seed=11)[:2_000]
    model = FakeModel(seed=4)
    sizes = []
    for _ in range(2):
        async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.002) as p:
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def one(r: Request):
                async with gate:
                    return await p.request(r)

            await asyncio.gather(*(one(r) for r in reqs))
            sizes.append((len(p.ledger._positions), model.samples_generated, len(model.calls)))
            assert leftovers(p) == {}
    (entries1, generated1, calls1), (entries2, generated2, calls2) = sizes
    assert entries1 == entries2 and generated1 == generated2 and calls1 == calls2
    store.close()


async def test_a_batch_of_more_keys_than_the_redis_pool_holds_is_served(redis_store_factory, leftovers):
    store = redis_store_factory()
    model = FakeModel(seed=6)
    async with OnlineAPI(model=model, cache=store, batch_size=1_000, timeout=0.01) as p:
        results = await asyncio.gather(*(p.request(Request(prompt=f"p{i}", namespace="A", request_id=f"{i:04d}"))
                                         for i in range(300)), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert failed == [], f"{len(failed)} of 300 failed: {failed[0]}"
        assert leftovers(p) == {}
    assert model.samples_generated == 300
