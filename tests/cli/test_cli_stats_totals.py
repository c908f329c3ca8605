"""`cachesaver stats` figures (``Store.key_totals``) equal a brute-force count, on every store.

The disk store computes them as SQL aggregates, reading a key's bytes from the byte total its
appends keep in the key row; the others stream key by key. Both are checked against counts made
here from what was written (and, on disk, from the raw sample rows), including stores written by
a version without the byte total and appends by such a version afterwards.
"""
from __future__ import annotations

import asyncio
import os
import sqlite3

import orjson
import pytest

from cachesaver.cli import main
from cachesaver.display import request_model
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import DiskStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

#: Stored requests naming their model every way request_model reads it, and ways it does not.
METAS = [
    orjson.dumps({"cachesaver_model": "openai/gpt-4o-mini", "model": "ignored", "messages": []}),
    orjson.dumps({"model": "claude-x", "prompt": "p"}),
    orjson.dumps({"model": 5, "model_name": "named-model"}),
    orjson.dumps({"params": {"model": "param-model"}, "model": None}),
    orjson.dumps({"params": "not a dict", "prompt": "q"}),
    orjson.dumps([{"model": "in a list"}]),
    orjson.dumps("just a string"),
    b"{not json",
    None,
]


def expected_model(meta):
    try:
        return request_model(orjson.loads(meta)) if meta is not None else "-"
    except orjson.JSONDecodeError:
        return "-"


async def fill(store, truth: dict) -> None:
    """Keys of 1-7 samples in 1-3 appends (some several keys in one append_many), every meta
    above; ``truth[key] = [samples, bytes, model]`` is counted here, as written."""
    items = []
    for i in range(40):
        key = f"{(i * 7919) % 1000:03d}-key-{i}"
        meta = METAS[i % len(METAS)]
        for round_ in range(1 + i % 3):
            samples = [b'{"x":"' + b"y" * ((i * 13 + j * 5 + round_) % 37) + b'"}' for j in range(1 + (i + round_) % 3)]
            if round_ == 1 and i % 2:
                items.append((key, samples, meta))
            else:
                await store.append(key, samples, meta)
            t = truth.setdefault(key, [0, 0, expected_model(meta)])
            t[0] += len(samples)
            t[1] += sum(len(s) for s in samples)
    await store.append_many(items)


def brute_totals(truth: dict, top: int):
    by_model: dict[str, list[int]] = {}
    for n, size, model in truth.values():
        t = by_model.setdefault(model, [0, 0, 0])
        t[0] += 1
        t[1] += n
        t[2] += size
    largest = sorted(((key, n, size) for key, (n, size, _m) in truth.items()), key=lambda e: (-e[1], e[0]))[:top]
    return by_model, largest


async def check(store, truth: dict, top: int = 7) -> None:
    got = await store.key_totals(top)
    by_model, largest = brute_totals(truth, top)
    assert got.by_model == by_model
    assert [(key, n, size) for key, n, size, _meta in got.largest] == largest
    for key, _n, _size, meta in got.largest:
        assert meta == await store.get_meta(key)
    assert (got.keys, got.samples, got.bytes) == (len(truth), sum(t[0] for t in truth.values()),
                                                  sum(t[1] for t in truth.values()))


def test_key_totals_equal_a_brute_force_count(make_store):
    async def go():
        store = make_store()
        truth: dict = {}
        await fill(store, truth)
        assert len({t[2] for t in truth.values()}) == 5  # five models, "-" included
        await check(store, truth)
        await check(store, truth, top=0)
        await check(store, truth, top=1000)

    asyncio.run(go())


def _raw_counts(directory: str, top: int):
    """The figures counted from the raw rows with plain sqlite3 (the samples themselves)."""
    con = sqlite3.connect(os.path.join(directory, "cache.db"))
    truth = {}
    for key, meta in con.execute("SELECT key, meta FROM cachesaver_keys"):
        rows = con.execute("SELECT value FROM cachesaver_samples WHERE key = ?", (key,)).fetchall()
        truth[key] = [len(rows), sum(len(v) for (v,) in rows), expected_model(meta)]
    con.close()
    return truth


def test_disk_totals_of_pipelines_in_several_namespaces_and_shared_runs(tmp_path):
    directory = str(tmp_path / "cache")

    async def go():
        for run in ("exp-1", "exp-2", None):
            async with OnlineAPI(model=FakeModel(seed=3), cache=directory, run_id=run) as p:
                await asyncio.gather(*(
                    p.request(Request(prompt=f"question {i % 9}", n=1 + i % 3, namespace=f"ns{i % 4}",
                                      request_id=f"{run}-{i}"))
                    for i in range(30)))
        store = DiskStore(directory)
        try:
            await check(store, _raw_counts(directory, 5), top=5)
        finally:
            store.close()

    asyncio.run(go())


OLD_SCHEMA = """
CREATE TABLE cachesaver_keys (key TEXT PRIMARY KEY, count INTEGER NOT NULL, meta BLOB);
CREATE TABLE cachesaver_samples (key TEXT NOT NULL, idx INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY (key, idx));
CREATE TABLE cachesaver_ledger (run TEXT NOT NULL, ns TEXT NOT NULL, key TEXT NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (run, ns, key));
"""


def _old_append(con, key, samples, meta):
    """An append as a version without the byte total writes it (count and rows only)."""
    row = con.execute("SELECT count FROM cachesaver_keys WHERE key = ?", (key,)).fetchone()
    start = row[0] if row else 0
    if row:
        con.execute("UPDATE cachesaver_keys SET count = ? WHERE key = ?", (start + len(samples), key))
    else:
        con.execute("INSERT INTO cachesaver_keys (key, count, meta) VALUES (?, ?, ?)", (key, len(samples), meta))
    con.executemany("INSERT INTO cachesaver_samples (key, idx, value) VALUES (?, ?, ?)",
                    [(key, start + i, s) for i, s in enumerate(samples)])


