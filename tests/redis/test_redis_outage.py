"""Redis stopped (or frozen) in the middle of a run, then back: callers get a clear StoreError
in between, nothing is corrupt or lost, and the run completes on the same pipeline.

These tests use a private redis-server (``own_redis``), never the shared one.
"""
from __future__ import annotations

import asyncio

import pytest
import redis as redis_sync

from cachesaver.codec import decode_sample
from cachesaver.errors import StoreError
from cachesaver.keys import request_key
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores.redis import RedisStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

PROMPTS = ["p0", "p1", "p2"]
NAMESPACES = ["A", "B"]


async def _round(pipe, tag: str, delivered: dict) -> None:
    jobs = [(ns, p) for ns in NAMESPACES for p in PROMPTS]
    responses = await asyncio.gather(*(
        pipe.request(Request(prompt=p, n=2, request_id=f"{tag}-{ns}-{p}", namespace=ns)) for ns, p in jobs))
    for (ns, p), resp in zip(jobs, responses):
        delivered.setdefault((ns, p), []).extend(resp.data)


async def _check_store(store: RedisStore, delivered: dict, run_id: str, *, exact: bool) -> None:
    """Every list decodes; per namespace no sample twice; with ``exact``, none skipped either."""
    positions = {(ns, key): pos async for run, ns, key, pos in store.iter_ledger() if run == run_id}
    for prompt in PROMPTS:
        key = request_key(Request(prompt=prompt))
        stored = [decode_sample(raw, key=key, index=i).data for i, raw in enumerate(await store.read(key, 0, 1000))]
        assert len(stored) == len(set(stored))  # no duplicated append (retries are idempotent)
        for ns in NAMESPACES:
            got = delivered[(ns, prompt)]
            assert len(got) == len(set(got)) and set(got) <= set(stored)  # G1, nothing foreign
            if exact:
                assert got == stored[: len(got)] and positions[(ns, key)] == len(got)


async def test_redis_killed_mid_run_then_restarted(own_redis):
    server = own_redis(persistent=True)
    store = RedisStore(server.url, prefix="outage", socket_timeout=1, connect_timeout=0.5, retries=1)
    model = FakeModel(seed=11, latency=0.3)
    delivered: dict = {}
    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.01, run_id="run") as pipe:
        await _round(pipe, "r1", delivered)
        generated = model.samples_generated

        # Kill Redis while a model call is in flight: its samples cannot be stored.
        inflight = asyncio.ensure_future(_round(pipe, "r2", delivered))
        await asyncio.sleep(0.1)
        server.kill()
        with pytest.raises(StoreError, match=f"127.0.0.1:{server.port}.*redis-server runs there"):
            await inflight
        # While it is down, every request fails fast with the same clear error; no model calls.
        calls = model.call_count
        with pytest.raises(StoreError, match="entirely or not at all"):
            await pipe.request(Request(prompt="p0", n=1, request_id="down", namespace="A"))
        assert model.call_count == calls

        server.start()  # same port, same data dir: acknowledged writes are back (AOF)
        for tag in ("r3", "r4"):
            await _round(pipe, tag, delivered)
    assert model.samples_generated > generated
    check = RedisStore(server.url, prefix="outage")
    await _check_store(check, delivered, "run", exact=True)
    # Each namespace got exactly what it asked for in the rounds that succeeded (r1, r3, r4).
    assert all(len(got) == 2 * 3 for got in delivered.values())
    await check.aclose()


async def test_redis_frozen_times_out_then_work_continues(own_redis):
    """SIGSTOP: connections hang, socket_timeout turns that into a StoreError; SIGCONT heals."""
    server = own_redis(persistent=False)
    store = RedisStore(server.url, prefix="frozen", socket_timeout=0.3, connect_timeout=0.3, retries=1)
    model = FakeModel(seed=12)
    delivered: dict = {}
    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.01) as pipe:
        await _round(pipe, "r1", delivered)
        server.pause()
        try:
            with pytest.raises(StoreError, match="socket_timeout=0.3"):
                await _round(pipe, "r2", delivered)
        finally:
            server.resume()
        for tag in ("r3", "r4"):
            await _round(pipe, tag, delivered)
    check = RedisStore(server.url, prefix="frozen")
    # A command that timed out may still run once Redis thaws (it was already sent): that can
    # store samples nobody received, never corrupt a list or hand a sample out twice.
    await _check_store(check, delivered, "-", exact=False)
    await check.aclose()


