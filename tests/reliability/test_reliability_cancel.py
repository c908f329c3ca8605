"""Cancellation: callers that leave at any stage take nothing with them.

A cancelled caller must not consume a ledger position (the next request of its namespace gets
the sample it would have had), must not make the engine ask the model for more than the live
callers need, must never leave another caller waiting, and must leave no task, future or
per-request entry behind. Stages covered: in the tick's yield (the tick leader), while the tick
awaits the store, in the batch window, waiting for a key's turn, during the model call (as
the representative or not, some or all of a merged call), and a seeded cancellation storm.
"""
from __future__ import annotations

import asyncio
import gc
import random
import uuid
from collections import defaultdict

import pytest

from cachesaver.keys import request_key
from cachesaver.pending import Pending
from cachesaver.pipelines import OnlineAPI
from cachesaver.runtime import ChunkSink
from cachesaver.stores import DiskStore, MemoryStore
from cachesaver.stores.redis import RedisStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

from _live_streams import StreamingAsk, StreamsLive

def req(rid: str, ns: str = "A", n: int = 1, prompt: str = "q") -> Request:
    return Request(prompt=prompt, n=n, request_id=rid, namespace=ns)


class GatedModel(FakeModel):
    """A FakeModel whose calls wait until the test opens ``gate`` (the call is 'in flight')."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def request(self, request):
        self.entered.set()
        await self.gate.wait()
        return await super().request(request)


class GatedStore(MemoryStore):
    """A MemoryStore whose reads really suspend until ``gate`` opens, as a network store's do."""

    inline_io = False  # it suspends: the pipeline must not assume its awaits complete at once

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.reading = asyncio.Event()

    async def read(self, key, start, count):
        self.reading.set()
        await self.gate.wait()
        return await super().read(key, start, count)


def pending_futures() -> list[asyncio.Future]:
    """Futures of this loop still pending, the running test itself aside (a leak check)."""
    gc.collect()
    loop, me = asyncio.get_running_loop(), asyncio.current_task()
    return [o for o in gc.get_objects()
            if isinstance(o, asyncio.Future) and o is not me and not o.done() and o.get_loop() is loop]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- the tick leader -----------------------------------------------------------------------------
async def test_tick_leader_cancelled_in_its_yield_consumes_no_sample(fake_model, leftovers):
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=100, timeout=0.01) as p:
        stored = (await p.request(req("w", ns="B", n=3))).data
        leader = asyncio.ensure_future(p.request(req("a1")))
        follower = asyncio.ensure_future(p.request(req("a2")))
        await asyncio.sleep(0)  # both admitted; the leader yields so its tick can fill
        leader.cancel()
        got = await follower
        after = await p.request(req("a3"))
        assert leader.cancelled()
        assert leftovers(p) == {}
    assert (got.data, after.data) == (stored[:1], stored[1:2])  # A starts at sample 0


async def test_tick_leader_cancelled_on_a_miss_makes_the_model_generate_only_for_the_living(fake_model):
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=100, timeout=0.01) as p:
        leader = asyncio.ensure_future(p.request(req("a1", n=3)))
        follower = asyncio.ensure_future(p.request(req("a2", n=1)))
        await asyncio.sleep(0)
        leader.cancel()
        got = await follower
    assert [c.n for c in fake_model.calls] == [1]  # G2: nobody waits for the leader's 3 samples
    assert got.data == [fake_model.sample_text("q", 0)]


async def test_tick_leader_cancelled_while_the_store_answers_leaves_no_waiter_hanging(fake_model, leftovers):
    store = GatedStore()
    async with OnlineAPI(model=fake_model, cache=store, batch_size=100, timeout=0.01) as p:
        await p.request(req("w", ns="B", n=3))
        store.gate.clear()
        store.reading.clear()
        leader = asyncio.ensure_future(p.request(req("a1")))
        followers = [asyncio.ensure_future(p.request(req(f"a{i}", ns=f"N{i}"))) for i in range(2, 6)]
        await store.reading.wait()  # the tick is being checked; the leader awaits the store
        leader.cancel()
        store.gate.set()
        done, pending = await asyncio.wait(followers, timeout=2)
        for task in pending:
            task.cancel()
        assert not pending, f"{len(pending)} callers of the aborted tick hang"
        assert leftovers(p) == {}


