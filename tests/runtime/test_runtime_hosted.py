"""The engine runtime: hits on the caller's thread, misses on the host, order kept (G4), fork.

Every adapter runs the engine through ``cachesaver.runtime.HostedPipeline``; these tests drive it
directly with the seeded ``FakeModel`` and real stores.
"""
from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import threading
from dataclasses import dataclass

import pytest

from cachesaver.errors import InvalidRequestError, InvalidRequestTypeError, PipelineClosedError
from cachesaver.generation import current_generation
from cachesaver.pipelines import OnlineAPI
from cachesaver.runtime import ChunkSink, HostedPipeline, PipelineSettings, check_n, get_host, read_identity
from cachesaver.stores import DiskStore, MemoryStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

from _live_streams import StreamingAsk, StreamsLive


@dataclass(frozen=True)
class Ask(Request):
    temperature: float = 0.7


@pytest.fixture(params=["memory", "disk"])
def hosted(request, tmp_path):
    model = FakeModel(seed=3)
    store = "memory" if request.param == "memory" else str(tmp_path / "store")
    hp = HostedPipeline(lambda: model, PipelineSettings(store, batch_size=64, timeout=0.02))
    hp.fake = model
    yield hp
    hp.close()


class BlockedHost:
    """Occupies the engine host's loop until released: anything that needs it must wait."""

    def __enter__(self):
        self.release = threading.Event()
        started = threading.Event()

        def block():
            started.set()
            self.release.wait(30)

        get_host().call_soon(block)
        assert started.wait(10)
        return self

    def __exit__(self, *exc):
        self.release.set()


def test_a_sync_hit_is_served_on_the_calling_thread_while_the_engine_loop_is_busy(hosted):
    first = hosted.request_sync(Ask("q", namespace="A"))
    with BlockedHost():
        done = []
        worker = threading.Thread(target=lambda: done.append(hosted.request_sync(Ask("q", namespace="B"))))
        worker.start()
        worker.join(10)  # a liveness bound, not a speed target: a hop would wait 30 s
        assert done, "the hit needed the engine loop"
    assert done[0].data == first.data and done[0].cached == [True]
    assert hosted.fake.call_count == 1


async def test_an_async_hit_stays_on_the_callers_loop_while_the_engine_loop_is_busy(hosted):
    first = await hosted.request_async(Ask("q", namespace="A"))
    with BlockedHost():
        hit = await asyncio.wait_for(hosted.request_async(Ask("q", namespace="B")), 10)
    assert hit.data == first.data and hit.cached == [True]


async def test_an_async_hit_without_a_request_id_is_served_without_yielding_to_the_loop(hosted):
    first = await hosted.request_async(Ask("q", namespace="A"))
    coro = hosted.request_async(Ask("q", namespace="B"))
    with pytest.raises(StopIteration) as done:  # finished in its first step: no loop turn
        coro.send(None)
    assert done.value.value.data == first.data and done.value.value.cached == [True]
    with_id = hosted.request_async(Ask("q", namespace="C", request_id="r1"))
    assert with_id.send(None) is not None  # an id waits for its tick (ordered among its tick)
    with_id.close()


async def test_a_request_that_missed_on_arrival_and_left_before_its_tick_gives_its_place_back(hosted):
    pipeline = hosted.pipeline
    task = asyncio.ensure_future(hosted.request_async(Ask("q", namespace="A")))
    await asyncio.sleep(0)  # the task ran: it missed at once and holds its place; its tick is next
    assert sum(pipeline.queues.held().values()) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert pipeline.queues.held() == {}  # nobody queues behind a caller that left
    assert hosted.fake.call_count == 0
    later = await hosted.request_async(Ask("q", namespace="A"))
    assert later.cached == [False] and hosted.fake.call_count == 1


async def test_a_caller_cancelled_after_its_miss_started_but_before_it_resumed_costs_nothing(hosted):
    task = asyncio.ensure_future(hosted.request_async(Ask("q", namespace="A")))
    await asyncio.sleep(0)  # the task missed and joined its tick
    await asyncio.sleep(0)  # the tick started the miss on the engine and released the caller
    task.cancel()           # ... which has not resumed yet
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)  # ten batch windows
    assert hosted.fake.call_count == 0  # nobody waits: no call, no sample taken in A
    later = await hosted.request_async(Ask("q", namespace="A"))
    assert later.cached == [False] and hosted.fake.call_count == 1


async def test_concurrent_async_hits_replay_in_request_id_order_whatever_the_arrival(hosted):
    ids = ["r1", "r2", "r3"]
    run_a = await asyncio.gather(*(hosted.request_async(Ask("q", request_id=i, namespace="A")) for i in ids))
    # B arrives in the opposite order, all hits: each id gets what it got in A (G4).
    run_b = await asyncio.gather(*(hosted.request_async(Ask("q", request_id=i, namespace="B"))
                                   for i in reversed(ids)))
    assert [r.data for r in run_b] == [r.data for r in reversed(run_a)]
    assert len({r.data[0] for r in run_a}) == 3 and hosted.fake.call_count == 1  # one n=3 call


