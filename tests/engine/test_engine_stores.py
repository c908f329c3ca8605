"""The store contract, run against every store kind (memory, disk, redis)."""
from __future__ import annotations

import os
import pickle

import diskcache
import pytest

from cachesaver.codec import decode_sample, encode_sample
from cachesaver.errors import CorruptSampleError, NotSerializableError
from cachesaver.opening import open_store
from cachesaver.stores import DiskStore, MemoryStore

from _disk_rows import all_values, set_sample

K = "k" * 64
K2 = "j" * 64


def rec(i):
    return encode_sample(f"sample-{i}", 1, 2, 0.5)


async def collect(aiter):
    return [x async for x in aiter]


async def test_append_returns_start_and_reads_back(store):
    assert await store.length(K) == 0
    assert await store.read(K, 0, 3) == []
    assert await store.append(K, [rec(0), rec(1)], meta=b'{"prompt":"p"}') == 0
    assert await store.append(K, [rec(2)]) == 2
    assert await store.length(K) == 3
    assert await store.read(K, 0, 10) == [rec(0), rec(1), rec(2)]
    assert await store.read(K, 1, 1) == [rec(1)]
    assert await store.read(K, 3, 1) == []
    assert await store.get_meta(K) == b'{"prompt":"p"}'
    assert await store.length(K2) == 0


async def test_claim_all_or_nothing_and_partial(store):
    await store.append(K, [rec(0), rec(1), rec(2)])
    assert await store.claim("run", "A", K, 2, partial=False) == (0, [rec(0), rec(1)])
    assert await store.claim("run", "A", K, 2, partial=False) == (2, [])  # only 1 left: nothing taken
    assert await store.claim("run", "A", K, 0, partial=True) == (2, [])  # position probe
    assert await store.claim("run", "A", K, 2, partial=True) == (2, [rec(2)])
    assert await store.claim("run", "A", K, 1, partial=True) == (3, [])
    # other namespaces and other runs start at 0
    assert await store.claim("run", "B", K, 1, partial=False) == (0, [rec(0)])
    assert await store.claim("run2", "A", K, 3, partial=False) == (0, [rec(0), rec(1), rec(2)])
    ledger = sorted(await collect(store.iter_ledger()))
    assert ledger == [("run", "A", K, 3), ("run", "B", K, 1), ("run2", "A", K, 3)]


async def test_ledger_names_with_separators_do_not_collide(store):
    await store.append(K, [rec(0), rec(1)])
    assert (await store.claim("a:b", "c", K, 1, partial=False))[0] == 0
    assert (await store.claim("a", "b:c", K, 1, partial=False))[0] == 0


async def test_keys_delete_and_clear(store):
    await store.append(K, [rec(0)])
    await store.append(K2, [rec(1), rec(2)])
    await store.claim("run", "A", K2, 1, partial=False)
    assert sorted(await collect(store.iter_keys())) == sorted([K, K2])
    assert await store.delete(K2) == 2
    assert await store.length(K2) == 0
    assert await collect(store.iter_keys()) == [K]
    assert [e for e in await collect(store.iter_ledger()) if e[2] == K2] == []
    await store.clear()
    assert await collect(store.iter_keys()) == []
    assert await store.length(K) == 0


async def test_two_handles_on_one_backend_see_each_other(make_store):
    first, second = make_store(), make_store()
    await first.append(K, [rec(0)])
    assert await second.read(K, 0, 1) == [rec(0)]
    assert await second.append(K, [rec(1)]) == 1
    assert await first.claim("r", "A", K, 2, partial=False) == (0, [rec(0), rec(1)])
    assert await second.claim("r", "A", K, 1, partial=True) == (2, [])


# -- disk-specific: no pickle, user caches, bad paths ---------------------------------------
class Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


