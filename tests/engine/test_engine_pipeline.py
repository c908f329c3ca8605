"""Pipeline behaviour: validation errors, batching, hits that do not wait, clean shutdown."""
from __future__ import annotations

import asyncio
import gc
import warnings
from dataclasses import dataclass

import pytest

from cachesaver.errors import (
    DuplicateRequestIdError,
    InvalidRequestError,
    InvalidRequestTypeError,
    ModelOutputError,
    NonFiniteNumberError,
    NotSerializableError,
    PipelineClosedError,
)
from cachesaver.pipelines import LocalAPI, OnlineAPI
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request, Response


def req(rid, ns="A", n=1, prompt="q"):
    return Request(prompt=prompt, n=n, request_id=rid, namespace=ns)


@pytest.mark.parametrize(
    "bad, error, field",
    [
        (dict(n=0), InvalidRequestError, "request.n"),
        (dict(n=-2), InvalidRequestError, "request.n"),
        (dict(n=1.5), InvalidRequestTypeError, "request.n"),
        (dict(n=True), InvalidRequestTypeError, "request.n"),
        (dict(namespace=3), InvalidRequestTypeError, "request.namespace"),
        (dict(request_id=7), InvalidRequestTypeError, "request.request_id"),
        (dict(prompt=object()), NotSerializableError, "prompt"),
        # issue 22, item 5: a keyed number is finite; refused as a request error
        (dict(prompt={"t": float("nan")}), NonFiniteNumberError, r"\$\.prompt\.t is nan"),
    ],
)
async def test_bad_requests_name_the_field(bad, error, field, fake_model):
    fields = dict(prompt="q", n=1, request_id="r", namespace="A") | bad
    async with OnlineAPI(model=fake_model, cache="memory") as p:
        with pytest.raises(error, match=field):
            await p.request(Request(**fields))
    assert fake_model.calls == []


def test_a_non_finite_key_field_is_a_request_error_and_still_not_serializable():
    # a ValueError the proxy answers with HTTP 400; code catching NotSerializableError still does
    assert issubclass(NonFiniteNumberError, InvalidRequestError)
    assert issubclass(NonFiniteNumberError, NotSerializableError)


async def test_not_a_request(fake_model):
    async with OnlineAPI(model=fake_model, cache="memory") as p:
        with pytest.raises(InvalidRequestTypeError, match="cachesaver.typedefs.Request"):
            await p.request({"prompt": "q"})  # type: ignore[arg-type]


def test_bad_constructor_arguments(fake_model):
    with pytest.raises(InvalidRequestError, match="batch_size"):
        OnlineAPI(model=fake_model, cache="memory", batch_size=0)
    with pytest.raises(InvalidRequestError, match="timeout"):
        OnlineAPI(model=fake_model, cache="memory", timeout=-1)
    with pytest.raises(InvalidRequestTypeError, match="run_id"):
        OnlineAPI(model=fake_model, cache="memory", run_id=5)
    with pytest.raises(InvalidRequestTypeError, match="request"):
        OnlineAPI(model=object(), cache="memory")
    with pytest.raises(InvalidRequestTypeError, match="batch_request"):
        LocalAPI(model=object(), cache="memory")


async def test_duplicate_request_id_in_flight(fake_model):
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=10, timeout=0.01) as p:
        results = await asyncio.gather(p.request(req("same")), p.request(req("same", ns="B")), return_exceptions=True)
        assert isinstance(results[1], DuplicateRequestIdError)
        assert "request_id 'same'" in str(results[1])
        assert not isinstance(results[0], BaseException)
        # once the first has finished the id is free again
        await p.request(req("same"))


async def test_empty_request_ids_are_assigned_in_arrival_order(fake_model):
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=10, timeout=0.01) as p:
        a, b = await asyncio.gather(p.request(Request(prompt="q")), p.request(Request(prompt="q")))
    assert a.data != b.data and fake_model.calls[0].n == 2


