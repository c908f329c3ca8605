"""Moving caches: disk <-> Redis as JSONL (portable text, no pickle), without duplicates."""
from __future__ import annotations

import asyncio
import gzip
import io
import json

import pytest

from cachesaver.codec import encode_sample
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import DiskStore, MemoryStore
from cachesaver.testing import FakeModel
from cachesaver.transfer import (
    TransferConflictError,
    TransferError,
    copy_store,
    export_jsonl,
    import_jsonl,
)
from cachesaver.typedefs import Request

K = "c" * 64


def rec(text):
    return encode_sample(text, 3, 4, 0.001)


async def _fill_with_pipeline(directory: str) -> None:
    """A realistic laptop cache: several keys, namespaces, a shared run, unicode, long lists."""
    model = FakeModel(seed=21, answers=["oui ✓", "non", '{"json": "in text"}'])
    async with OnlineAPI(model=model, cache=directory, batch_size=32, timeout=0.01, run_id="laptop") as pipe:
        for ns, n in (("A", 3), ("B", 5)):
            await asyncio.gather(*(
                pipe.request(Request(prompt={"messages": [f"q{i}", "é"]}, n=n, request_id=f"{ns}{i}", namespace=ns))
                for i in range(5)))
    store = DiskStore(directory)
    await store.append(K, [rec(f"long {i}") for i in range(2_500)], meta=b'{"prompt":"long"}')  # > 1 chunk
    store.close()


async def _raw_dump(store) -> dict:
    out = {}
    async for key in store.iter_keys():
        out[key] = (await store.get_meta(key), await store.read(key, 0, 10_000))
    return out


async def test_disk_to_redis_to_disk_is_byte_identical(tmp_path, redis_store_factory):
    laptop = str(tmp_path / "laptop")
    await _fill_with_pipeline(laptop)
    first, second, third = (tmp_path / f"export{i}.jsonl" for i in range(3))

    report = await export_jsonl(laptop, first, ledger=True)
    assert report.keys == 6 and report.samples == 5 * 5 + 2_500 and report.ledger_entries == 10
    cluster = redis_store_factory()
    imported = await import_jsonl(cluster, first)
    assert (imported.samples_added, imported.samples_present, imported.ledger_entries) == (2_525, 0, 10)
    await export_jsonl(cluster, second, ledger=True)
    back = tmp_path / "back"
    await import_jsonl(str(back), second)
    await export_jsonl(str(back), third, ledger=True)

    assert first.read_bytes() == second.read_bytes() == third.read_bytes()
    source, restored = DiskStore(laptop), DiskStore(str(back))
    assert await _raw_dump(source) == await _raw_dump(restored) == await _raw_dump(cluster)
    assert sorted([e async for e in source.iter_ledger()]) == sorted([e async for e in restored.iter_ledger()])
    source.close()
    restored.close()
    await cluster.aclose()


async def test_seeded_cluster_replays_the_laptop_run_with_zero_calls(tmp_path, redis_store_factory):
    laptop = str(tmp_path / "laptop")
    model = FakeModel(seed=4)
    requests = [Request(prompt=f"p{i}", n=2, request_id=str(i), namespace="exp") for i in range(4)]
    async with OnlineAPI(model=model, cache=laptop, batch_size=8, timeout=0.01) as pipe:
        expected = [r.data for r in await asyncio.gather(*map(pipe.request, requests))]
    cluster = redis_store_factory()
    await copy_store(laptop, cluster)
    replay_model = FakeModel(seed=99)
    async with OnlineAPI(model=replay_model, cache=cluster, batch_size=8, timeout=0.01) as pipe:
        replayed = [r.data for r in await asyncio.gather(*map(pipe.request, requests))]
    assert replayed == expected and replay_model.call_count == 0  # G4 across machines
    await cluster.aclose()


async def test_import_appends_only_the_missing_tail_and_is_idempotent(redis_store_factory):
    source = MemoryStore()
    await source.append(K, [rec(i) for i in range(5)], meta=b'{"p":1}')
    buffer = io.BytesIO()
    await export_jsonl(source, buffer)

    target = redis_store_factory()
    await target.append(K, [rec(0), rec(1)], meta=b'{"p":1}')  # already holds a prefix
    report = await import_jsonl(target, io.BytesIO(buffer.getvalue()))
    assert (report.samples_present, report.samples_added) == (2, 3)
    again = await import_jsonl(target, io.BytesIO(buffer.getvalue()))
    assert (again.samples_present, again.samples_added) == (5, 0)
    assert await target.read(K, 0, 10) == [rec(i) for i in range(5)]
    await target.aclose()