async def test_planted_pickle_is_never_unpickled(tmp_path):
    directory = str(tmp_path / "c")
    canary = tmp_path / "pwned"
    store = DiskStore(directory)
    await store.append(K, [rec(0)])
    store.close()
    # An attacker writes a pickle payload over sample 0 (straight into the SQLite file), and
    # pickles into diskcache's own table of the same file (entries the store never reads).
    set_sample(directory, K, 0, pickle.dumps(Exploit(str(canary))))
    with diskcache.Cache(directory) as foreign:
        foreign.set(f"cs1:s:{K}:0", Exploit(str(canary)))
        foreign.set(Exploit(str(canary)), "pickled key")  # a pickled *key* too
    store = DiskStore(directory)
    raw = await store.read(K, 0, 1)
    with pytest.raises(CorruptSampleError, match=f"sample 1 of key {K}"):
        decode_sample(raw[0], key=K, index=0)  # bytes are only ever parsed as JSON
    set_sample(directory, K, 0, 12345)  # not even bytes
    with pytest.raises(CorruptSampleError, match="is a int, not JSON bytes"):
        decode_sample((await store.read(K, 0, 1))[0], key=K, index=0)
    assert await collect(store.iter_keys()) == [K]  # the foreign entries are not ours: unseen
    assert not canary.exists()
    store.close()


async def test_disk_store_refuses_non_json_types(tmp_path):
    store = DiskStore(str(tmp_path / "c"))
    with pytest.raises(TypeError):
        await store.append(K, [{"not": "bytes"}])  # type: ignore[list-item]
    assert await store.length(K) == 0  # nothing half-written
    store.close()


async def test_user_diskcache_eviction_never_touches_samples(tmp_path):
    """The seed passes its own diskcache.Cache; its size limit and eviction policy apply to the
    user's own entries only: samples live in tables diskcache never culls (issue 12, item 2)."""
    user_cache = diskcache.Cache(str(tmp_path / "seed"), size_limit=10_000)  # culls hard
    store = open_store(user_cache)
    assert isinstance(store, DiskStore) and store.directory == user_cache.directory
    for i in range(50):
        await store.append(K, [rec(i) + b" " * 1000])
    for i in range(200):  # the user fills their Cache far past its limit: it evicts
        user_cache.set(f"user-{i}", b"x" * 2000)
    assert len(user_cache) < 200  # eviction did run
    assert await store.length(K) == 50
    assert len(await store.read(K, 0, 50)) == 50  # nothing of ours evicted
    user_cache.clear()  # even the user's clear() leaves the samples alone
    assert len(await store.read(K, 0, 50)) == 50
    # and opening the store changed none of the user's settings
    assert user_cache.eviction_policy == "least-recently-stored"
    with diskcache.Cache(user_cache.directory) as again:
        assert again.size_limit == 10_000 and again.eviction_policy == "least-recently-stored"
    store.close()
    user_cache.close()


def test_open_store_errors_name_the_fix(tmp_path):
    with pytest.raises(TypeError, match="directory path"):
        open_store(None)
    with pytest.raises(TypeError, match="has type int"):
        open_store(42)
    file_path = tmp_path / "afile"
    file_path.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        open_store(str(file_path))
    assert isinstance(open_store("memory"), MemoryStore)


def test_codec_rejects_non_json_and_flags_garbage():
    with pytest.raises(NotSerializableError, match="not plain JSON"):
        encode_sample(object(), where="sample 0")
    import datetime

    with pytest.raises(NotSerializableError):
        encode_sample(datetime.datetime.now())
    with pytest.raises(CorruptSampleError, match=f"sample 4 of key {K}"):
        decode_sample(b"\x80garbage", key=K, index=3)
    with pytest.raises(CorruptSampleError):
        decode_sample(pickle.dumps("x"), key=K, index=0)
    assert decode_sample(encode_sample({"a": [1, "é"]}, 3, 4, 0.25), key=K, index=0) == ({"a": [1, "é"]}, 3, 4, 0.25)


def test_store_directory_holds_no_pickles(tmp_path):
    """Everything the disk store writes is bytes it encoded or a plain int, never a pickle."""
    import asyncio

    directory = str(tmp_path / "c")
    store = DiskStore(directory)
    asyncio.run(store.append(K, [rec(0), encode_sample("x" * 100_000)], meta=b"{}"))
    asyncio.run(store.claim("r", "A", K, 1, partial=False))
    store.close()
    values = all_values(directory)
    assert len(values) == 5  # two samples, count and meta, one ledger position
    for value in values:
        assert type(value) is int or (type(value) is bytes and not value.startswith(b"\x80"))


