"""Property-based: random interleavings of namespaces, keys and n, concurrent and sequential.

Checks G1 (no sample twice within a namespace), G2 (samples generated equal the minimum
computed from the request trace: per key, the most any namespace consumed), G4 (a later run
replays identically with zero model calls) and G8 (false cached flags add up to generated).
"""
from __future__ import annotations

import asyncio
import tempfile
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachesaver.pipelines import LocalAPI, OnlineAPI
from cachesaver.stores import DiskStore, MemoryStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

request_st = st.tuples(st.sampled_from("ABC"), st.sampled_from(["p0", "p1", "p2"]), st.integers(1, 3))
phase_st = st.lists(request_st, min_size=1, max_size=8)  # one phase = concurrent requests
trace_st = st.lists(phase_st, min_size=1, max_size=6)


async def run_trace(pipeline, trace):
    outputs = []
    for p_i, phase in enumerate(trace):
        reqs = [Request(prompt=prompt, n=n, namespace=ns, request_id=f"{p_i:02d}-{i:02d}") for i, (ns, prompt, n) in enumerate(phase)]
        outputs.append(await asyncio.gather(*(pipeline.request(r) for r in reqs)))
    return outputs


def check(trace, outputs, model):
    per_ns_key = defaultdict(list)
    consumed = defaultdict(lambda: defaultdict(int))
    for phase, responses in zip(trace, outputs):
        for (ns, prompt, n), resp in zip(phase, responses):
            assert len(resp.data) == n
            per_ns_key[(ns, prompt)].extend(resp.data)
            consumed[prompt][ns] += n
    for samples in per_ns_key.values():  # G1
        assert len(samples) == len(set(samples))
    minimum = sum(max(by_ns.values()) for by_ns in consumed.values())
    assert model.samples_generated == minimum  # G2
    billed = sum(not c for responses in outputs for r in responses for c in r.cached)
    assert billed == model.samples_generated  # G8


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=trace_st, batch_size=st.integers(1, 8), overflow=st.booleans(), local=st.booleans())
def test_random_traces_are_minimal_unique_and_replay(trace, batch_size, overflow, local):
    api = LocalAPI if local else OnlineAPI

    async def main():
        store = MemoryStore()
        model = FakeModel(seed=9)
        async with api(model=model, cache=store, batch_size=batch_size, timeout=0.001, allow_batch_overflow=overflow) as p:
            first = await run_trace(p, trace)
        check(trace, first, model)
        calls = len(model.calls)
        async with api(model=model, cache=store, batch_size=batch_size, timeout=0.001, allow_batch_overflow=overflow) as p:
            second = await run_trace(p, trace)
        assert len(model.calls) == calls  # G4: zero model calls
        assert [[r.data for r in rs] for rs in second] == [[r.data for r in rs] for rs in first]
        assert all(all(r.cached) for rs in second for r in rs)

    asyncio.run(main())


# -- replays by id, whatever the timing (issue 21) ---------------------------------------------
timed_st = st.lists(
    st.tuples(st.sampled_from("AB"), st.sampled_from(["q0", "q1"]), st.integers(1, 2), st.integers(0, 6)),
    min_size=1, max_size=10)


async def _timed_run(pipeline, requests, delays):
    async def one(i, ns, prompt, n, delay):
        await asyncio.sleep(delay * 0.004)  # inside and across batch windows of 10 ms
        return (await pipeline.request(Request(prompt=prompt, n=n, namespace=ns, request_id=f"id-{i}"))).data

    return await asyncio.gather(*(one(i, ns, prompt, n, delay)
                                  for i, ((ns, prompt, n, _), delay) in enumerate(zip(requests, delays))))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=timed_st, stored=st.integers(0, 3), batch_size=st.integers(1, 6), disk=st.booleans(),
       shared=st.booleans(), data=st.data())
def test_requests_with_ids_replay_identically_whatever_their_timing(requests, stored, batch_size, disk, shared,
                                                                      data):
    """Random ids, random arrival delays inside and across batch windows, a random mix of hits
    (``stored`` samples per prompt already in the store) and misses; a fresh pipeline replays
    the same requests with other random delays: every id gets exactly its samples again, with
    zero model calls. ``shared``: both runs are shared runs (``run_id=``, the ledger claimed in
    the store), each its own."""
    delays_1 = [r[3] for r in requests]
    delays_2 = data.draw(st.permutations(delays_1), label="replay delays")

    async def main(store):
        model = FakeModel(seed=11)
        if stored:
            async with OnlineAPI(model=model, cache=store, timeout=0) as p:
                for prompt in ("q0", "q1"):
                    await p.request(Request(prompt=prompt, n=stored, namespace="seed"))
        async with OnlineAPI(model=model, cache=store, batch_size=batch_size, timeout=0.01,
                             run_id="run-1" if shared else None) as p:
            first = await _timed_run(p, requests, delays_1)
        calls = len(model.calls)
        async with OnlineAPI(model=model, cache=store, batch_size=batch_size, timeout=0.01,
                             run_id="run-2" if shared else None) as p:
            again = await _timed_run(p, requests, delays_2)
        assert again == first
        assert len(model.calls) == calls

    if disk:  # the default store: the records live in its database, read by a new pipeline
        with tempfile.TemporaryDirectory() as directory:
            store = DiskStore(directory)
            asyncio.run(main(store))
            store.close()
    else:
        asyncio.run(main(MemoryStore()))
