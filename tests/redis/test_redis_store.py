"""RedisStore beyond the shared store contract (tests/engine/test_engine_stores.py runs that
against memory, disk and redis): layout, atomicity, idempotent retries, leases, loops, URLs."""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses

import pytest
import redis as redis_sync
from redis.crc import key_slot

from cachesaver.codec import decode_sample, encode_sample
from cachesaver.errors import InvalidRequestError, StoreError
from cachesaver.keys import request_key
from cachesaver.pipelines import OnlineAPI
from cachesaver.opening import open_store
from cachesaver.stores.redis import RedisStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request


@contextlib.contextmanager
def count_round_trips():
    """Count the commands (or pipelines, or scripts) redis-py sends, through its asyncio and
    its synchronous connections alike: one round trip each. Yields a one-item list holding the
    count so far."""
    from redis.asyncio.connection import AbstractConnection
    from redis.connection import AbstractConnection as SyncConnection

    count = [0]
    original = AbstractConnection.send_packed_command
    sync_original = SyncConnection.send_packed_command

    async def counting(conn, *args, **kwargs):
        count[0] += 1
        return await original(conn, *args, **kwargs)

    def sync_counting(conn, *args, **kwargs):
        count[0] += 1
        return sync_original(conn, *args, **kwargs)

    AbstractConnection.send_packed_command = counting
    SyncConnection.send_packed_command = sync_counting
    try:
        yield count
    finally:
        AbstractConnection.send_packed_command = original
        SyncConnection.send_packed_command = sync_original

K = "a" * 64


def rec(i):
    return encode_sample(f"sample-{i}", 1, 2, 0.5)


@pytest.fixture
def raw_redis(redis_url):
    with redis_sync.Redis.from_url(redis_url) as client:
        yield client


# -- configuration -----------------------------------------------------------------------
def test_url_options_and_explicit_keywords():
    store = RedisStore("redis://u:s3cret@127.0.0.1:6379/2?prefix=exp1&socket_timeout=7&retries=0&lease_ttl=3")
    assert (store.prefix, store.socket_timeout, store.retries, store.lease_ttl) == ("exp1", 7.0, 0, 3.0)
    assert "s3cret" not in store.location and "s3cret" not in repr(store)
    assert store.location == "redis://u:***@127.0.0.1:6379/2"
    explicit = RedisStore("redis://127.0.0.1/0?prefix=url&socket_timeout=7", prefix="kw", socket_timeout=1)
    assert (explicit.prefix, explicit.socket_timeout) == ("kw", 1.0)
    assert isinstance(open_store("redis://127.0.0.1:6379/0?prefix=x"), RedisStore)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prefix": "a{b"}, "prefix must be"),
        ({"prefix": ""}, "prefix must be"),
        ({"socket_timeout": "soon"}, "socket_timeout must be a number"),
        ({"retries": -1}, "retries must be >= 0"),
        ({"socket_timeout": 0}, "socket_timeout must be >= 0.001"),
    ],
)
def test_bad_options_name_the_field(kwargs, match):
    with pytest.raises(InvalidRequestError, match=match):
        RedisStore("redis://127.0.0.1:6379/0", **kwargs)


def test_bad_url_names_the_fix():
    with pytest.raises(InvalidRequestError, match="redis://host:port/db"):
        RedisStore("http://127.0.0.1:6379")


async def test_bad_keys_are_refused(redis_store_factory):
    store = redis_store_factory()
    for bad in ("", "}x"):
        with pytest.raises(InvalidRequestError, match="hash tag"):
            await store.append(bad, [rec(0)])
    with pytest.raises(TypeError, match="must be bytes"):
        await store.append(K, [{"not": "bytes"}])
    assert await store.length(K) == 0
    await store.aclose()


# -- layout ----------------------------------------------------------------------------------
async def test_every_key_of_one_list_shares_a_cluster_slot(redis_store_factory, raw_redis, redis_prefix):
    store = redis_store_factory()
    await store.append(K, [rec(0), rec(1)], meta=b'{"prompt":"p"}')
    await store.claim("run", "ns", K, 1, partial=False)
    async with store.generation_lease(K):
        names = [n.decode() for n in raw_redis.scan_iter(match=f"{redis_prefix}:*")]
    assert sorted(n.rsplit(":", 1)[1] for n in names) == ["c", "g", "l", "m", "s", "t"]
    assert {key_slot(n.encode()) for n in names} == {key_slot(K.encode())}
    # Stored values are exactly the bytes we were given (JSON records), never pickles.
    assert raw_redis.lrange(f"{redis_prefix}:{{{K}}}:s", 0, -1) == [rec(0), rec(1)]
    assert raw_redis.type(f"{redis_prefix}:{{{K}}}:s") == b"list"
    await store.aclose()