def test_redis_store_is_importable_from_stores_lazily():
    """`from cachesaver.stores import RedisStore` works (the module documents it), and
    `import cachesaver` / `import cachesaver.stores` still never import redis."""
    import subprocess
    import sys

    code = ("import sys, cachesaver, cachesaver.stores, cachesaver.pipelines; "
            "before = 'redis' in sys.modules; "
            "from cachesaver.stores import RedisStore; "
            "from cachesaver.stores.redis import RedisStore as direct; "
            "print(before, RedisStore is direct, 'RedisStore' in cachesaver.stores.__all__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True"]


def test_request_subclass_may_add_fields_without_defaults():
    """The seed's `class Request(Request): temperature: float` (issue 12, item 8)."""
    import dataclasses

    from cachesaver.keys import request_key
    from cachesaver.typedefs import Request

    @dataclasses.dataclass(frozen=True)
    class Hot(Request):
        temperature: float

    a = Hot("p", 0.5, n=2, namespace="A")
    assert (a.prompt, a.temperature, a.n, a.namespace, a.request_id) == ("p", 0.5, 2, "A", "")
    assert request_key(a) != request_key(Hot("p", 0.9)) and request_key(a) == request_key(Hot("p", 0.5, n=7))
    with pytest.raises(TypeError):
        Hot("p")  # temperature is required


def test_disk_store_in_a_forked_child_and_from_other_threads(tmp_path):
    """A forked child opens its own SQLite connection (never the parent's); read_now serves
    synchronous reads from any thread."""
    import asyncio
    import threading

    store = DiskStore(str(tmp_path / "c"))
    asyncio.run(store.append(K, [rec(0)]))
    assert store.read_now(K, 0, 1) == [rec(0)]
    seen = []
    thread = threading.Thread(target=lambda: seen.append(store.read_now(K, 0, 5)))
    thread.start()
    thread.join()
    assert seen == [[rec(0)]]
    pid = os.fork()
    if pid == 0:  # the child: read and write through the inherited store object
        try:
            ok = asyncio.run(store.read(K, 0, 1)) == [rec(0)] and asyncio.run(store.append(K, [rec(1)])) == 1
            store.close()
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.read_now(K, 0, 5) == [rec(0), rec(1)]  # the parent's connection still works
    asyncio.run(store.append(K, [rec(2)]))
    assert asyncio.run(store.length(K)) == 3
    store.close()


def test_a_cache_in_the_earlier_diskcache_layout_is_named_not_silently_empty(tmp_path, caplog):
    """Samples written by the earlier layout (diskcache entries 'cs1:...') are not read: opening
    such a directory says so, and how to move them, instead of silently paying for them again."""
    import logging

    directory = str(tmp_path / "old")
    with diskcache.Cache(directory) as old:
        old.set(f"cs1:n:{K}", 1)
        old.set(f"cs1:s:{K}:0", rec(0))
    with caplog.at_level(logging.WARNING, logger="cachesaver.stores.disk"):
        store = DiskStore(directory)
    assert "earlier development version" in caplog.text and "cachesaver export" in caplog.text
    store.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cachesaver.stores.disk"):
        DiskStore(str(tmp_path / "fresh")).close()
        with diskcache.Cache(str(tmp_path / "user")) as user:
            user.set("their own", b"x")
        DiskStore(str(tmp_path / "user")).close()
    assert caplog.text == ""


async def test_a_corrupt_key_fails_alone_when_appends_are_batched(tmp_path):
    """Appends of one moment share a transaction; a key whose count is garbage must fail only
    its own callers, and the other keys' freshly paid samples must still be stored."""
    import asyncio

    from _disk_rows import set_count

    from cachesaver.pipelines import OnlineAPI
    from cachesaver.testing import FakeModel
    from cachesaver.typedefs import Request

    directory = str(tmp_path / "c")
    model = FakeModel()
    async with OnlineAPI(model=model, cache=directory, batch_size=1, timeout=0) as p:
        await p.request(Request(prompt="bad", n=1, request_id="w", namespace="A"))
        bad_key = next(iter([k async for k in p.store.iter_keys()]))
    set_count(directory, bad_key, b"garbage")
    async with OnlineAPI(model=model, cache=directory, batch_size=8, timeout=0.001) as p:
        results = await asyncio.gather(
            p.request(Request(prompt="bad", n=2, request_id="a", namespace="B")),
            *(p.request(Request(prompt=f"good {i}", n=1, request_id=f"g{i}", namespace="B")) for i in range(5)),
            return_exceptions=True)
        assert isinstance(results[0], CorruptSampleError) and bad_key in str(results[0])
        assert [r.cached for r in results[1:]] == [[False]] * 5
        for i in range(5):
            assert (await p.request(Request(prompt=f"good {i}", n=1, request_id=f"r{i}", namespace="C"))).cached == [True]