@pytest.mark.parametrize("returned", [["not", "a", "response"], Response(data="text"), None])
async def test_model_returning_the_wrong_type(returned):
    class Broken(FakeModel):
        async def request(self, request):
            return returned

    async with OnlineAPI(model=Broken(), cache="memory") as p:
        with pytest.raises(ModelOutputError, match="Broken.request"):
            await p.request(req("a"))


async def test_model_returning_no_samples_or_non_json(fake_model):
    class Empty(FakeModel):
        async def request(self, request):
            return Response(data=[])

    class Opaque(FakeModel):
        async def request(self, request):
            return Response(data=[object()])

    async with OnlineAPI(model=Empty(), cache="memory") as p:
        with pytest.raises(ModelOutputError, match="no samples"):
            await p.request(req("a"))
    store_holder = {}
    async with OnlineAPI(model=Opaque(), cache="memory") as p:
        with pytest.raises(NotSerializableError, match="sample 1 returned by Opaque"):
            await p.request(req("a"))
        store_holder["store"] = p.store
    assert [k async for k in store_holder["store"].iter_keys()] == []  # nothing stored


async def test_full_hit_does_not_wait_for_the_batch_window(fake_model):
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=1000, timeout=3600) as p:
        warm = asyncio.ensure_future(p.request(req("w", ns="A")))
        await asyncio.sleep(0.01)
        assert not warm.done()  # a miss waits for the window (an hour)...
        p._batcher.flush()  # ...so close it by hand for the warm-up
        await warm
        miss = asyncio.ensure_future(p.request(req("m", ns="A")))  # A has used its sample: a miss
        hit = await p.request(req("h", ns="B"))  # ...while B's request is a full hit: immediate
        assert hit.data == warm.result().data and hit.cached == [True]
        assert not miss.done()
        p._batcher.flush()
        await miss


async def test_batch_size_counts_samples_and_overflow(fake_model):
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=4, timeout=3600) as p:
        await asyncio.gather(*(p.request(req(f"r{i}", prompt=f"p{i}", n=2)) for i in range(4)))
    assert len(fake_model.calls) == 4
    model = FakeModel()
    async with OnlineAPI(model=model, cache="memory", batch_size=3, timeout=0.01, allow_batch_overflow=False) as p:
        await asyncio.gather(*(p.request(req(f"r{i}", prompt="same", n=2, ns=f"ns{i}")) for i in range(3)))
    # batches of 2 samples never exceed 3 -> three batches of one request each, sequential per key
    assert [c.n for c in model.calls] == [2]  # first batch generates 2, later ones reuse them
    model2 = FakeModel()
    async with OnlineAPI(model=model2, cache="memory", batch_size=3, timeout=0.01, allow_batch_overflow=True) as p:
        rs = await asyncio.gather(*(p.request(req(f"r{i}", prompt="same", n=2, ns="A")) for i in range(3)))
    assert [c.n for c in model2.calls] == [4, 2]  # {r0, r1} overflowed into one batch, r2 alone
    assert len({s for r in rs for s in r.data}) == 6


async def test_local_api_batches_misses_into_batch_request():
    model = FakeModel()
    async with LocalAPI(model=model, cache="memory", batch_size=4, timeout=0.01) as p:
        rs = await asyncio.gather(*(p.request(req(f"r{i}", prompt=f"p{i}")) for i in range(8)))
    assert model.batch_calls == 2 and len(model.calls) == 8
    assert len({r.data[0] for r in rs}) == 8


async def test_clean_shutdown_no_pending_tasks_no_warnings(fake_model):
    fake_model.latency = 0.01
    # Earlier tests on this worker may leave objects (an HTTP client's socket) for the garbage
    # collector: finalise them first, so only what this pipeline leaves can warn below.
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = OnlineAPI(model=fake_model, cache="memory", batch_size=100, timeout=10)
        tasks = [asyncio.ensure_future(p.request(req(f"r{i}", prompt=f"p{i % 3}", ns=f"n{i % 2}"))) for i in range(10)]
        await asyncio.sleep(0)
        await p.aclose()  # flushes the open batch and waits for it
        assert all(t.done() and not t.cancelled() and t.exception() is None for t in tasks)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others == []
        with pytest.raises(PipelineClosedError):
            await p.request(req("late"))
        gc.collect()