async def test_clear_of_a_prefix_keeps_a_longer_prefix_under_it(redis_store_factory, raw_redis, redis_prefix):
    """Issue 12, item 7: clear() on prefix X deleted the cache of prefix X:v2 (pattern X:*)."""
    outer = RedisStore(redis_store_factory.url, prefix=redis_prefix)
    inner = RedisStore(redis_store_factory.url, prefix=redis_prefix + ":v2")
    try:
        await outer.append(K, [rec(0)])
        await inner.append(K, [rec(1), rec(2)], meta=b"{}")
        await inner.claim("run", "A", K, 1, partial=False)
        await outer.clear()
        assert await outer.length(K) == 0
        assert await inner.read(K, 0, 5) == [rec(1), rec(2)]
        assert await inner.get_meta(K) == b"{}"
        assert [e async for e in inner.iter_ledger()] == [("run", "A", K, 1)]
        await inner.clear()
        assert raw_redis.keys(f"{redis_prefix}:*") == []
    finally:
        await inner.clear()
        await outer.aclose()
        await inner.aclose()


async def test_clear_and_scans_touch_only_our_prefix(redis_store_factory, raw_redis, redis_prefix):
    ours = redis_store_factory()
    neighbour = RedisStore(redis_store_factory.url, prefix=redis_prefix + "-x")  # shares a head
    glob = RedisStore(redis_store_factory.url, prefix=redis_prefix + "*")  # glob chars escaped
    try:
        await ours.append(K, [rec(0)])
        await neighbour.append(K, [rec(1)])
        await glob.append("b" * 64, [rec(2)])
        raw_redis.set(f"{redis_prefix}-unrelated", b"keep me")
        assert [k async for k in ours.iter_keys()] == [K]
        assert [k async for k in glob.iter_keys()] == ["b" * 64]
        await glob.clear()
        await ours.clear()
        assert await ours.length(K) == 0
        assert await neighbour.read(K, 0, 1) == [rec(1)]
        assert raw_redis.get(f"{redis_prefix}-unrelated") == b"keep me"
    finally:
        await neighbour.clear()
        await neighbour.aclose()
        await glob.aclose()
        await ours.aclose()
        raw_redis.delete(f"{redis_prefix}-unrelated")


async def test_large_append_is_one_atomic_list_write(redis_store_factory):
    store = redis_store_factory()
    samples = [rec(i) for i in range(10_001)]  # more than one RPUSH chunk inside the script
    assert await store.append(K, samples[:1]) == 0
    assert await store.append(K, samples[1:]) == 1
    assert await store.length(K) == 10_001
    assert await store.read(K, 9_999, 5) == samples[9_999:]
    await store.aclose()


