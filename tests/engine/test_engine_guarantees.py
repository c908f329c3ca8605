"""G1-G8 asserted directly through OnlineAPI (and LocalAPI) with the counting FakeModel."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

from cachesaver.keys import request_key
from cachesaver.pipelines import LocalAPI, OnlineAPI
from cachesaver.stores import DiskStore
from cachesaver.testing import FakeModel, ModelFailure
from cachesaver.typedefs import Request, unkeyed


def req(rid, ns="A", n=1, prompt="q"):
    return Request(prompt=prompt, n=n, request_id=rid, namespace=ns)


async def gather(pipeline, requests):
    return await asyncio.gather(*(pipeline.request(r) for r in requests))


# -- G1 integrity ----------------------------------------------------------------------------
async def test_g1_no_sample_twice_in_a_namespace_sequential_and_concurrent(store, fake_model):
    async with OnlineAPI(model=fake_model, cache=store, batch_size=4, timeout=0.01) as p:
        seen = []
        for i in range(5):
            seen += (await p.request(req(f"s{i}", n=1))).data
        for resp in await gather(p, [req(f"c{i:02d}", n=2) for i in range(12)]):
            seen += resp.data
    assert len(seen) == 5 + 24
    assert len(set(seen)) == len(seen)
    assert fake_model.samples_generated == len(seen)


# -- G2 minimal billing ----------------------------------------------------------------------
async def test_g2_partial_hit_fetches_only_the_missing_count(store, fake_model):
    async with OnlineAPI(model=fake_model, cache=store, batch_size=1, timeout=0) as p:
        a = await p.request(req("a", ns="A", n=2))
        b = await p.request(req("b", ns="B", n=5))
    assert [c.n for c in fake_model.calls] == [2, 3]
    assert b.data[:2] == a.data
    assert b.cached == [True, True, False, False, False]
    assert fake_model.samples_generated == 5  # the most any namespace consumed


async def test_g2_generated_equals_max_namespace_consumption(store, fake_model):
    plan = {"A": [1, 3, 2], "B": [4, 1], "C": [2, 2, 2, 1]}
    async with OnlineAPI(model=fake_model, cache=store, batch_size=3, timeout=0.005) as p:
        async def run(ns, sizes):
            for i, n in enumerate(sizes):
                await p.request(req(f"{ns}{i}", ns=ns, n=n))
        await asyncio.gather(*(run(ns, sizes) for ns, sizes in plan.items()))
    assert fake_model.samples_generated == max(sum(s) for s in plan.values())


# -- G3 merging ------------------------------------------------------------------------------
async def test_g3_one_call_per_key_per_batch_across_namespaces(store, fake_model):
    async with OnlineAPI(model=fake_model, cache=store, batch_size=100, timeout=0.05) as p:
        responses = await gather(p, [
            req("r1", ns="A", n=2), req("r2", ns="B", n=3), req("r3", ns="C", n=1),
            req("r4", ns="A", n=1),  # same namespace: merged into A's demand (n=3)
            req("r5", ns="A", n=1, prompt="other"),
        ])
    assert sorted((c.prompt, c.n) for c in fake_model.calls) == [("other", 1), ("q", 3)]
    a1, b, c, a2, _ = responses
    assert b.data == a1.data + a2.data  # same samples, other namespace
    assert c.data == a1.data[:1]
    assert len(set(a1.data + a2.data)) == 3


async def test_g3_merged_requests_are_flagged_duplicated(store, fake_model):
    async with OnlineAPI(model=fake_model, cache=store, batch_size=100, timeout=0.05) as p:
        r1, r2, r3 = await gather(p, [req("r1", ns="A"), req("r2", ns="A"), req("r3", ns="B")])
    assert len(fake_model.calls) == 1 and fake_model.calls[0].n == 2
    # One call served three requests: only its first sample is the original.
    assert (r1.duplicated, r2.duplicated, r3.duplicated) == ([False], [True], [True])
    assert (r1.cached, r2.cached, r3.cached) == ([False], [False], [True])
    assert r3.data == r1.data


async def test_g3_lone_request_with_n_gt_1_is_not_duplicated(store, fake_model):
    async with OnlineAPI(model=fake_model, cache=store, batch_size=10, timeout=0.01) as p:
        r = await p.request(req("r1", n=4))
    assert r.duplicated == [False] * 4 and r.cached == [False] * 4


# -- G4 reproducibility ----------------------------------------------------------------------
async def _workload(p):
    out = []
    out.append((await p.request(req("w0", ns="A", n=2))).data)
    for resp in await gather(p, [req(f"w1-{i}", ns=ns, n=n) for i, (ns, n) in enumerate([("A", 1), ("B", 3), ("A", 2), ("C", 1), ("B", 1)])]):
        out.append(resp.data)
    for resp in await gather(p, [req(f"w2-{i}", ns="A", n=1, prompt=f"p{i % 3}") for i in range(9)]):
        out.append(resp.data)
    out.append((await p.request(req("w3", ns="B", n=4))).data)
    return out


async def test_g4_replay_identical_with_zero_calls(tmp_path):
    model = FakeModel(seed=3)
    async with OnlineAPI(model=model, cache=str(tmp_path / "c"), batch_size=4, timeout=0.01) as p:
        first = await _workload(p)
    calls = len(model.calls)
    assert calls > 0
    for batch_size in (1, 4, 50):  # batching does not change what a namespace sees
        async with OnlineAPI(model=model, cache=str(tmp_path / "c"), batch_size=batch_size, timeout=0.01) as p:
            assert await _workload(p) == first
    assert len(model.calls) == calls


async def test_g4_local_api_replays_online_api(tmp_path):
    model = FakeModel(seed=4)
    async with OnlineAPI(model=model, cache=str(tmp_path / "c"), batch_size=4, timeout=0.01) as p:
        first = await _workload(p)
    calls = len(model.calls)
    async with LocalAPI(model=model, cache=str(tmp_path / "c"), batch_size=4, timeout=0.01) as p:
        assert await _workload(p) == first
    assert len(model.calls) == calls


async def test_g4_a_batch_spanning_two_ticks_replays_as_hits_in_the_same_order(tmp_path):
    """Issue 21: "9" then, 5 ms later in the same batch window, "10". The batch used to serve
    them in id order ("10" < "9": 10 got sample 0) while the replay, all hits, served each on
    arrival (9 got sample 0). Batches now serve tick by tick, ids ordering one tick."""

    async def run(model):
        async with OnlineAPI(model=model, cache=str(tmp_path / "c"), batch_size=5, timeout=0.05) as p:
            async def late(request_id, delay):
                await asyncio.sleep(delay)
                return request_id, (await p.request(Request("p", request_id=request_id, namespace="A"))).data[0]
            return dict(await asyncio.gather(late("9", 0), late("10", 0.005)))

    model = FakeModel(seed=5)
    first = await run(model)
    assert model.call_count == 1 and model.calls[0].n == 2  # one batch, one n=2 call
    assert first["9"].endswith("#0") and first["10"].endswith("#1")
    assert await run(model) == first and model.call_count == 1


async def test_g4_requests_with_ids_replay_their_samples_whatever_the_order_they_arrive_in(tmp_path):
    """Issue 21: a request's samples depend on its namespace, key and id, not on when it arrived:
    the replay sends "10" first and "9" 5 ms later, the reverse of run 1."""

    async def run(model, order):
        async with OnlineAPI(model=model, cache=str(tmp_path / "c"), batch_size=5, timeout=0.05) as p:
            async def late(request_id, delay):
                await asyncio.sleep(delay)
                return request_id, (await p.request(Request("p", request_id=request_id, namespace="A"))).data[0]
            return dict(await asyncio.gather(*(late(rid, 0.005 * i) for i, rid in enumerate(order))))

    model = FakeModel(seed=6)
    first = await run(model, ["9", "10"])
    assert first["9"].endswith("#0") and first["10"].endswith("#1")
    assert await run(model, ["10", "9"]) == first
    assert await run(model, ["10", "9"]) == first and model.call_count == 1
    # Another program in the namespace, with ids of its own, still reuses both stored samples.
    other = await run(model, ["x", "y"])
    assert sorted(other.values()) == sorted(first.values()) and model.call_count == 1


# -- G5 failure atomicity --------------------------------------------------------------------
async def test_g5_failed_call_stores_nothing_and_reaches_exactly_its_waiters(store, fake_model):
    async with OnlineAPI(model=fake_model, cache=store, batch_size=100, timeout=0.02) as p:
        fake_model.fail_next()
        results = await asyncio.gather(
            p.request(req("r1", ns="A", prompt="boom")),
            p.request(req("r2", ns="B", prompt="boom", n=2)),
            p.request(req("r3", ns="A", prompt="fine")),
            return_exceptions=True,
        )
        # Keys are served concurrently; which key's call fails first depends on scheduling.
        failed = [r for r in results if isinstance(r, ModelFailure)]
        ok = [r for r in results if not isinstance(r, BaseException)]
        assert len(failed) + len(ok) == 3
        if isinstance(results[2], ModelFailure):  # "fine" got the failure: "boom" succeeded
            assert len(failed) == 1
        else:
            assert failed == results[:2] and failed[0] is failed[1]  # same call, same error
            key = request_key(req("x", prompt="boom"))
            assert await store.length(key) == 0
            # nothing consumed: the retry hands out sample 0 in both namespaces
            again = await gather(p, [req("r4", ns="A", prompt="boom"), req("r5", ns="B", prompt="boom", n=2)])
            assert again[1].data[:1] == again[0].data
            assert await store.length(key) == 2
    assert p.stats.failed_calls == 1


async def test_g5_partial_hit_then_failure_consumes_no_position(store, fake_model):
    async with OnlineAPI(model=fake_model, cache=store, batch_size=1, timeout=0) as p:
        first = await p.request(req("a", ns="A", n=1))
        fake_model.fail_next()
        with pytest.raises(ModelFailure):
            await p.request(req("b", ns="B", n=3))  # 1 stored + 2 missing, call fails
        again = await p.request(req("c", ns="B", n=1))
    assert again.data == first.data  # B's position was not consumed by the failed attempt


async def test_g5_model_returning_fewer_is_asked_again_and_extras_kept(store):
    model = FakeModel(seed=2, short_by=2)
    async with OnlineAPI(model=model, cache=store, batch_size=1, timeout=0) as p:
        r = await p.request(req("a", n=5))
    assert len(r.data) == 5 and len(set(r.data)) == 5
    assert [c.n for c in model.calls] == [5, 2, 1]  # returned 3, then 1, then 1
    assert p.stats.samples_returned == 5


# -- G6 durability ---------------------------------------------------------------------------
async def test_g6_returned_sample_is_already_committed(tmp_path, fake_model):
    directory = str(tmp_path / "c")
    async with OnlineAPI(model=fake_model, cache=directory, batch_size=1, timeout=0) as p:
        resp = await p.request(req("a", n=3))
        other = DiskStore(directory)  # a second connection, as another process would have
        from cachesaver.codec import decode_sample

        key = request_key(req("a"))
        stored = [decode_sample(r, key=key, index=i).data for i, r in enumerate(await other.read(key, 0, 10))]
        other.close()
    assert stored == resp.data


_CRASHER = """
import asyncio, sys
from cachesaver.pipelines import OnlineAPI
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request
async def main():
    p = OnlineAPI(model=FakeModel(seed=int(sys.argv[2])), cache=sys.argv[1], batch_size=1, timeout=0)
    i = 0
    while True:
        r = await p.request(Request(prompt=f"p{i % 7}", n=2, request_id=str(i), namespace="A"))
        print(*r.data, sep="\\n", flush=True)
        i += 1
