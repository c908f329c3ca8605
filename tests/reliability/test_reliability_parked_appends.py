"""Samples paid for while the store cannot take them are kept and stored later (issue 22).

A disk cache whose write lock another process holds past the store's ``timeout`` fails the
append of samples the model already returned: the callers get a StoreError, the engine keeps
the samples and sends them again in the background until the lock is free; the callers'
retries then get exactly those samples with no new model call. (Redis frozen past the client's
retries: tests/redis/test_redis_outage.py.)
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3

import pytest

from cachesaver.codec import decode_sample
from cachesaver.errors import StoreError
from cachesaver.keys import request_key
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import DiskStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request


def _lock(path: str) -> sqlite3.Connection:
    """Another writer holding the database's write lock (as a long transaction would)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    return con


async def test_an_append_that_met_a_held_write_lock_is_stored_once_when_it_is_free(tmp_path):
    store = DiskStore(str(tmp_path / "cache"), timeout=0.3)
    model = FakeModel(seed=3, latency=0.3)
    request = Request(prompt="locked", n=2, request_id="r1")
    key = request_key(request)
    loop = asyncio.get_running_loop()
    async with OnlineAPI(model=model, cache=store, timeout=0.01) as pipe:
        await pipe.request(Request(prompt="warm", n=1))  # the database exists
        pending = asyncio.ensure_future(pipe.request(request))
        await asyncio.sleep(0.1)  # at the model
        locker = _lock(store.path)
        try:
            with pytest.raises(StoreError, match="The 2 samples the model generated for this request "
                                                 "are kept and sent to the store again"):
                await pending
            assert len(pipe.cacher.parked) == 1 and await store.length(key) == 0
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        deadline = loop.time() + 5
        while len(pipe.cacher.parked) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        stored = await store.read(key, 0, 100)
        assert len(stored) == 2 and model.samples_generated == 3
        again = await pipe.request(Request(prompt="locked", n=2, request_id="r2"))
        assert model.samples_generated == 3 and model.call_count == 2  # nothing paid again
        assert again.data == [decode_sample(raw, key=key, index=i).data for i, raw in enumerate(stored)]
        assert again.cached == [False, False]  # billed once, to the request that got them
    assert await DiskStore(str(tmp_path / "cache")).length(key) == 2


async def test_a_retry_before_the_resend_stores_the_kept_samples_first(tmp_path):
    """The caller retries as soon as the lock is free, before the background re-send: the miss
    stores the kept samples first and plans with them, so nothing is paid twice."""
    store = DiskStore(str(tmp_path / "cache"), timeout=0.3)
    model = FakeModel(seed=4, latency=0.3)
    async with OnlineAPI(model=model, cache=store, timeout=0.01) as pipe:
        await pipe.request(Request(prompt="warm", n=1))
        pipe.cacher.parked.first_delay = 60.0  # (the background re-send would come much later)
        pending = asyncio.ensure_future(pipe.request(Request(prompt="p", n=2, request_id="r1")))
        await asyncio.sleep(0.1)
        locker = _lock(store.path)
        try:
            with pytest.raises(StoreError):
                await pending
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        again = await pipe.request(Request(prompt="p", n=2, request_id="r2"))
        assert model.samples_generated == 3 and again.cached == [False, False]
        assert len(pipe.cacher.parked) == 0 and pipe.cacher.parked.resent == 1
        assert await store.length(request_key(Request(prompt="p"))) == 2


async def test_samples_still_unstored_at_close_are_reported_with_counts(tmp_path, caplog):
    store = DiskStore(str(tmp_path / "cache"), timeout=0.3)
    model = FakeModel(seed=5, latency=0.3)
    locker = None
    try:
        async with OnlineAPI(model=model, cache=store, timeout=0.01) as pipe:
            await pipe.request(Request(prompt="warm", n=1))
            pending = asyncio.ensure_future(pipe.request(Request(prompt="secret prompt", n=2)))
            await asyncio.sleep(0.1)
            locker = _lock(store.path)
            with pytest.raises(StoreError):
                await pending
            caplog.set_level(logging.WARNING, logger="cachesaver.appends")
    finally:
        if locker is not None:
            locker.execute("ROLLBACK")
            locker.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "cachesaver.appends"]
    assert warnings == ["2 generated samples (1 appends, 1 keys) could not be stored before the pipeline "
                        "closed (the store is still failing); they were paid for and are lost"]
    assert pipe.cacher.parked.dropped == 1


async def test_a_parked_append_sent_by_two_senders_at_once_is_stored_once(tmp_path):
    """A store without append tokens (disk) applied nothing when its append failed, so the
    re-send is the only copy: the background re-send and a miss's flush of the same key never
    both send it."""
    from cachesaver.appends import ParkedAppends

    store = DiskStore(str(tmp_path / "cache"), timeout=0.2)
    await store.append("warm", [b'{"d": 0}'])
    parked = ParkedAppends(store, first_delay=0.05, max_delay=0.1)
    calls: list[int] = []
    locker = _lock(store.path)
    try:
        with pytest.raises(StoreError, match="locked"):
            await store.append("k", [b'{"d": 1}', b'{"d": 2}'])
        assert parked.park("k", [b'{"d": 1}', b'{"d": 2}'], None, store.append_token(), calls.append)
        await asyncio.sleep(0.3)  # the background re-sends meet the lock too
        with pytest.raises(StoreError, match="locked"):
            await parked.flush_key("k")
        assert len(parked) == 1 and await store.length("k") == 0
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await asyncio.gather(parked.flush_key("k"), parked.flush_key("k"), asyncio.sleep(0.3))
    assert await store.read("k", 0, 10) == [b'{"d": 1}', b'{"d": 2}']
    assert calls == [0] and parked.resent == 1 and len(parked) == 0 and not parked.holds("k")
    await parked.aclose()
    store.close()