# -- atomicity and idempotency --------------------------------------------------------------
async def test_concurrent_claims_from_many_handles_never_share_a_sample(redis_store_factory):
    handles = [redis_store_factory() for _ in range(4)]
    await handles[0].append(K, [rec(i) for i in range(200)])

    async def worker(store, ns):
        got = []
        while True:
            _, taken = await store.claim("run", ns, K, 3, partial=True)
            if not taken:
                return got
            got += taken

    results = await asyncio.gather(*(worker(h, ns) for h in handles for ns in ("A", "B") for _ in range(3)))
    for ns_index in range(2):
        taken = [s for i, r in enumerate(results) if (i // 3) % 2 == ns_index for s in r]
        assert sorted(taken) == sorted(rec(i) for i in range(200))  # each once: none twice, none lost
    for store in handles:
        await store.aclose()


async def test_retried_append_and_claim_are_applied_once(redis_store_factory):
    """A retry after a lost reply reuses the script token: the second call changes nothing."""
    store = redis_store_factory()
    client = await store._ready()
    base = f"{store.prefix}:{{{K}}}:"
    append_keys = [base + "s", base + "m", base + "t", base + "u", base + "g"]
    first = await client.append(keys=append_keys, args=["tok-1", "0", b"", "rrun", "", rec(0), rec(1)])
    again = await client.append(keys=append_keys, args=["tok-1", "0", b"", "rrun", "", rec(0), rec(1)])
    assert (first, again) == (0, 0) and await store.length(K) == 2
    assert await store.append(K, [rec(2)]) == 2

    claim_keys = [base + "s", base + "l", base + "c", base + "u"]
    field = b'["run","ns"]'
    one = await client.claim(keys=claim_keys, args=[field, 2, "0", "claim-1", "rrun"])
    two = await client.claim(keys=claim_keys, args=[field, 2, "0", "claim-1", "rrun"])
    # The retry returns the first answer, billing included: samples 0 and 1 were generated in
    # run "run" (appended unbilled there) and are billed to this claim once, not twice or never.
    assert one == two == [0, [rec(0), rec(1)], [0, 1]]
    assert await store.claim("run", "ns", K, 1, partial=False) == (2, [rec(2)])
    await store.aclose()


# -- failures ----------------------------------------------------------------------------------
def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nothing listens there


async def test_unreachable_redis_raises_store_error_naming_server_and_fix():
    port = _closed_port()
    store = RedisStore(f"redis://:pw@127.0.0.1:{port}/0", retries=0, connect_timeout=0.5)
    with pytest.raises(StoreError) as info:
        await store.read(K, 0, 1)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "pw" not in message.replace("***", "")
    assert "redis-server runs there" in message and "entirely or not at all" in message
    with pytest.raises(StoreError):
        await store.append(K, [rec(0)])
    with pytest.raises(StoreError):
        async with store.generation_lease(K):
            pass
    await store.aclose()


# -- event loops --------------------------------------------------------------------------------
def test_one_store_serves_successive_event_loops(redis_store_factory):
    """redis-py clients are bound to a loop; the store makes one per loop (asyncio.run twice)."""
    store = redis_store_factory()
    assert asyncio.run(store.append(K, [rec(0)])) == 0
    assert asyncio.run(store.append(K, [rec(1)])) == 1
    assert asyncio.run(store.read(K, 0, 2)) == [rec(0), rec(1)]
    store.close()
    with pytest.raises(StoreError, match="closed"):
        asyncio.run(store.length(K))


# -- generation lease ---------------------------------------------------------------------------
async def test_lease_is_exclusive_across_handles_and_released(redis_store_factory):
    first, second = redis_store_factory(), redis_store_factory()
    order = []

    async def hold(store, name, pause):
        async with store.generation_lease(K, ttl=2) as lease:
            assert lease.acquired
            order.append(f"{name}+")
            await asyncio.sleep(pause)
            order.append(f"{name}-")

    task = asyncio.ensure_future(hold(first, "A", 0.2))
    await asyncio.sleep(0.05)
    await hold(second, "B", 0)
    await task
    assert order == ["A+", "A-", "B+", "B-"]
    await first.aclose()
    await second.aclose()


async def test_lease_is_reentrant_within_its_holder_only(redis_store_factory):
    store = redis_store_factory()

    async def try_lease():
        async with store.generation_lease(K, ttl=2, max_wait=0) as lease:
            return lease.acquired

    def elsewhere():  # a task that does not descend from the holder (another worker)
        return contextvars.Context().run(asyncio.ensure_future, try_lease())

    async with store.generation_lease(K, ttl=2) as outer:
        assert outer.acquired
        assert await try_lease()  # nested in the holder: re-entrant, no self-deadlock
        assert not await elsewhere()
    assert await elsewhere()  # released on exit
    await store.aclose()


async def _lease_state(store, **kwargs):
    async with store.generation_lease(K, ttl=0.6, **kwargs) as lease:
        return lease.acquired


async def test_lease_is_renewed_while_held_and_expires_when_abandoned(redis_store_factory):
    holder, other = redis_store_factory(), redis_store_factory()
    async with holder.generation_lease(K, ttl=0.6) as lease:
        await asyncio.sleep(1.5)  # > 2 ttl: only renewal (every ttl/3) keeps it
        assert lease.acquired
        rival = contextvars.Context().run(asyncio.ensure_future, _lease_state(other, max_wait=0.1))
        assert await rival is False  # gave up waiting: the caller generates anyway
    # A crashed holder (no renewal, no release) blocks others only until its ttl runs out.
    client = await holder._ready()
    await client.lease_acquire(keys=[f"{holder.prefix}:{{{K}}}:g"], args=["crashed", 300, ""])
    async with other.generation_lease(K, ttl=0.6, max_wait=30) as lease:
        assert lease.acquired and lease.waited > 0
    await holder.aclose()
    await other.aclose()


# -- through the engine ---------------------------------------------------------------------------
async def test_pipeline_on_redis_url_replays_with_zero_calls(redis_store_factory, redis_prefix):
    url = f"{redis_store_factory.url}?prefix={redis_prefix}"
    model = FakeModel(seed=3)
    prompts = [f"prompt {i}" for i in range(3)]

    async def run():
        async with OnlineAPI(model=model, cache=url, batch_size=8, timeout=0.01) as pipe:
            out = []
            for ns in ("A", "B"):
                got = await asyncio.gather(*(
                    pipe.request(Request(prompt=p, n=2, request_id=f"{ns}{i}", namespace=ns))
                    for i, p in enumerate(prompts)))
                out.append([r.data for r in got])
            return out

    first = await run()
    calls = model.call_count
    assert calls == 3 and model.samples_generated == 6  # one call per key, shared by A and B
    assert first[0] == first[1]  # B reuses A's samples
    assert await run() == first and model.call_count == calls  # a new run replays, no calls
    store = redis_store_factory()
    key = request_key(Request(prompt=prompts[0]))
    assert [decode_sample(r, key=key, index=i).data for i, r in enumerate(await store.read(key, 0, 9))] == first[0][0]
    await store.aclose()


@dataclasses.dataclass(frozen=True)
class TempRequest(Request):
    temperature: float = 1.0


async def test_two_pipelines_share_one_run_ledger_on_redis(redis_store_factory):
    model = FakeModel(seed=5)
    stores = [redis_store_factory(), redis_store_factory()]
    pipes = [OnlineAPI(model=model, cache=s, run_id="shared", timeout=0.005) for s in stores]
    got = []
    for i in range(6):
        pipe = pipes[i % 2]
        got += (await pipe.request(TempRequest(prompt="q", n=1, request_id=str(i), namespace="ns"))).data
    assert len(set(got)) == 6  # the two pipelines never hand out one sample twice (G1)
    assert model.samples_generated == 6
    for pipe, store in zip(pipes, stores):
        await pipe.aclose()
        await store.aclose()


async def test_requests_with_ids_replay_their_samples_whatever_the_order_on_redis(redis_store_factory, raw_redis,
                                                                                   redis_prefix):
    """Issue 21 on the Redis store: the positions each id took are kept in the key's ``:i`` hash,
    so a private run that sends the requests in the reverse order gets the same samples."""
    import asyncio

    from cachesaver.pipelines import OnlineAPI
    from cachesaver.testing import FakeModel
    from cachesaver.typedefs import Request

    model = FakeModel(seed=12)

    async def run(order, run_id=None):
        async with OnlineAPI(model=model, cache=redis_store_factory(), batch_size=8, timeout=0.05,
                             run_id=run_id) as p:
            async def late(rid, delay):
                await asyncio.sleep(delay)
                return rid, (await p.request(Request("p", request_id=rid, namespace="A"))).data[0]
            return dict(await asyncio.gather(*(late(rid, 0.01 * i) for i, rid in enumerate(order))))

    first = await run(["a", "b", "c"])
    assert [first[r][-2:] for r in "abc"] == ["#0", "#1", "#2"]
    assert await run(["c", "b", "a"]) == first and model.call_count == 1
    # A shared run (its ledger claimed atomically in Redis) replays by id too.
    assert await run(["b", "c", "a"], run_id="shared-1") == first and model.call_count == 1
    hashes = [k for k in raw_redis.keys(f"{redis_prefix}:*") if k.endswith(b":i")]
    assert len(hashes) == 1 and raw_redis.hlen(hashes[0]) == 3
    store = redis_store_factory()
    key = hashes[0].decode().split("{")[1].split("}")[0]
    await store.delete(key)
    assert not raw_redis.exists(hashes[0])  # deleting a key removes its records too
    await store.aclose()


async def test_a_private_run_miss_is_three_round_trips(redis_store_factory, raw_redis):
    """Round trips of one miss (issue 25, item 3), counted at redis-py's connections: the hit
    attempt (LRANGE), the lease (its script returns the list length the holder plans with), the
    append script, which also ends the lease; the claim of what was just appended is served
    from memory. Before: 4 (the lease was released by a command of its own), and 7 before that
    (a length read before the plan and another under the lease, and the claim read the samples
    back). (The first 16 misses of a pipeline also look for samples stored under the pre-0.2
    key, one more round trip each: this counts a miss after them.)"""
    from cachesaver.pipelines import _LEGACY_CHECKS, OnlineAPI
    from cachesaver.testing import FakeModel
    from cachesaver.typedefs import Request

    store = redis_store_factory()
    model = FakeModel(seed=4)
    async with OnlineAPI(model=model, cache=store, timeout=0, model_id="fake/model") as pipe:
        for i in range(_LEGACY_CHECKS):  # connections and scripts loaded, legacy-key checks done
            await pipe.request(Request(prompt=f"warm up {i}", n=1))
        with count_round_trips() as count:
            response = await pipe.request(Request(prompt="a miss", n=2, namespace="a"))
        # The lease is gone once the miss returns: the append ended it.
        assert raw_redis.exists(f"{store.prefix}:{{{response.key}}}:g") == 0
    assert response.cached == [False, False] and model.samples_generated == _LEGACY_CHECKS + 2
    assert count[0] == 3


async def test_a_shared_run_miss_is_four_round_trips(redis_store_factory):
    """A shared run's miss (ledger in Redis): the hit attempt (the claim script), the lease
    (which also reads the namespaces' ledger positions the plan needs), the append (which ends
    the lease) and the billed claim. Before: 6 (a position read of its own, a release of its
    own). The position read with the lease is the one the plan uses: namespace "a" has taken
    2 samples, so its next request generates sample 2 alone."""
    store = redis_store_factory()
    model = FakeModel(seed=6)
    # (No model id: a keyed model makes its first misses look for pre-0.2 keys too.)
    async with OnlineAPI(model=model, cache=store, timeout=0, run_id="r") as pipe:
        first = await pipe.request(Request(prompt="p", n=2, namespace="a"))
        with count_round_trips() as count:
            second = await pipe.request(Request(prompt="p", n=1, namespace="a"))
        other = await pipe.request(Request(prompt="p", n=3, namespace="b"))
    assert first.data + second.data == other.data == [model.sample_text("p", k) for k in range(3)]
    assert second.cached == [False] and other.cached == [True] * 3 and model.samples_generated == 3
    assert count[0] == 4


async def test_the_lease_is_held_through_every_call_of_a_miss(redis_store_factory, raw_redis):
    """A model that answers short is asked again for the rest: only the append of the answer
    that completes the miss ends the lease, so no other worker generates meanwhile (G2)."""
    from cachesaver.generation import current_generation

    store = redis_store_factory()
    holders = []

    class Short(FakeModel):
        async def request(self, request):
            lease_key = f"{store.prefix}:{{{current_generation().key}}}:g"
            holders.append(raw_redis.get(lease_key))
            return await super().request(request)

    model = Short(seed=5, short_by=1)
    async with OnlineAPI(model=model, cache=store, timeout=0) as pipe:
        response = await pipe.request(Request(prompt="short answers", n=3))
        assert raw_redis.exists(f"{store.prefix}:{{{response.key}}}:g") == 0
    assert response.cached == [False] * 3 and model.call_count == 2
    assert len(holders) == 2 and holders[0] is not None and holders[1] == holders[0]


async def test_an_append_ends_only_its_own_lease_even_when_retried(redis_store_factory, raw_redis):
    """The append script ends the lease only for the token that holds it: a retried append
    (same append token, its first reply lost) answers what the first one did and leaves a
    lease another worker took since untouched; a nested holder's view never ends the lease."""
    store = redis_store_factory()
    base = f"{store.prefix}:{{{K}}}:"
    client = await store._ready()
    keys = [base + s for s in ("s", "m", "t", "u", "g")]
    raw_redis.set(base + "g", "mine", px=10_000)
    assert await client.append(keys=keys, args=["tok", "0", b"", "", "mine", rec(0)]) == 0
    assert raw_redis.exists(base + "g") == 0
    raw_redis.set(base + "g", "theirs", px=10_000)  # another worker takes the lease
    assert await client.append(keys=keys, args=["tok", "0", b"", "", "mine", rec(0)]) == 0  # the retry
    assert raw_redis.get(base + "g") == b"theirs" and await store.read(K, 0, 5) == [rec(0)]
    raw_redis.delete(base + "g")

    async with store.generation_lease(K, ttl=2) as outer:
        async with store.generation_lease(K, ttl=2) as inner:
            assert inner.acquired and inner.nested and inner.length is None
            assert await store.append_and_release(K, [rec(1)], None, inner) == 1
            assert raw_redis.get(base + "g") == outer.token.encode()  # the outer body keeps it
        assert await store.append_and_release(K, [rec(2)], None, outer) == 2
        assert outer.ended and raw_redis.exists(base + "g") == 0
    assert raw_redis.exists(base + "g") == 0
    await store.aclose()


@pytest.mark.parametrize("run_id, trips", [(None, 3), ("burst-run", 4)])
async def test_a_burst_of_misses_costs_the_round_trips_of_one(redis_store_factory, raw_redis, run_id, trips):
    """50 distinct-key misses checked in one tick and served in one batch go to Redis in one
    pipeline per phase (issue 25, item 3): the hit attempts, the leases, the appends that end
    them (and, in a shared run, the billed claims): as many round trips as one miss, not one
    per key per phase. Before: 150 private (3 per key), 200 shared (4 per key). Each key
    still gets its own sample, each lease is gone, and every sample is billed once."""
    store = redis_store_factory()
    model = FakeModel(seed=8)
    # (No model id: a keyed model makes its first misses look for pre-0.2 keys too.)
    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.02, run_id=run_id) as pipe:
        await pipe.request(Request(prompt="warm up", n=1))  # connection, scripts, first-use checks
        requests = [Request(prompt=f"burst {i}", n=1, namespace="a") for i in range(50)]
        with count_round_trips() as count:
            responses = await asyncio.gather(*(pipe.request(r) for r in requests))
        assert count[0] == trips
        assert [r.data for r in responses] == [[model.sample_text(r.prompt, 0)] for r in requests]
        assert all(r.cached == [False] for r in responses) and model.samples_generated == 51
        assert all(raw_redis.exists(f"{store.prefix}:{{{r.key}}}:g") == 0 for r in responses)
        assert pipe.stats.ns("a").samples_generated == 50


@pytest.mark.parametrize("run_id", [None, "hits-run"])
async def test_a_burst_of_hits_is_one_round_trip(redis_store_factory, run_id):
    """The hit attempts of one tick go to Redis together: the reads (private run) or claim
    scripts (shared run) of 50 keys in one pipeline. Before: 50 round trips, one per request,
    in turn. Each request still takes its own key's next samples, all or nothing: a key with
    too few samples is a miss and generates only what it lacks, and a second request of one
    (namespace, key) in the same tick takes the samples after the first's."""
    store = redis_store_factory()
    model = FakeModel(seed=9)
    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.02, run_id=run_id) as pipe:
        requests = [Request(prompt=f"hit {i}", n=2, namespace="a") for i in range(50)]
        stored = await asyncio.gather(*(pipe.request(r) for r in requests))
        assert model.samples_generated == 100
        with count_round_trips() as count:
            hits = await asyncio.gather(*(pipe.request(dataclasses.replace(r, namespace="b")) for r in requests))
        assert count[0] == 1
        assert [r.data for r in hits] == [r.data for r in stored]
        assert all(r.cached == [True, True] for r in hits) and model.samples_generated == 100
        # Namespace b again: 3 samples of key 0 (one missing), and key 1 twice in the tick.
        mixed = [dataclasses.replace(requests[0], namespace="b", n=1),
                 dataclasses.replace(requests[1], namespace="c", n=1),
                 dataclasses.replace(requests[1], namespace="c", n=1),
                 dataclasses.replace(requests[2], namespace="b", n=1)]
        got = await asyncio.gather(*(pipe.request(r) for r in mixed))
    texts = [[model.sample_text(r.prompt, k) for k in range(3)] for r in requests[:3]]
    assert [r.data for r in got] == [[texts[0][2]], [texts[1][0]], [texts[1][1]], [texts[2][2]]]
    assert [r.cached for r in got] == [[False], [True], [True], [False]]
    assert model.samples_generated == 102


