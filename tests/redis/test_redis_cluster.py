"""RedisStore on a real 3-primary Redis Cluster: hash tags keep each script in one slot,
scans and clear cover every node, and the engine runs on it unchanged."""
from __future__ import annotations

import asyncio

import pytest
from redis.crc import key_slot

from cachesaver.codec import encode_sample
from cachesaver.keys import make_key
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores.redis import RedisStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

# One worker runs this module: its cluster (``own_redis_cluster``: three redis-server processes
# joined into a cluster) is then started once, not once per worker the module's tests land on.
pytestmark = pytest.mark.xdist_group("redis-cluster")


def rec(i):
    return encode_sample(f"sample-{i}")


async def test_store_contract_across_cluster_slots(own_redis_cluster):
    store = RedisStore(own_redis_cluster + "?cluster=1", prefix="cl")
    keys = [make_key({"prompt": i}) for i in range(24)]
    assert len({key_slot(k.encode()) * 3 // 16384 for k in keys}) == 3  # keys on every node
    for i, key in enumerate(keys):
        assert await store.append(key, [rec(i), rec(i + 100)], meta=b"{}") == 0
        assert await store.claim("run", "ns", key, 1, partial=False) == (0, [rec(i)])
        async with store.generation_lease(key) as lease:
            assert lease.acquired
    assert sorted([k async for k in store.iter_keys()]) == sorted(keys)
    assert len([e async for e in store.iter_ledger()]) == 24
    assert await store.delete(keys[0]) == 2
    await store.clear()
    assert [k async for k in store.iter_keys()] == []
    await store.aclose()


async def test_engine_runs_on_a_cluster_url(own_redis_cluster):
    url = own_redis_cluster + "?cluster=1&prefix=engine"
    model = FakeModel(seed=8)
    requests = [Request(prompt=f"p{i}", n=2, request_id=str(i), namespace="A") for i in range(6)]
    async with OnlineAPI(model=model, cache=url, batch_size=16, timeout=0.01, run_id="r") as pipe:
        first = [r.data for r in await asyncio.gather(*map(pipe.request, requests))]
    async with OnlineAPI(model=model, cache=url, batch_size=16, timeout=0.01, run_id="r2") as pipe:
        again = [r.data for r in await asyncio.gather(*map(pipe.request, requests))]
    assert again == first and model.call_count == 6  # replayed from the cluster, no new calls


async def test_a_burst_on_a_cluster_is_one_pipeline_per_phase_across_nodes(own_redis_cluster):
    """A tick's misses and hits on keys of every node go out as pipelines (redis-py sends each
    node its part); the scripts, flushed from every node first, are loaded again and the
    commands answered NOSCRIPT sent again (they did not run): every key gets exactly its own
    samples, private and shared runs alike."""
    import redis as redis_sync

    requests = [Request(prompt=f"burst {i}", n=1, namespace="A") for i in range(24)]
    for run_id in (None, "burst"):
        model = FakeModel(seed=10)
        url = own_redis_cluster + f"?cluster=1&prefix=burst-{run_id}"
        async with OnlineAPI(model=model, cache=url, batch_size=64, timeout=0.01, run_id=run_id) as pipe:
            await pipe.request(Request(prompt=f"warm up {run_id}", n=1))
            keys = [pipe.key_of(r) for r in requests]
            assert len({key_slot(k.encode()) * 3 // 16384 for k in keys}) == 3  # keys on every node
            with redis_sync.RedisCluster.from_url(own_redis_cluster) as cluster:
                for node in cluster.get_primaries():
                    with redis_sync.Redis(host=node.host, port=node.port) as one:
                        one.script_flush()
            first = await asyncio.gather(*map(pipe.request, requests))
            hits = await asyncio.gather(*(pipe.request(Request(prompt=r.prompt, n=1, namespace="B"))
                                          for r in requests))
        assert [r.data for r in first] == [[model.sample_text(r.prompt, 0)] for r in requests]
        assert all(r.cached == [False] for r in first) and all(r.cached == [True] for r in hits)
        assert [r.data for r in hits] == [r.data for r in first]
        assert model.samples_generated == 1 + 24