async def test_cancelled_caller_does_not_disturb_others(fake_model):
    fake_model.latency = 0.05
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=100, timeout=0.01) as p:
        a = asyncio.ensure_future(p.request(req("a", ns="A")))
        b = asyncio.ensure_future(p.request(req("b", ns="B")))
        c = asyncio.ensure_future(p.request(req("c", ns="A")))
        await asyncio.sleep(0.03)  # the merged call is in flight
        a.cancel()
        rb, rc = await asyncio.gather(b, c)
        assert a.cancelled()
        # the call was for n=2 (A needed 2); c takes the first sample as A's only live request
        assert rb.data == rc.data[:1]
        follow = await p.request(req("d", ns="A"))
    assert len(set(rc.data + follow.data)) == 2


async def test_close_releases_a_batch_whose_callers_all_left(fake_model):
    """A batch window still open at close, holding only a cancelled request: close ends it, calls
    nothing, and leaves nothing on the loop that keeps the pipeline alive (before, its timer held
    the pipeline, its store and the request until the window ended)."""
    import weakref

    p = OnlineAPI(model=fake_model, cache="memory", batch_size=100, timeout=30.0)
    task = asyncio.ensure_future(p.request(req("a")))
    await asyncio.sleep(0.01)  # the request waits in the 30 s batch window
    assert len(p._batcher) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await p.aclose()
    assert len(p._batcher) == 0 and p._batcher._timer is None
    assert fake_model.call_count == 0
    gone = weakref.ref(p)
    del p, task
    gc.collect()
    assert gone() is None


@dataclass(frozen=True)
class TempRequest(Request):
    temperature: float = 0.7


async def test_seed_style_subclass_fields_split_the_cache(fake_model):
    async with OnlineAPI(model=fake_model, cache="memory") as p:
        cold = await p.request(TempRequest(prompt="q", request_id="a", temperature=0.7))
        other = await p.request(TempRequest(prompt="q", request_id="b", namespace="B", temperature=1.0))
        same = await p.request(TempRequest(prompt="q", request_id="c", namespace="B", temperature=0.7))
    assert other.cached == [False] and same.cached == [True] and same.data == cold.data


@pytest.mark.skipif(not hasattr(asyncio, "timeout"), reason="Task.cancelling() is Python 3.11+")
async def test_a_task_that_once_swallowed_a_cancellation_is_still_served(fake_model):
    """Task.cancelling() stays > 0 after a swallowed CancelledError; that must not read as 'leaving'."""
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=1, timeout=0) as p:
        await p.request(req("warm", ns="B"))

        async def caller():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                pass  # swallowed, without uncancel()
            async with asyncio.timeout(5):  # same task (wait_for would run it in a new one)
                return await p.request(req("late", ns="A"))

        task = asyncio.ensure_future(caller())
        await asyncio.sleep(0)
        task.cancel()
        resp = await task
    assert resp.cached == [True]


async def test_the_fake_model_is_a_pure_function_of_seed_prompt_and_sample_index():
    """Fakes must not depend on arrival order: the same prompts asked in another order (or
    interleaved with others) give each prompt the same samples."""
    one, other = FakeModel(seed=5), FakeModel(seed=5)
    first = [(await one.request(Request(prompt=p, n=2))).data for p in ("a", "b", "a")]
    second = [(await other.request(Request(prompt=p, n=2))).data for p in ("b", "a", "c", "a")]
    assert first[0] == second[1] and first[1] == second[0] and first[2] == second[3]
    assert len({s for batch in first + second for s in batch}) == 8  # distinct across prompts