async def test_a_burst_after_the_server_lost_its_scripts_reloads_them_once(own_redis):
    """A restarted (or flushed) Redis answers a pipeline's scripts NOSCRIPT: they did not run,
    so the store loads them and sends those commands again, and every miss of the burst is
    stored once (the reload is two round trips more for the burst, not per key)."""
    server = own_redis(persistent=False)
    store = RedisStore(server.url, prefix="noscript")
    model = FakeModel(seed=11)
    requests = [Request(prompt=f"reload {i}", n=1, namespace="a") for i in range(20)]
    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.02, run_id="r") as pipe:
        await pipe.request(Request(prompt="warm up", n=1))
        with redis_sync.Redis.from_url(server.url) as raw:
            raw.script_flush()
        with count_round_trips() as count:
            responses = await asyncio.gather(*(pipe.request(r) for r in requests))
        # 4 pipelines (hit claims, leases, appends, billed claims); the first three scripts
        # each come back NOSCRIPT once: a load and the pipeline again, two round trips more
        # each (the billed claims run the claim script, loaded by then).
        assert count[0] == 4 + 3 * 2
    assert [r.data for r in responses] == [[model.sample_text(r.prompt, 0)] for r in requests]
    assert all(r.cached == [False] for r in responses) and model.samples_generated == 21
    with redis_sync.Redis.from_url(server.url) as raw:
        assert all(raw.llen(f"noscript:{{{r.key}}}:s") == 1 for r in responses)


