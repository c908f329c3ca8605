"""RedisStore on a real 3-primary Redis Cluster: hash tags keep each script in one slot,
scans and clear cover every node, and the engine runs on it unchanged."""
from __future__ import annotations

import asyncio

from redis.crc import key_slot

from cachesaver.codec import encode_sample
from cachesaver.keys import make_key
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores.redis import RedisStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request


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
