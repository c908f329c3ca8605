"""A private run's hits on a Redis store for synchronous callers: served on the caller's thread
with one round trip (an LRANGE through the store's synchronous client), no hop to the engine's
loop; callers on an event loop still go through the engine's loop. The ledger stays exact: no
sample is handed out twice in a namespace, whoever takes it (caller threads, the engine's tick,
misses), and a namespace replays the stored samples in order."""
from __future__ import annotations

import asyncio
import threading

from cachesaver.runtime import HostedPipeline, PipelineSettings
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

from tests.redis.test_redis_store import count_round_trips
from tests.runtime.test_runtime_hosted import BlockedHost


def _hosted(store, seed: int = 3, **settings) -> HostedPipeline:
    model = FakeModel(seed=seed)
    hosted = HostedPipeline(lambda: model, PipelineSettings(store, batch_size=64, timeout=0.02, **settings))
    hosted.fake = model  # type: ignore[attr-defined]
    return hosted


def test_a_sync_hit_is_one_round_trip_on_the_callers_thread_while_the_engine_loop_is_busy(redis_store_factory):
    hosted = _hosted(redis_store_factory())
    try:
        first = hosted.request_sync(Request(prompt="q", n=3, namespace="A"))
        hosted.request_sync(Request(prompt="q", n=1, namespace="warm"))  # the sync client connected
        with BlockedHost(), count_round_trips() as count:
            done = []
            worker = threading.Thread(
                target=lambda: done.append(hosted.request_sync(Request(prompt="q", n=2, namespace="B"))))
            worker.start()
            worker.join(10)  # a liveness bound, not a speed target: a hop would wait 30 s
            assert done, "the hit needed the engine loop"
            assert count[0] == 1  # the LRANGE, nothing else
        assert done[0].data == first.data[:2] and done[0].cached == [True, True]
        assert hosted.fake.call_count == 1  # type: ignore[attr-defined]
    finally:
        hosted.close()


def test_consecutive_sync_hits_replay_the_namespace_in_order(redis_store_factory):
    hosted = _hosted(redis_store_factory())
    try:
        stored = hosted.request_sync(Request(prompt="q", n=5, namespace="fill")).data
        replay = [hosted.request_sync(Request(prompt="q", n=1, namespace="B")).data[0] for _ in range(5)]
        assert replay == stored  # sample k to the k-th request, as the engine's path gives it
        assert hosted.pipeline.sync_hits and not hosted.pipeline.inline_hits
    finally:
        hosted.close()


async def test_an_async_caller_of_a_redis_store_goes_through_the_engine_loop(redis_store_factory):
    """An async caller's loop never blocks on a Redis socket: its hit waits for the engine's loop."""
    hosted = _hosted(redis_store_factory())
    try:
        first = await hosted.request_async(Request(prompt="q", n=1, namespace="A"))
        with BlockedHost():
            task = asyncio.ensure_future(hosted.request_async(Request(prompt="q", n=1, namespace="B")))
            done, _ = await asyncio.wait({task}, timeout=0.3)
            assert not done  # the engine's loop is held: the hit cannot have been served
        hit = await asyncio.wait_for(task, 10)
        assert hit.data == first.data and hit.cached == [True]
    finally:
        await hosted.aclose()


def test_a_shared_run_has_no_synchronous_hits_on_redis(redis_store_factory):
    """A shared run's claim is the store's atomic script (several processes): never a local read."""
    hosted = _hosted(redis_store_factory(), run_id="shared")
    try:
        assert not hosted.pipeline.sync_hits
    finally:
        hosted.close()


def test_caller_threads_the_engine_tick_and_misses_never_hand_a_sample_out_twice(redis_store_factory):
    """40 stored samples, then 100 concurrent requests of one (namespace, key): 4 threads of sync
    callers (hits on their threads, misses on the engine) and an event loop of async callers (all
    through the engine's tick). Every sample goes to exactly one request (G1), each is one of
    the key's stored samples, and the model generates exactly the 60 that were missing (G2)."""
    hosted = _hosted(redis_store_factory())
    try:
        stored = hosted.request_sync(Request(prompt="q", n=40, namespace="fill")).data
        got: list = []
        lock = threading.Lock()
        start = threading.Barrier(5)

        def sync_caller():
            start.wait(10)
            for _ in range(20):
                response = hosted.request_sync(Request(prompt="q", n=1, namespace="race"))
                with lock:
                    got.extend(response.data)

        def async_callers():
            async def run():
                start.wait(10)
                responses = await asyncio.gather(
                    *[hosted.request_async(Request(prompt="q", n=1, namespace="race")) for _ in range(20)])
                with lock:
                    for response in responses:
                        got.extend(response.data)

            asyncio.run(run())

        threads = [threading.Thread(target=sync_caller) for _ in range(4)] + [threading.Thread(target=async_callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(got) == 100
        assert len(set(got)) == 100  # no sample twice
        everything = hosted.request_sync(Request(prompt="q", n=100, namespace="check")).data
        assert set(got) == set(everything) and everything[:40] == stored
        assert hosted.fake.samples_generated == 100  # type: ignore[attr-defined]
    finally:
        hosted.close()


def test_the_engine_ticks_bulk_hits_and_caller_threads_hits_on_many_keys_never_share_a_sample(
        redis_store_factory):
    """The engine's tick reads the first hit of each (namespace, key) for many keys in one round
    trip and takes those positions after the reply, while caller threads take positions of the
    same keys with their own synchronous reads. A position a thread took during the tick's read
    must not be taken again by the tick (G1): 8 keys x 30 stored samples, 4 threads of sync
    callers and ticks of 8 keys at once, 16 hits per key in all."""
    prompts = [f"q{i}" for i in range(8)]
    hosted = _hosted(redis_store_factory())
    try:
        stored = {p: hosted.request_sync(Request(prompt=p, n=30, namespace="fill")).data for p in prompts}
        calls_before = hosted.fake.call_count  # type: ignore[attr-defined]
        store = hosted._open_pipeline().store
        bulk_reads: list[int] = []
        read_many = store.read_many

        async def counted_read_many(reads):
            bulk_reads.append(len(reads))
            return await read_many(reads)

        store.read_many = counted_read_many  # (counts the tick's bulk reads; the reads are real)
        got: dict[str, list] = {p: [] for p in prompts}
        lock = threading.Lock()
        start = threading.Barrier(5)

        def sync_caller(offset: int):
            start.wait(10)
            for i in range(16):
                prompt = prompts[(i + offset) % 8]
                response = hosted.request_sync(Request(prompt=prompt, n=1, namespace="race"))
                with lock:
                    got[prompt].extend(response.data)

        def async_callers():
            async def run():
                start.wait(10)
                for _ in range(8):
                    responses = await asyncio.gather(
                        *[hosted.request_async(Request(prompt=p, n=1, namespace="race")) for p in prompts])
                    with lock:
                        for prompt, response in zip(prompts, responses):
                            got[prompt].extend(response.data)

            asyncio.run(run())

        threads = [threading.Thread(target=sync_caller, args=(k,)) for k in range(4)]
        threads.append(threading.Thread(target=async_callers))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert any(n >= 2 for n in bulk_reads)  # the tick's bulk path ran
        for prompt in prompts:
            assert len(got[prompt]) == 16
            assert sorted(got[prompt], key=stored[prompt].index) == stored[prompt][:16]  # each once, no gap
        assert hosted.fake.call_count == calls_before  # type: ignore[attr-defined]
    finally:
        hosted.close()