async def test_commands_issued_in_one_turn_are_one_pipeline(redis_store_factory, raw_redis):
    """Store calls made by many tasks at once (the engine serving many keys) share one round
    trip: 50 appends, then 50 leases, then 50 claims, each phase one pipeline; each caller
    gets its own reply. A key whose script fails (a list key holding a string) fails only its
    own caller; a caller cancelled before the pipeline is sent sends nothing."""
    store = redis_store_factory()
    await store.append("warm", [rec(0)])  # connection and first-use checks
    keys = [f"{i:064x}" for i in range(50)]
    with count_round_trips() as count:
        starts = await asyncio.gather(*(store.append(k, [rec(i), rec(i + 1)]) for i, k in enumerate(keys)))
    assert count[0] == 1 and starts == [0] * 50
    assert [raw_redis.lrange(f"{store.prefix}:{{{k}}}:s", 0, -1) for k in keys] == [
        [rec(i), rec(i + 1)] for i in range(50)]

    async def lease(key):
        async with store.generation_lease(key) as held:
            return held.acquired, held.length

    with count_round_trips() as count:
        leases = await asyncio.gather(*map(lease, keys))
    assert leases == [(True, 2)] * 50
    assert count[0] == 2  # the acquires, then the releases (nothing appended under them)

    raw_redis.set(f"{store.prefix}:{{{'e' * 64}}}:s", "not a list")
    with count_round_trips() as count:
        claims = await asyncio.gather(*(store.claim("run", "ns", k, 1, partial=False) for k in keys + ["e" * 64]),
                                      return_exceptions=True)
    assert count[0] == 1
    assert claims[:50] == [(0, [rec(i)]) for i in range(50)]
    assert isinstance(claims[50], StoreError) and "e" * 64 in str(claims[50])

    async def cancelled_append():
        task = asyncio.ensure_future(store.append(keys[0], [rec(99)]))
        other = asyncio.ensure_future(store.append(keys[1], [rec(98)]))
        await asyncio.sleep(0)  # both are queued, the pipeline is not sent yet
        task.cancel()
        return await other

    assert await cancelled_append() == 2
    assert raw_redis.llen(f"{store.prefix}:{{{keys[0]}}}:s") == 2  # the cancelled append was not sent
    assert raw_redis.lrange(f"{store.prefix}:{{{keys[1]}}}:s", 2, -1) == [rec(98)]
    await store.aclose()