async def test_conflicting_sample_is_a_clear_error_and_writes_nothing(redis_store_factory):
    source = MemoryStore()
    await source.append(K, [rec(i) for i in range(3)])
    buffer = io.StringIO()  # text files work too
    await export_jsonl(source, buffer)
    target = redis_store_factory()
    await target.append(K, [rec(0), rec("different")])
    with pytest.raises(TransferConflictError, match=f"line 2: sample 2 of key {K} differs"):
        await import_jsonl(target, io.StringIO(buffer.getvalue()))
    assert await target.length(K) == 2  # the missing tail was not appended either
    await target.aclose()


async def test_ledger_positions_only_move_forward(redis_store_factory):
    source = MemoryStore()
    await source.append(K, [rec(i) for i in range(4)])
    await source.claim("run", "ns", K, 3, partial=False)
    buffer = io.BytesIO()
    await export_jsonl(source, buffer, ledger=True)
    target = redis_store_factory()
    await import_jsonl(target, io.BytesIO(buffer.getvalue()))
    assert [e async for e in target.iter_ledger()] == [("run", "ns", K, 3)]
    await target.claim("run", "ns", K, 1, partial=False)  # the cluster moved on
    await import_jsonl(target, io.BytesIO(buffer.getvalue()))
    assert [e async for e in target.iter_ledger()] == [("run", "ns", K, 4)]
    skip = await import_jsonl(MemoryStore(), io.BytesIO(buffer.getvalue()), ledger=False)
    assert skip.ledger_entries == 0
    await target.aclose()


async def test_gzip_paths_round_trip(tmp_path):
    source = MemoryStore()
    await source.append(K, [rec(i) for i in range(3)], meta=b"{}")
    path = tmp_path / "cache.jsonl.gz"
    await export_jsonl(source, path)
    assert gzip.open(path).readline() == b'{"format":"cachesaver-jsonl","version":1}\n'
    target = MemoryStore()
    await import_jsonl(target, path)
    assert await _raw_dump(target) == await _raw_dump(source)


@pytest.mark.parametrize(
    "lines, match",
    [
        ([], "file is empty"),
        (['{"key": "x"}'], "not a CacheSaver export"),
        (['{"format": "cachesaver-jsonl", "version": 9}'], "upgrade cachesaver"),
        (["HEADER", "not json"], "line 2 is not JSON"),
        (["HEADER", '{"key": "", "samples": []}'], "line 2: 'key' must be"),
        (["HEADER", '{"key": "k", "start": -1, "samples": []}'], "'start' must be an int"),
        (["HEADER", '{"key": "k", "samples": [{"d": 1}]}'], r"samples\[0\] must be a string"),
        (["HEADER", '{"key": "k", "samples": ["\\"no record\\""]}'], "not a CacheSaver record"),
        (["HEADER", '{"key": "k", "start": 5, "samples": ["{\\"d\\":1}"]}'], "holds only 0"),
        (["HEADER", '{"ledger": ["r", "n", "k"]}'], "'ledger' must be"),
    ],
)
async def test_bad_files_name_line_and_field(lines, match):
    header = json.dumps({"format": "cachesaver-jsonl", "version": 1})
    text = "\n".join(header if line == "HEADER" else line for line in lines)
    store = MemoryStore()
    with pytest.raises(TransferError, match=match):
        await import_jsonl(store, io.StringIO(text))
    assert await _raw_dump(store) == {}


async def test_failed_export_leaves_no_partial_file(tmp_path):
    class Broken(MemoryStore):
        async def read(self, key, start, count):
            raise RuntimeError("disk on fire")

    store = Broken()
    await MemoryStore.append(store, K, [rec(0)])
    path = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="disk on fire"):
        await export_jsonl(store, path)
    assert list(tmp_path.iterdir()) == []


async def test_export_a_subset_of_keys_with_their_ledgers():
    source = MemoryStore()
    other = "d" * 64
    for key in (K, other):
        await source.append(key, [rec(key[:1])])
        await source.claim("run", "ns", key, 1, partial=False)
    buffer = io.BytesIO()
    report = await export_jsonl(source, buffer, ledger=True, keys=[other])
    assert (report.keys, report.samples, report.ledger_entries) == (1, 1, 1)
    target = MemoryStore()
    await import_jsonl(target, io.BytesIO(buffer.getvalue()))
    assert [k async for k in target.iter_keys()] == [other]
    assert [e async for e in target.iter_ledger()] == [("run", "ns", other, 1)]