async def test_a_request_that_missed_is_not_overtaken_by_a_later_one_of_its_namespace(hosted):
    await hosted.request_async(Ask("q", n=2, namespace="A"))  # two samples stored
    # In B: n=3 misses (only 2 stored); then n=1 could be served from the store at once, but
    # it was asked later, so it must not take sample 0 before the n=3 request does.
    first = asyncio.ensure_future(hosted.request_async(Ask("q", n=3, namespace="B")))
    await asyncio.sleep(0)  # the n=3 request has missed and holds its place
    second = asyncio.ensure_future(hosted.request_async(Ask("q", n=1, namespace="B")))
    big, small = await asyncio.gather(first, second)
    replay_big = await hosted.request_async(Ask("q", n=3, namespace="C"))
    replay_small = await hosted.request_async(Ask("q", n=1, namespace="C"))
    assert big.data == replay_big.data and small.data == replay_small.data  # same as sequential
    assert hosted.fake.samples_generated == 4  # only what was missing (G2), however batched


def test_sync_and_async_callers_share_one_ledger(hosted):
    async def both():
        return await hosted.request_async(Ask("q", namespace="A"))

    a1 = hosted.request_sync(Ask("q", namespace="A"))
    a2 = asyncio.run(both())
    a3 = hosted.request_sync(Ask("q", namespace="A"))
    assert len({a1.data[0], a2.data[0], a3.data[0]}) == 3  # G1 across entry points


def test_a_closed_hosted_pipeline_refuses_with_the_engines_error(hosted):
    hosted.request_sync(Ask("q", namespace="A"))
    hosted.close()
    with pytest.raises(PipelineClosedError):
        hosted.request_sync(Ask("q", namespace="B"))


def test_identity_and_n_are_read_and_checked_one_way():
    assert read_identity(None, {"cachesaver_namespace": "x"}, default_namespace="d") == ("x", "")
    assert read_identity({"cachesaver_request_id": "r"}, default_namespace="d") == ("d", "r")
    with pytest.raises(InvalidRequestTypeError, match="cachesaver_namespace"):
        read_identity({"cachesaver_namespace": 3}, default_namespace="d")
    assert check_n(None) == 1
    with pytest.raises(InvalidRequestTypeError):
        check_n("2")
    with pytest.raises(InvalidRequestError):
        check_n(0)


def _child(store: str, queue) -> None:
    model = FakeModel(seed=3)
    hp = HostedPipeline(lambda: model, PipelineSettings(store, timeout=0.01))
    try:
        got = hp.request_sync(Ask("q", namespace="child"))
        more = hp.request_sync(Ask("q", namespace="child"))
        queue.put((got.data, got.cached, more.cached, model.call_count))
    finally:
        hp.close()


def test_a_forked_child_gets_its_own_engine_loop_and_shares_the_store(tmp_path):
    """A child forked after the parent's engine loop ran must not hang on the parent's thread."""
    store = str(tmp_path / "store")
    model = FakeModel(seed=3)
    parent = HostedPipeline(lambda: model, PipelineSettings(store, timeout=0.01))
    stored = parent.request_sync(Ask("q", namespace="parent"))
    parent.request_sync(Ask("other prompt", namespace="parent"))  # a miss: the host loop ran
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(store, queue))
    child.start()
    data, cached, more_cached, child_calls = queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert data == stored.data and cached == [True]  # the parent's sample, through the store
    assert more_cached == [False] and child_calls == 1  # the child's own loop generated one
    # The parent's pipeline still works after the fork.
    assert parent.request_sync(Ask("q", namespace="parent")).cached == [True]
    parent.close()


def test_the_same_hosted_pipeline_object_works_in_a_forked_child(tmp_path):
    store = str(tmp_path / "store")
    model = FakeModel(seed=3)
    hp = HostedPipeline(lambda: model, PipelineSettings(store, timeout=0.01))
    stored = hp.request_sync(Ask("q", namespace="A"))
    hp.request_sync(Ask("fresh", namespace="A"))  # the engine loop thread exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def use_parents_object():
        got = hp.request_sync(Ask("q", namespace="A"))  # a new run in the child: sample 0 again
        miss = hp.request_sync(Ask("child-only prompt", namespace="A"))
        queue.put((got.data, miss.cached, os.getpid()))

    child = ctx.Process(target=use_parents_object)
    child.start()
    data, miss_cached, pid = queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0 and pid != os.getpid()
    assert data == stored.data and miss_cached == [False]
    hp.close()