async def test_a_caller_cancelled_while_its_bursts_reads_are_in_flight_consumes_nothing(redis_store_factory):
    """A private run's tick reads every hit attempt in one pipeline, then takes the positions
    with nothing awaited between: a caller cancelled while the reads are in flight takes no
    position (its next request gets the samples it would have got), the others are served."""
    from redis.asyncio.connection import AbstractConnection

    store = redis_store_factory()
    model = FakeModel(seed=12)
    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.02) as pipe:
        requests = [Request(prompt=f"cancel {i}", n=1, namespace="a") for i in range(10)]
        stored = await asyncio.gather(*(pipe.request(r) for r in requests))
        tasks = [asyncio.ensure_future(pipe.request(dataclasses.replace(r, namespace="b"))) for r in requests]
        original = AbstractConnection.send_packed_command

        async def send_then_cancel(conn, *args, **kwargs):
            result = await original(conn, *args, **kwargs)
            tasks[3].cancel()  # the reads are sent: their replies are on their way
            return result

        AbstractConnection.send_packed_command = send_then_cancel
        try:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            AbstractConnection.send_packed_command = original
        assert isinstance(results[3], asyncio.CancelledError)
        assert [r.data for i, r in enumerate(results) if i != 3] == [r.data for i, r in enumerate(stored) if i != 3]
        again = await pipe.request(dataclasses.replace(requests[3], namespace="b"))
    assert again.data == stored[3].data and again.cached == [True]
    assert model.samples_generated == 10