async def test_a_claim_whose_reply_froze_is_delivered_to_the_retry(own_redis):
    """A shared run on a frozen Redis (SIGSTOP past the client's retries): namespace B's claims
    of samples A already generated time out, then run when Redis thaws, taking B's positions.
    The StoreError says the claim may still run; B's retry of the same requests gets exactly
    those samples, so B's ledger has no gap and B got samples 0 and 1 like A (before: B's
    retry got samples 2 and 3, newly generated, and positions 0-1 were consumed by nobody)."""
    server = own_redis(persistent=False)
    store = RedisStore(server.url, prefix="frozen-claims", socket_timeout=0.3, connect_timeout=0.3, retries=1)
    model = FakeModel(seed=13)

    async def round_in(pipe, namespace, tag, prompts=PROMPTS):
        responses = await asyncio.gather(*(
            pipe.request(Request(prompt=p, n=2, request_id=f"{tag}-{p}", namespace=namespace)) for p in prompts),
            return_exceptions=True)
        return dict(zip(prompts, responses))

    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.01, run_id="frozen-run") as pipe:
        first = {p: r.data for p, r in (await round_in(pipe, "A", "a")).items()}
        generated = model.samples_generated
        server.pause()
        try:
            frozen = await round_in(pipe, "B", "b")
        finally:
            server.resume()
        failed = [p for p, r in frozen.items() if isinstance(r, StoreError)]
        assert failed and all("may still run once Redis is back" in str(frozen[p]) for p in failed)
        retried = await round_in(pipe, "B", "b-again", failed)
    got = {p: (retried[p] if p in failed else frozen[p]).data for p in PROMPTS}
    assert got == first and model.samples_generated == generated  # B: samples 0 and 1, nothing paid
    check = RedisStore(server.url, prefix="frozen-claims")
    positions = {(ns, key): pos async for run, ns, key, pos in check.iter_ledger() if run == "frozen-run"}
    assert {pos for (ns, _), pos in positions.items() if ns == "B"} == {2}
    await check.aclose()


async def _stored_lists(store: RedisStore) -> dict:
    return {p: await store.read(request_key(Request(prompt=p)), 0, 1000) for p in PROMPTS}