async def test_tick_leader_cancelled_at_every_await_on_real_redis(redis_store_factory, monkeypatch):
    """Sweep the cancel over the leader's awaits (tick yield, Redis round trips) on a real Redis.

    If the engine answered the leader before the cancellation was delivered to it (already
    answered when ``cancel()`` was called, or answered in the same loop iteration, while the
    cancel request was pending), the leader's sample is spent: asyncio raises CancelledError
    instead of returning it. Otherwise the sample must be left for the next request.
    """
    leader_task: dict[str, asyncio.Task] = {}
    answered: dict[str, str] = {}
    original = Pending.resolve

    def recording_resolve(self, response):
        if not self.future.done() and self.request.request_id == "a1":
            task = leader_task.get("a1")
            answered["a1"] = "while its cancel was pending" if task is not None and task.cancelling() else "first"
        original(self, response)

    monkeypatch.setattr(Pending, "resolve", recording_resolve)
    outcomes = {}
    for k in range(1, 15):
        model = FakeModel(seed=1)
        store = RedisStore(redis_store_factory.url, prefix=f"{redis_store_factory.prefix}:{uuid.uuid4().hex[:6]}")
        try:
            async with OnlineAPI(model=model, cache=store, batch_size=100, timeout=0.01) as p:
                stored = (await p.request(req("w", ns="B", n=3))).data
                answered.clear()
                leader = leader_task["a1"] = asyncio.ensure_future(p.request(req("a1")))
                follower = asyncio.ensure_future(p.request(req("a2")))
                for _ in range(k):
                    await asyncio.sleep(0)
                leader.cancel()
                try:
                    got = (await asyncio.wait_for(follower, 0.5)).data
                except asyncio.TimeoutError:
                    outcomes[k] = "hangs"
                    continue
                want = stored[1:2] if "a1" in answered else stored[:1]
                outcomes[k] = True if got == want else f"got {got}, want {want} (leader answered: {answered})"
        finally:
            await store.clear()
            await store.aclose()
    assert {k: v for k, v in outcomes.items() if v is not True} == {}


async def test_cancel_requested_while_the_store_answers_consumes_nothing(fake_model):
    store = GatedStore()
    async with OnlineAPI(model=fake_model, cache=store, batch_size=100, timeout=0.01) as p:
        stored = (await p.request(req("w", ns="B", n=3))).data
        store.gate.clear()
        store.reading.clear()
        leader = asyncio.ensure_future(p.request(req("a1")))
        follower = asyncio.ensure_future(p.request(req("a2")))
        await store.reading.wait()  # the leader's hit check awaits the store
        store.gate.set()            # the store answers...
        leader.cancel()             # ...and the caller leaves in the same loop iteration
        got = await asyncio.wait_for(follower, 2)
        assert leader.cancelled()
    assert got.data == stored[:1]


# -- later stages --------------------------------------------------------------------------------
async def test_cancelled_in_the_batch_window_is_not_generated_for(fake_model, leftovers):
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=100, timeout=0.05) as p:
        keep = asyncio.ensure_future(p.request(req("a1", n=2)))
        leave = asyncio.ensure_future(p.request(req("a2", n=3)))
        other = asyncio.ensure_future(p.request(req("b1", ns="B", n=1)))
        await settle()  # checked, queued in the batcher
        assert len(p._batcher) == 3
        leave.cancel()
        got, b = await asyncio.gather(keep, other)
        nxt = await p.request(req("a3", n=1))
        assert leftovers(p) == {}
    assert [c.n for c in fake_model.calls] == [2, 1]  # the window closed without a2's 3 samples
    assert b.data == got.data[:1] and len(set(got.data + nxt.data)) == 3