asyncio.run(main())
"""


def test_g6_kill_minus_9_loses_nothing_returned(tmp_path):
    import asyncio as aio
    import time

    from cachesaver.codec import decode_sample

    directory = str(tmp_path / "c")
    returned = []
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _CRASHER, directory, str(round_)], stdout=subprocess.PIPE, text=True)
        lines = []
        while len(lines) < 40 + 17 * round_:
            lines.append(proc.stdout.readline().strip())
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read().split("\n")
        proc.wait()
        returned += lines + [x for x in rest if x]
    store = DiskStore(directory)

    async def everything():
        out = set()
        async for key in store.iter_keys():
            n = await store.length(key)
            out.update(decode_sample(r, key=key, index=i).data for i, r in enumerate(await store.read(key, 0, n)))
        return out

    stored = aio.run(everything())
    store.close()
    assert set(returned) <= stored


# -- G7 safety -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SecretRequest(Request):
    api_key: str = unkeyed(default="")


async def test_g7_secrets_never_stored(tmp_path):
    secret = "sk-SENTINEL-0123456789"

    class EchoModel(FakeModel):
        async def request(self, request):
            assert request.api_key == secret  # the model gets it...
            return await super().request(request)

    directory = tmp_path / "c"
    async with OnlineAPI(model=EchoModel(), cache=str(directory), batch_size=1, timeout=0) as p:
        await p.request(SecretRequest(prompt="hello", n=2, request_id="a", api_key=secret))
    for root, _, files in os.walk(directory):  # ...the store never does
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                assert secret.encode() not in fh.read()


# -- G8 flags --------------------------------------------------------------------------------
async def test_g8_false_cached_flags_add_up_to_samples_generated(store, fake_model):
    responses = []
    async with OnlineAPI(model=fake_model, cache=store, batch_size=12, timeout=0.005) as p:
        for round_ in range(3):
            responses += await gather(p, [
                req(f"{round_}-{i}", ns=f"ns{i % 3}", n=1 + i % 3, prompt=f"p{i % 4}") for i in range(12)
            ])
    billed = sum(flag is False for r in responses for flag in r.cached)
    assert billed == fake_model.samples_generated == p.stats.total.samples_generated
    assert p.stats.total.samples_from_store == sum(map(sum, (r.cached for r in responses)))
    merged = sum(map(sum, (r.duplicated for r in responses)))
    assert merged == p.stats.total.samples_merged and merged > 0
    assert p.stats.model_calls == len(fake_model.calls)


async def test_g8_replay_is_all_cached_and_saves_what_was_billed(tmp_path):
    model = FakeModel(seed=5)
    async with OnlineAPI(model=model, cache=str(tmp_path / "c"), batch_size=1, timeout=0) as p:
        first = await p.request(req("a", n=3))
    async with OnlineAPI(model=model, cache=str(tmp_path / "c"), batch_size=1, timeout=0) as p2:
        second = await p2.request(req("a", n=3))
    assert first.cached == [False] * 3 and second.cached == [True] * 3
    assert second.data == first.data
    assert p2.stats.total.cost_saved == pytest.approx(p.stats.total.cost_billed)
    assert p2.stats.total.cost_billed == 0 and second.usage.cost == 0
    assert first.usage.cost == pytest.approx(p.stats.total.cost_billed)


async def test_g4_shared_runs_replay_by_id_and_never_hand_a_sample_out_twice(tmp_path):
    """Two pipelines of one shared run (``run_id=``) on one disk store: the ids' recorded
    positions are taken atomically in the store, and the free ones are left to the others."""
    model = FakeModel(seed=8)
    store = str(tmp_path / "c")
    async with OnlineAPI(model=model, cache=store, timeout=0) as p:
        first = {rid: (await p.request(Request("p", request_id=rid, namespace="A"))).data[0] for rid in "abc"}
    async with OnlineAPI(model=model, cache=store, timeout=0, run_id="run-2") as one, \
            OnlineAPI(model=model, cache=store, timeout=0, run_id="run-2") as two:
        c = (await one.request(Request("p", request_id="c", namespace="A"))).data[0]
        a = (await two.request(Request("p", request_id="a", namespace="A"))).data[0]
        fresh = (await two.request(Request("p", request_id="new", namespace="A"))).data[0]  # no record
        b = (await one.request(Request("p", request_id="b", namespace="A"))).data[0]
    assert (a, b, c) == (first["a"], first["b"], first["c"])
    assert fresh not in first.values() and model.call_count == 4  # the free one is new, never a taken one


async def test_g2_a_request_is_bounded_and_merged_demand_is_asked_in_bounded_calls():
    """Issue 22, item 4: above max_n a request is refused before any call; requests merged in
    a batch that need more than max_n samples are asked in calls of at most max_n."""
    from cachesaver.errors import InvalidRequestError

    model = FakeModel(seed=9)
    async with OnlineAPI(model=model, cache="memory", batch_size=100, timeout=0.02, max_n=4) as p:
        with pytest.raises(InvalidRequestError, match="limit of 4"):
            await p.request(Request("p", n=5))
        responses = await asyncio.gather(*(p.request(Request("p", n=3, request_id=f"r{i}")) for i in range(3)))
    assert [c.n for c in model.calls] == [4, 4, 1]  # 9 samples, never more than 4 asked at once
    assert len({s for r in responses for s in r.data}) == 9
    with pytest.raises(InvalidRequestError, match="max_n"):
        OnlineAPI(model=model, cache="memory", max_n=0)