def test_disk_totals_of_a_store_written_before_the_byte_total_and_by_such_a_version_after(tmp_path):
    directory = str(tmp_path / "cache")
    os.makedirs(directory)
    con = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
    con.executescript(OLD_SCHEMA)
    for i in range(6):
        _old_append(con, f"old-{i}", [b'"' + b"o" * (i + 1) + b'"'] * (1 + i % 2), METAS[i])

    async def go():
        store = DiskStore(directory)
        try:
            await check(store, _raw_counts(directory, 4), top=4)  # no byte columns: read-only path
            # This version appends: the columns are added; old keys keep summing their rows.
            await store.append("old-1", [b'"new sample"', b'"another"'], METAS[1])
            await store.append("new-1", [b'"fresh"'], METAS[0])
            await check(store, _raw_counts(directory, 4), top=4)
            # An earlier version appends again (count and rows, not the byte total).
            _old_append(con, "new-1", [b'"written by an old version, longer"'], METAS[0])
            _old_append(con, "new-2", [b'"old"'], METAS[2])
            await check(store, _raw_counts(directory, 4), top=4)
            # ...and this version once more, to a key whose total is now behind its count.
            await store.append("new-1", [b'"x"'], METAS[0])
            await check(store, _raw_counts(directory, 4), top=4)
        finally:
            store.close()

    asyncio.run(go())
    con.close()


def test_cli_stats_prints_the_totals(tmp_path, capsys):
    directory = str(tmp_path / "cache")
    truth: dict = {}

    async def go():
        store = DiskStore(directory)
        try:
            await fill(store, truth)
        finally:
            store.close()

    asyncio.run(go())
    by_model, largest = brute_totals(truth, 3)
    assert main(["stats", "--cache", directory, "--detail", "--top", "3"]) == 0
    out = capsys.readouterr().out
    samples, size = sum(t[1] for t in by_model.values()), sum(t[2] for t in by_model.values())
    assert f"{len(truth)} keys, {samples} samples, {size:,} bytes" in out
    per_model = {cells[0]: cells[1:] for line in out.splitlines() if line.count("│") == 5
                 for cells in [[c.strip() for c in line.split("│")[1:5]]]}
    assert per_model == {model: [str(keys), str(n), f"{b:,}"] for model, (keys, n, b) in by_model.items()}
    per_key = [[c.strip() for c in line.split("│")[1:5]] for line in out.splitlines() if line.count("│") == 6]
    assert per_key == [[key[:12], truth[key][2], str(n), f"{b:,}"] for key, n, b in largest]


# -- Redis: the sizes come a SCAN batch at a time --------------------------------------------
def test_redis_totals_count_only_this_prefix_and_equal_the_key_by_key_reads(redis_store_factory):
    """Another cache in the same Redis database (prefix ``P:v2``, whose keys start with ``P:``,
    and an unrelated prefix), and this cache's other kinds of keys (meta, ledger, append
    tokens), are not counted; the figures equal a brute-force count and the key-by-key reads
    of the default ``Store.iter_key_sizes``."""
    from cachesaver.stores.base import Store
    from cachesaver.stores.redis import RedisStore

    prefix = redis_store_factory.prefix
    others = [RedisStore(redis_store_factory.url, prefix=prefix + ":v2"),
              RedisStore(redis_store_factory.url, prefix="other-" + prefix)]

    async def go():
        store = redis_store_factory()
        truth: dict = {}
        await fill(store, truth)
        await store.claim("run", "ns", next(iter(truth)), 1, partial=True)  # a ledger key of this cache
        try:
            for other in others:
                await fill(other, {})
                await other.append("only-in-the-other-cache", [b'"x"' * 50], METAS[0])
            await check(store, truth)
            await check(store, truth, top=1000)
            fast = sorted([row async for row in store.iter_key_sizes()])
            slow = sorted([row async for row in Store.iter_key_sizes(store)])
            assert fast == slow and len(fast) == len(truth)
        finally:
            for other in others:
                await other.clear()
                await other.aclose()

    asyncio.run(go())


def test_redis_totals_take_a_round_trip_per_batch_not_three_per_key(redis_store_factory):
    """Stats of N keys: the script load, the SCAN calls over the database, and one pipeline per
    1000 keys. Before: LLEN, LRANGE and GET per key (3N round trips)."""
    import math

    import redis as redis_sync

    from cachesaver.stores.redis import _SCAN_COUNT
    from tests.redis.test_redis_store import count_round_trips

    keys = 2500

    async def go():
        store = redis_store_factory()
        await store.append_many([(f"k{i:05d}", [b'"s%d"' % i] * (1 + i % 3), METAS[i % 4]) for i in range(keys)])
        await store.length("k00000")  # connected: the count below is the stats alone
        with redis_sync.Redis.from_url(redis_store_factory.url) as raw:
            db_keys = raw.dbsize()
        with count_round_trips() as count:
            got = await store.key_totals(5)
        assert (got.keys, got.samples) == (keys, sum(1 + i % 3 for i in range(keys)))
        assert got.largest[0][:2] == ("k00002", 3)
        # SCAN walks the whole table (a power of two >= the keys in the database).
        scans = 2 * math.ceil(db_keys / _SCAN_COUNT) + 2
        assert count[0] <= 1 + math.ceil(keys / _SCAN_COUNT) + scans, (count[0], db_keys)
        await store.clear()

    asyncio.run(go())