async def test_cancelled_while_waiting_for_the_keys_turn(leftovers):
    model = GatedModel(seed=2)
    async with OnlineAPI(model=model, cache="memory", batch_size=1, timeout=0) as p:
        first = asyncio.ensure_future(p.request(req("a1", n=2)))
        await model.entered.wait()  # batch 1 holds the key's turn, its call in flight
        waiting = [asyncio.ensure_future(p.request(req(f"b{i}", ns="B", n=1 + i % 2))) for i in range(4)]
        await settle()
        waiting[1].cancel()
        waiting[2].cancel()
        model.gate.set()
        a = await first
        b0, b3 = await asyncio.gather(waiting[0], waiting[3])
        assert leftovers(p) == {}
    # B's survivors take B's samples 0 and 1..2 in request_id order; the cancelled took nothing.
    assert b0.data == a.data[:1] and b3.data[0] == a.data[1] and len(b3.data) == 2
    assert [c.n for c in model.calls] == [2, 1]


@pytest.mark.parametrize("cancel_representative", [True, False])
async def test_cancelled_during_a_merged_call_others_get_their_samples(cancel_representative, leftovers, other_tasks):
    model = GatedModel(seed=3)
    async with OnlineAPI(model=model, cache="memory", batch_size=100, timeout=0.01) as p:
        reqs = [req(f"r{i:02d}", ns=f"N{i % 4}", n=1 + i % 3) for i in range(12)]
        tasks = {r.request_id: asyncio.ensure_future(p.request(r)) for r in reqs}
        await model.entered.wait()
        assert len(model.calls) == 0 and p.stats.model_calls == 1  # one merged call in flight
        gone = {"r00", "r05", "r06", "r11"} if cancel_representative else {"r05", "r06", "r11"}
        for rid in gone:
            tasks[rid].cancel()
        await settle()
        model.gate.set()
        alive = [r for r in reqs if r.request_id not in gone]
        results = dict(zip([r.request_id for r in alive], await asyncio.gather(*(tasks[r.request_id] for r in alive))))
        # the call was made for everyone who waited when it started: the most any namespace asked
        asked = model.calls[0].n
        assert asked == max(sum(r.n for r in reqs if r.namespace == ns) for ns in ("N0", "N1", "N2", "N3"))
        sample = [model.sample_text("q", k) for k in range(asked)]
        positions = defaultdict(int)
        for r in alive:  # request_id order: each namespace's survivors take its samples from 0
            pos = positions[r.namespace]
            assert results[r.request_id].data == sample[pos:pos + r.n], r.request_id
            positions[r.namespace] += r.n
        # the cancelled took no position: next requests continue right after the survivors
        follow = {ns: await p.request(req(f"z-{ns}", ns=ns, n=1)) for ns in ("N0", "N1", "N2", "N3")}
        for ns, resp in follow.items():
            pos = positions[ns]
            assert resp.data == [sample[pos] if pos < asked else model.sample_text("q", asked)]
        assert all(not t.cancelled() for rid, t in tasks.items() if rid not in gone)
        billed = sum(not c for r in list(results.values()) + list(follow.values()) for c in r.cached)
        left = sum(map(len, p.cacher._unbilled.values()))
        assert billed + left == model.samples_generated  # G8: each generated sample billed at most once
        assert set(leftovers(p)) <= {"unbilled"}
    assert other_tasks() == [] and pending_futures() == []