async def test_batched_appends_fail_only_the_key_whose_rows_are_bad(tmp_path):
    import asyncio

    from _disk_rows import set_count

    from cachesaver.appends import Appends

    directory = str(tmp_path / "c")
    store = DiskStore(directory)
    await store.append(K, [rec(0)])
    set_count(directory, K, b"garbage")
    appends = Appends(store)
    others = [f"{i}" * 64 for i in range(1, 4)]
    results = await asyncio.gather(appends.append(K, [rec(1)], None),
                                   *(appends.append(k, [rec(9)], None) for k in others),
                                   return_exceptions=True)
    assert isinstance(results[0], CorruptSampleError) and K in str(results[0])
    assert results[1:] == [0, 0, 0]
    assert [await store.read(k, 0, 5) for k in others] == [[rec(9)]] * 3
    store.close()


def test_threads_that_end_leave_no_open_connection(tmp_path):
    import asyncio
    import gc
    import threading

    store = DiskStore(str(tmp_path / "c"))
    asyncio.run(store.append(K, [rec(0)]))
    for _ in range(50):
        t = threading.Thread(target=store.read_now, args=(K, 0, 1))
        t.start()
        t.join()
    gc.collect()
    assert len(store._conns) <= 2  # this thread's, and at most one not yet collected
    store.close()


async def test_read_many_and_claim_many_answer_each_read_and_claim_on_its_own(store):
    """The bulk calls a tick's hit attempts use: each answer is what the single call would
    have given, in order; a claim of more samples than stored takes nothing of its key and
    leaves the others' claims standing."""
    await store.append(K, [rec(0), rec(1), rec(2)])
    await store.append(K2, [rec(9)])
    assert await store.read_many([(K, 0, 2), (K2, 0, 5), (K, 3, 1), (K2, 1, 0)]) == [
        [rec(0), rec(1)], [rec(9)], [], []]
    assert await store.claim_many("run", [("A", K, 2), ("A", K2, 2), ("B", K, 3)], billed=False) == [
        (0, [rec(0), rec(1)], []), (0, [], []), (0, [rec(0), rec(1), rec(2)], [])]
    assert await store.claim_many("run", [("A", K, 2), ("A", K2, 1)], billed=False) == [
        (2, [], []), (0, [rec(9)], [])]
    ledger = sorted(await collect(store.iter_ledger()))
    assert ledger == sorted([("run", "A", K, 2), ("run", "A", K2, 1), ("run", "B", K, 3)])
    if store.keeps_billing:  # records of a shared run's generation are taken once, by the first claim
        await store.append(K2, [rec(10), rec(11)], unbilled_run="run")
        assert await store.claim_many("run", [("A", K2, 1), ("B", K2, 3)], billed=True) == [
            (1, [rec(10)], [1]), (0, [rec(9), rec(10), rec(11)], [2])]


async def test_claim_at_many_and_id_positions_many_answer_as_the_single_calls(store):
    """The bulk calls of a tick's requests with ids give what the single calls give."""
    await store.append(K, [rec(0), rec(1), rec(2), rec(3)])
    wanted = [("A", K, 1, 2), ("B", K, 0, 1), ("A", K2, 5, 1), ("A", K, 0, 1)]
    single = [await store.claim_at("r1", ns, key, pos, count) for ns, key, pos, count in wanted]
    assert await store.claim_at_many("r2", wanted) == single
    await store.record_id_positions([("A", K, "id1", 1, 2), ("B", K2, "id2", 0, 1)])
    assert await store.id_positions_many([K, K2, "q" * 64]) == [
        await store.id_positions(K), await store.id_positions(K2), {}]
