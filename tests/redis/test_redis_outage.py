"""Redis stopped (or frozen) in the middle of a run, then back: callers get a clear StoreError
in between, nothing is corrupt or lost, and the run completes on the same pipeline.

These tests use a private redis-server (``own_redis``), never the shared one.
"""
from __future__ import annotations

import asyncio

import pytest

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