async def test_all_waiters_of_a_call_cancelled_the_samples_are_kept_and_billed_once(leftovers):
    model = GatedModel(seed=4)
    async with OnlineAPI(model=model, cache="memory", batch_size=100, timeout=0.01) as p:
        tasks = [asyncio.ensure_future(p.request(req(f"r{i}", ns=f"N{i}", n=2))) for i in range(3)]
        await model.entered.wait()
        for task in tasks:
            task.cancel()
        model.gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await settle()
        assert all(t.cancelled() for t in tasks)
        later = await p.request(req("late", ns="N9", n=2))
        again = await p.request(req("late2", ns="N8", n=2))
        assert leftovers(p) == {}
    assert [c.n for c in model.calls] == [2]  # paid once, nothing thrown away
    assert later.data == [model.sample_text("q", 0), model.sample_text("q", 1)]
    assert later.cached == [False, False] and again.cached == [True, True]  # billed to the first claimer


@pytest.mark.parametrize("backend", ["memory", "disk"])
async def test_a_caller_ahead_of_a_live_stream_leaves_the_stream_keeps_the_sample_it_was_shown(
        backend, tmp_path, leftovers):
    """Two requests of namespace X wait in one batch behind a call for namespace Y. That call
    stores sample 0, which X's first request is planned to take; the one new sample is
    X's second request's, streamed to it live. X's first request leaves during that stream.
    Before, the stream's request then received sample 0 and sample 1, the one it was shown,
    stayed free: the next request of X was handed it again (G1; through litellm, a stream shown
    a sample that the next call of its namespace got too). Now it receives the sample it was
    shown; the one that left takes nothing it was not planned to, and the next request of X is
    handed a new sample."""
    model = StreamsLive()
    store = MemoryStore() if backend == "memory" else DiskStore(str(tmp_path / "c"))
    async with OnlineAPI(model=model, cache=store, batch_size=100, timeout=0.01) as p:
        first_y = asyncio.ensure_future(p.request(StreamingAsk("q", request_id="y", namespace="Y")))
        await model.entered[0].wait()  # Y's call holds the key's turn
        sink = ChunkSink(None)
        leaving = asyncio.ensure_future(p.request(StreamingAsk("q", request_id="x1", namespace="X")))
        streaming = asyncio.ensure_future(p.request(StreamingAsk("q", request_id="x2", namespace="X", sink=sink)))
        await settle()  # both checked: misses, each holding its place in X's queue
        assert sorted(p.queues.held().items()) == [(("X", p.key_of(StreamingAsk("q"))), 2),
                                                   (("Y", p.key_of(StreamingAsk("q"))), 1)]
        model.gates[0].set()
        assert (await first_y).data == ["sample 0"]
        await model.entered[1].wait()  # X's call streams its one new sample to x2
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
        model.gates[1].set()
        streamed = await streaming
        after = await p.request(StreamingAsk("q", request_id="x3", namespace="X"))
        assert leaving.cancelled()
        assert model.shown == [(sink, "sample 1")]
        assert streamed.data == ["sample 1"]  # what it was shown
        assert after.data == ["sample 2"]  # not the stream's sample again (G1)
        assert leftovers(p) == {}
    store.close()


@pytest.mark.parametrize("backend", ["memory", "disk"])
@pytest.mark.parametrize("one_leaves", [False, True])
async def test_a_stream_of_two_samples_whose_first_is_stored_is_streamed_its_second(backend, one_leaves, tmp_path,
                                                                                     leftovers):
    """A stream asking for 2 samples whose first is stored is streamed the one missing: its
    second. It receives both, after one call, whether or not a request of its namespace ahead
    of it (planned the first stored sample) leaves during the stream; the one that leaves takes
    nothing, its sample goes to nobody."""
    stored = 2 if one_leaves else 1  # what Y's call stores: one more when a request is ahead
    model = StreamsLive(gated=stored + 1)
    store = MemoryStore() if backend == "memory" else DiskStore(str(tmp_path / "c"))
    async with OnlineAPI(model=model, cache=store, batch_size=100, timeout=0.01) as p:
        first_y = asyncio.ensure_future(p.request(StreamingAsk("q", n=stored, request_id="y", namespace="Y")))
        await model.entered[0].wait()  # Y's call holds the key's turn
        leaving = asyncio.ensure_future(p.request(StreamingAsk("q", request_id="x1", namespace="X"))) if one_leaves else None
        sink = ChunkSink(None)
        streaming = asyncio.ensure_future(p.request(StreamingAsk("q", n=2, request_id="x2", namespace="X", sink=sink)))
        await settle()
        for gate in model.gates[:stored]:
            gate.set()
        await first_y
        await model.entered[stored].wait()  # the stream's call
        if leaving is not None:
            leaving.cancel()
            await asyncio.gather(leaving, return_exceptions=True)
        model.gates[stored].set()
        streamed = await streaming
        assert leftovers(p) == {}
    shown = f"sample {stored}"
    assert model.made == stored + 1 and model.shown == [(sink, shown)]  # one call, streamed
    assert streamed.data == [f"sample {stored - 1}", shown]
    store.close()