@pytest.mark.parametrize("freeze", ["stopped-cold", "stopped", "busy"])
@pytest.mark.parametrize("run_id", [None, "parked-run"], ids=["private", "shared"])
async def test_samples_paid_while_redis_froze_are_stored_once_and_reused(own_redis, run_id, freeze):
    """Redis out for 2-3 s, longer than socket_timeout x retries, while 3 misses (n=2) are at the
    model: their appends (and the leases' releases) time out and the callers get a StoreError
    saying the samples are kept. Once Redis is back, the engine's re-sends store the 6 samples,
    each exactly once, and the callers' retries get exactly those samples, billed to them
    (cached=False), with 0 model calls. Before: 0 of the 6 were in the store, and the retries
    paid for 6 more (12 generated, 6 delivered).

    ``stopped``: SIGSTOP; ``busy``: ``DEBUG SLEEP``. In both, the copies sent during the freeze
    (the first attempt, the client's retry, the engine's re-sends, the lease's release) run
    when Redis wakes: they carry one token, so the samples are still stored once.
    ``stopped-cold``: the freeze comes before the run loaded its scripts, so none of what was
    sent during it runs (Redis answers it NOSCRIPT): the re-sends store the samples and end
    the leases whose release failed."""
    server = own_redis(persistent=False, debug=freeze == "busy")
    store = RedisStore(server.url, prefix="parked", socket_timeout=0.3, connect_timeout=0.3, retries=1)
    model = FakeModel(seed=14, latency=0.5)
    loop = asyncio.get_running_loop()

    async def round_(pipe, tag):
        return await asyncio.gather(*(
            pipe.request(Request(prompt=p, n=2, request_id=f"{tag}-{p}", namespace="A")) for p in PROMPTS),
            return_exceptions=True)

    def sleep_server() -> None:
        with redis_sync.Redis(port=server.port) as admin:
            admin.execute_command("DEBUG", "SLEEP", "2")

    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.01, run_id=run_id) as pipe:
        # A run under way: the append script is loaded (a copy that runs late is applied, not
        # refused as an unknown script).
        warm = freeze != "stopped-cold"
        if warm:
            await asyncio.gather(*(pipe.request(Request(prompt=f"warm{i}", n=2, namespace="A")) for i in range(3)))
        assert model.samples_generated == (6 if warm else 0)
        before = model.samples_generated
        inflight = asyncio.ensure_future(round_(pipe, "a"))
        await asyncio.sleep(0.2)  # the 3 misses hold their leases and wait at the model (0.5 s)
        assert model.samples_generated == before  # (still at the model)
        if freeze == "busy":
            asleep = asyncio.ensure_future(asyncio.to_thread(sleep_server))
            frozen = await inflight
            await asleep
        else:
            server.pause()
            paused = loop.time()
            try:
                frozen = await inflight
                await asyncio.sleep(max(0.0, 3.0 - (loop.time() - paused)))
            finally:
                server.resume()
        assert model.samples_generated == before + 6
        assert all(isinstance(r, StoreError) for r in frozen), frozen
        assert all("socket_timeout=0.3" in str(r) and "The 2 samples the model generated for this "
                   "request are kept and sent to the store again" in str(r) for r in frozen)

        check = RedisStore(server.url, prefix="parked")
        deadline = loop.time() + 5
        while True:  # the background re-sends store them (0.2 s doubling)
            stored = await _stored_lists(check)
            if (all(len(v) == 2 for v in stored.values()) and not len(pipe.cacher.parked)) \
                    or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        assert {p: len(v) for p, v in stored.items()} == {p: 2 for p in PROMPTS}
        assert len({raw for v in stored.values() for raw in v}) == 6
        # The leases whose release timed out were ended (by the re-sends, or by the late
        # release): another worker does not wait for them to expire (lease_ttl, 10 s).
        with redis_sync.Redis(port=server.port) as raw_client:
            assert not raw_client.keys("parked:*:g")

        retried = await round_(pipe, "b")
        assert model.samples_generated == before + 6 and model.call_count == before // 2 + 3  # nothing paid again
        for p, resp in zip(PROMPTS, retried):
            key = request_key(Request(prompt=p))
            assert resp.data == [decode_sample(raw, key=key, index=i).data for i, raw in enumerate(stored[p])]
            assert resp.cached == [False, False]  # paid once, billed to the retry that got them (G8)
        assert pipe.stats.total.samples_generated == pipe.stats.samples_returned == before + 6
    # Still exactly once each after the pipeline closed (no late duplicate append).
    assert await _stored_lists(check) == stored
    await check.aclose()


async def test_an_append_sent_again_with_its_token_is_applied_once(own_redis):
    """What the engine's re-send relies on: an append whose first attempt ran (its reply lost)
    and its re-send with the same token store the samples once and both answer the same
    first index; a new token appends again."""
    server = own_redis(persistent=False)
    store = RedisStore(server.url, prefix="tokens")
    token = store.append_token()
    assert await store.append("k", [b'{"a": 1}', b'{"a": 2}'], token=token) == 0
    assert await store.append("k", [b'{"a": 1}', b'{"a": 2}'], token=token) == 0
    assert await store.read("k", 0, 10) == [b'{"a": 1}', b'{"a": 2}']
    assert await store.append("k", [b'{"a": 3}'], token=store.append_token()) == 2
    assert await store.length("k") == 3
    await store.aclose()