@pytest.mark.parametrize("shared", [False, True])
async def test_a_burst_of_requests_with_ids_reads_their_records_and_replays_in_few_round_trips(
        redis_store_factory, shared):
    """Requests with ids (whose positions are recorded for exact replays, G4) in one tick: their
    keys' records are read in one pipeline, and the hit attempts (a replay's claims of the
    positions each id took) in one more. Before: two round trips per key (the records, then
    the claim), one key after another. The replay gives each id the sample it took first
    (sample 1 of its key, not the next free sample 0), in any arrival order."""
    store = redis_store_factory()
    model = FakeModel(seed=13)
    prompts = [f"id burst {i}" for i in range(20)]
    run = (lambda name: name) if shared else (lambda name: None)
    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.02, run_id=run("one")) as pipe:
        await pipe.request(Request(prompt="warm up", n=1))
        with count_round_trips() as count:
            before = await asyncio.gather(*(pipe.request(Request(prompt=p, n=1, request_id=f"x{i}"))
                                             for i, p in enumerate(prompts)))
        # records, hit attempts, leases, appends (and a shared run's billed claims)
        assert count[0] == (5 if shared else 4)
        await pipe.request(Request(prompt="warm up", n=1, namespace="again"))  # writes the records
        await asyncio.sleep(0.05)
        with count_round_trips() as count:
            first = await asyncio.gather(*(pipe.request(Request(prompt=p, n=1, request_id=f"id{i}"))
                                           for i, p in enumerate(prompts)))
        assert count[0] == (4 if shared else 3)  # (the keys' records are known by now)
        with count_round_trips() as count:
            await pipe.aclose()  # writes the burst's 20 records: one pipeline (before: one per key)
        assert count[0] == 1
    assert [r.data for r in first] == [[model.sample_text(p, 1)] for p in prompts]
    assert [r.data for r in before] == [[model.sample_text(p, 0)] for p in prompts]
    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.02, run_id=run("two")) as pipe:
        await pipe.request(Request(prompt="warm up", n=1))
        order = list(reversed(range(20)))
        with count_round_trips() as count:
            replay = await asyncio.gather(*(pipe.request(Request(prompt=prompts[i], n=1, request_id=f"id{i}"))
                                            for i in order))
        assert count[0] == 2  # the records, then the claims of the positions they name
    assert [r.data for r in replay] == [first[i].data for i in order]
    assert all(r.cached == [True] for r in replay) and model.samples_generated == 41