@pytest.mark.parametrize("backend", ["memory", "disk"])
async def test_cancellation_storm_keeps_every_ledger_consistent(backend, tmp_path, leftovers, other_tasks,
                                                                 monkeypatch):
    """300 requests, a seeded 30% cancelled at seeded moments during batches, turns and calls.

    A cancel that lands in the loop iteration where the caller's answer was already set cannot
    be undone (asyncio delivers the CancelledError instead of the result): those samples are
    consumed by the namespace but nobody sees them. We record which requests the engine
    resolved, so the ledger check below is exact either way.
    """
    resolved: set[str] = set()
    original = Pending.resolve

    def recording_resolve(self, response):
        if not self.future.done():
            resolved.add(self.request.request_id)
        original(self, response)

    monkeypatch.setattr(Pending, "resolve", recording_resolve)
    rng = random.Random(1234)
    model = FakeModel(seed=5, latency=0.004)
    store = MemoryStore() if backend == "memory" else DiskStore(str(tmp_path / "c"))
    async with OnlineAPI(model=model, cache=store, batch_size=16, timeout=0.002) as p:
        reqs = [req(f"{i:04d}", ns=f"N{rng.randrange(6)}", n=rng.randint(1, 3), prompt=f"p{rng.randrange(5)}")
                for i in range(300)]
        tasks = [asyncio.ensure_future(p.request(r)) for r in reqs]
        await asyncio.sleep(0.002)  # every tick checked: cancels land in batches, turns and calls
        for i in rng.sample(range(300), 90):
            await asyncio.sleep(rng.random() * 0.002)
            tasks[i].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        delivered: dict[tuple[str, str], list] = defaultdict(list)
        consumed: dict[tuple[str, str], int] = defaultdict(int)
        cancelled = 0
        for r, res in zip(reqs, results):
            slot = (r.namespace, r.prompt)
            if isinstance(res, asyncio.CancelledError):
                cancelled += 1
                consumed[slot] += r.n if r.request_id in resolved else 0  # answered, then cancelled
                continue
            assert not isinstance(res, BaseException), res
            assert len(res.data) == r.n and r.request_id in resolved
            delivered[slot].extend(res.data)
            consumed[slot] += r.n
        assert 0 < cancelled and not any(isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
                                         for r in results)
        for slot, got in delivered.items():  # G1 for the survivors
            assert len(got) == len(set(got)), f"{slot} got a sample twice"
        # The ledger advanced by exactly what the engine handed out: cancelled callers took nothing.
        for (ns, prompt), count in consumed.items():
            assert p.ledger._positions.get((ns, request_key(req("x", prompt=prompt))), 0) == count, (ns, prompt)
        # ...and the next request of each namespace continues right there, with no model call
        # if the sample exists.
        for (ns, prompt), count in consumed.items():
            follow = await p.request(req(f"z-{ns}-{prompt}", ns=ns, prompt=prompt))
            assert follow.data[0] not in delivered[(ns, prompt)]
        assert set(leftovers(p)) <= {"unbilled"}
    assert other_tasks() == [] and pending_futures() == []
    store.close()