def test_a_hosted_miss_canonicalises_its_request_once(tmp_path, monkeypatch):
    # The key try_now hashed (and its canonical JSON, the key's stored meta) travels with the
    # miss's reservation: admitting the request on the engine's loop does not walk it again.
    import cachesaver.keys as keys

    walks = []
    real = keys.canonical_json
    monkeypatch.setattr(keys, "canonical_json", lambda value: walks.append(1) or real(value))
    model = FakeModel()
    hosted = HostedPipeline(lambda: model, PipelineSettings(str(tmp_path), batch_size=1, timeout=0.0))
    try:
        miss = hosted.request_sync(Request(prompt="once", n=1, namespace="a"))
        assert miss.cached == [False] and model.call_count == 1 and len(walks) == 1
        hit = hosted.request_sync(Request(prompt="once", n=1, namespace="b"))
        assert hit.cached == [True] and hit.data == miss.data and len(walks) == 2
    finally:
        hosted.close()


class PausesAfterStoring(FakeModel):
    """A ``FakeModel`` whose calls pause once their samples are stored, before the engine hands
    them out (a hook of the call's ``Generation``): the window a stream's request is in when the
    stream's caller has already left."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored = threading.Event()

    async def request(self, request):
        async def pause(_start):
            self.stored.set()
            await asyncio.sleep(0.3)

        current_generation().when_stored(pause)
        return await super().request(request)


@pytest.mark.parametrize("store", ["memory", "disk"])
def test_a_begun_request_keeps_its_place_once_its_caller_drops_the_begun_object(store, tmp_path):
    """A stream's request (``begin``, then ``submit``) holds its place until it is done, also
    after its caller stopped reading and dropped the ``Begun`` (the request goes on and takes its
    sample, G1). Before, collecting the ``Begun`` gave the place back while the request was still
    at the model, and a request of the namespace checked between the append and the claim was
    handed the same sample: a litellm stream stopped after two chunks shared its sample with the
    next stream, under load."""
    model = PausesAfterStoring(seed=3)
    spec = "memory" if store == "memory" else str(tmp_path / "store")
    hosted = HostedPipeline(lambda: model, PipelineSettings(spec, batch_size=64, timeout=0.02))
    try:
        request = Ask("q", namespace="A")
        begun = hosted.begin(request)
        assert begun.response is None  # a miss, holding its place
        first = begun.submit(request)
        del begun
        gc.collect()
        assert sum(hosted.pipeline.queues.held().values()) == 1  # its request is not done
        assert model.stored.wait(10)  # its sample is stored, not yet handed out
        second = hosted.request_sync(Ask("q", namespace="A"))  # a hit check on this thread
        first_response = first.result(10)
        assert first_response.cached == [False] and second.cached == [False]
        assert first_response.data != second.data  # each its own sample (G1)
        assert model.samples_generated == 2 and model.call_count == 2
        replay = hosted.request_sync(Ask("q", n=2, namespace="B"))
        assert replay.data == first_response.data + second.data  # in the order asked (G4)
    finally:
        hosted.close()


@pytest.mark.parametrize("store", ["memory", "disk"])
async def test_a_stream_carries_one_sample_when_another_process_of_its_run_claims_the_streamed_one(store, tmp_path):
    """A shared run (``run_id``) over two pipelines on one store, as two processes. Process 1's
    stream is streamed its sample live; process 2's request of the same namespace is checked
    between that sample's append and process 1's claim, and takes it. Process 1's request then
    goes round and is generated another sample. Before, that second call was streamed into the
    same stream too: its caller was sent one sample's chunks, then another's. Now a stream is
    streamed one sample; the request's own (the second) reaches it whole from the store."""
    shared = MemoryStore() if store == "memory" else DiskStore(str(tmp_path / "store"))
    model_1, model_2 = StreamsLive(gated=0, hold_stored=True), StreamsLive(gated=0)
    async with OnlineAPI(model=model_1, cache=shared, run_id="R", timeout=0.01) as process_1, \
            OnlineAPI(model=model_2, cache=shared, run_id="R", timeout=0.01) as process_2:
        sink = ChunkSink(get_host())
        streaming = asyncio.ensure_future(process_1.request(StreamingAsk("q", request_id="s", namespace="X", sink=sink)))
        await model_1.stored.wait()  # its sample is stored, not yet claimed
        other = await process_2.request(StreamingAsk("q", request_id="o", namespace="X"))
        model_1.release.set()
        streamed = await streaming
    assert model_1.made == 2 and model_2.made == 0  # process 1 generated again for its stream
    assert model_1.shown == [(sink, "sample 0")]  # one sample streamed into the stream
    assert other.data == ["sample 0"] and streamed.data == ["sample 1"]
    shared.close()