async def test_a_tick_whose_bulk_hit_attempt_raises_tries_its_requests_one_by_one(redis_store_factory, caplog):
    """The bulk calls answer per request; should one raise all the same (a store bug), the
    tick's requests are tried one by one as before instead of waiting forever."""
    class Broken(RedisStore):
        async def read_many(self, reads):
            raise RuntimeError("bulk read broke")

    base = redis_store_factory()
    store = Broken(redis_store_factory.url, prefix=base.prefix)
    model = FakeModel(seed=14)
    async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.02) as pipe:
        requests = [Request(prompt=f"broken {i}", n=1) for i in range(3)]
        first = await asyncio.wait_for(asyncio.gather(*map(pipe.request, requests)), 10)
        again = await asyncio.wait_for(asyncio.gather(*(pipe.request(dataclasses.replace(r, namespace="b"))
                                                        for r in requests)), 10)
    assert [r.data for r in again] == [r.data for r in first] and model.samples_generated == 3
    assert "a tick's hit attempts failed together (RuntimeError)" in caplog.text
    await store.aclose()


async def test_a_bulk_claim_whose_reply_is_lost_is_delivered_to_the_retry(redis_store_factory):
    """A tick's claims in one pipeline whose replies are lost after they ran (a timeout past the
    retries): each caller's StoreError says the claim may still run, and the retry of the same
    claims gets what the lost ones took, as a single claim's retry does (a claim that took
    nothing leaves nothing to deliver). Test_redis_outage freezes a real server for the same
    path, where whether the frozen claims ran depends on timing; here they always ran."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    store = redis_store_factory()
    K2 = "b" * 64
    await store.append(K, [rec(0), rec(1), rec(2)], unbilled_run="run")
    client = await store._ready()
    real = client.pipelined

    async def reply_lost(ops, **kwargs):
        await real(ops, **kwargs)  # the claims run...
        raise RedisTimeoutError("Timeout reading from socket")  # ...their replies are lost

    client.pipelined = reply_lost
    try:
        lost = await store.claim_many("run", [("B", K, 2), ("B", K2, 1)], billed=True)
    finally:
        client.pipelined = real
    assert all(isinstance(e, StoreError) and "may still run once Redis is back" in str(e) for e in lost)
    again = await store.claim_many("run", [("B", K, 2), ("B", K2, 1)], billed=True)
    assert again == [(0, [rec(0), rec(1)], [0, 1]), (0, [], [])]
    assert await store.claim("run", "B", K, 1, partial=False) == (2, [rec(2)])  # no gap in B's ledger
    await store.aclose()
