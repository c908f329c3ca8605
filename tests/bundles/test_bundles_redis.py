"""A bundle made on disk replays from Redis after import, and a bundle made from that Redis
replay is the same bundle, byte for byte (and imports back to disk)."""
from __future__ import annotations

import asyncio

import pytest

from cachesaver import OnlineAPI
from cachesaver.bundle import import_bundle, read_bundle, write_bundle
from cachesaver.testing import FakeModel

from _experiment import NAMESPACES, run_experiment

pytestmark = pytest.mark.redis


def test_disk_bundle_replays_from_redis_and_back(recorded, redis_store_factory, tmp_path):
    path, outputs, _ = recorded
    model = FakeModel(seed=11)

    async def main():
        redis = redis_store_factory()
        report = await import_bundle(path, redis)
        async with OnlineAPI(model=model, cache=redis, batch_size=8, timeout=0.005, offline=True) as p:
            replayed = {ns: await run_experiment(p, ns) for ns in NAMESPACES}
            await write_bundle(redis, await p.consumption(), tmp_path / "from-redis.csbundle")
        await redis.aclose()
        back = await import_bundle(tmp_path / "from-redis.csbundle", str(tmp_path / "disk-again"))
        async with OnlineAPI(model=model, cache=str(tmp_path / "disk-again"), batch_size=8, timeout=0.005,
                             offline=True) as p:
            again = {ns: await run_experiment(p, ns) for ns in NAMESPACES}
        return report, replayed, back, again
    report, replayed, back, again = asyncio.run(main())
    assert report.samples_added == read_bundle(path).sample_count
    assert replayed == outputs and again == outputs
    assert model.call_count == 0
    assert back.samples_added == report.samples_added
    assert (tmp_path / "from-redis.csbundle").read_bytes() == path.read_bytes()
