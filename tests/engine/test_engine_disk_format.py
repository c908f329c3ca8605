"""The disk store's per-row overhead: tables of small identity rows keep each row once.

A rowid table with a text ``PRIMARY KEY`` stores every row twice (the table and an automatic
index holding the same key columns); ``WITHOUT ROWID`` stores it once. It is used for the tables
whose rows are short (ledger positions, request-id positions, holes, billing records), never for
samples or key rows, whose values and metas can be kilobytes (a ``WITHOUT ROWID`` row spills to an
overflow page above ~1 kB of a 4 kB page). A store created by an earlier version keeps its rowid
tables, and both layouts answer the same statements the same way.
"""
from __future__ import annotations

import os
import sqlite3

from cachesaver.codec import encode_sample
from cachesaver.stores import DiskStore

K = "k" * 64
IDENTITY_TABLES = ("cachesaver_ledger", "cachesaver_ids", "cachesaver_holes", "cachesaver_unbilled")
#: The tables as versions before this layout created them (rowid tables).
OLD_LAYOUT = (
    "CREATE TABLE cachesaver_ledger (run TEXT NOT NULL, ns TEXT NOT NULL, key TEXT NOT NULL, "
    "pos INTEGER NOT NULL, PRIMARY KEY (run, ns, key))",
    "CREATE TABLE cachesaver_ids (key TEXT NOT NULL, ns TEXT NOT NULL, rid TEXT NOT NULL, "
    "pos INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (key, ns, rid))",
    "CREATE TABLE cachesaver_holes (run TEXT NOT NULL, ns TEXT NOT NULL, key TEXT NOT NULL, "
    "pos INTEGER NOT NULL, PRIMARY KEY (run, ns, key, pos))",
    "CREATE TABLE cachesaver_unbilled (run TEXT NOT NULL, key TEXT NOT NULL, "
    "idx INTEGER NOT NULL, PRIMARY KEY (run, key, idx))",
)


def rec(i: int) -> bytes:
    return encode_sample(f"sample-{i}", 1, 2, 0.5)


async def exercise(store: DiskStore) -> dict:
    """Writes a row to each identity table through the store's own calls; returns what it read."""
    await store.append(K, [rec(0), rec(1), rec(2), rec(3)], unbilled_run="run")
    store.record_id_positions_now([("ns", K, "r1", 0, 2), ("ns", K, "r2", 2, 1)])
    first = await store.claim_billed("run", "ns", K, 1)   # reads and ends a billing record
    later = await store.claim_at("run", "ns", K, 2, 1)   # leaves position 1 as a hole
    hole = await store.claim_at("run", "ns", K, 1, 1)    # fills it
    return {"ids": store.id_positions_now(K), "first": first, "later": later, "hole": hole,
            "ledger": sorted([tuple(e) async for e in store.iter_ledger()])}


def autoindexed(directory: str) -> set[str]:
    con = sqlite3.connect(os.path.join(directory, "cache.db"))
    try:
        return {t for (t,) in con.execute(
            "SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name LIKE 'sqlite_autoindex_%'")}
    finally:
        con.close()


async def test_a_new_store_keeps_each_identity_row_once(tmp_path):
    store = DiskStore(str(tmp_path))
    try:
        await exercise(store)
    finally:
        store.close()
    con = sqlite3.connect(os.path.join(tmp_path, "cache.db"))
    created = {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert set(IDENTITY_TABLES) <= created
    # Only the sample and key tables keep a second copy of their keys (their rows can be large).
    assert autoindexed(str(tmp_path)) == {"cachesaver_samples", "cachesaver_keys"}


async def test_a_store_in_the_earlier_rowid_layout_reads_and_writes_the_same(tmp_path):
    new_dir, old_dir = tmp_path / "new", tmp_path / "old"
    for directory in (new_dir, old_dir):
        directory.mkdir()
    store = DiskStore(str(old_dir))
    store.close()
    con = sqlite3.connect(os.path.join(old_dir, "cache.db"))
    con.execute("DROP TABLE IF EXISTS cachesaver_ledger")
    for statement in OLD_LAYOUT:
        con.execute(statement)
    con.commit()
    con.close()
    results = {}
    for name, directory in (("new", new_dir), ("old", old_dir)):
        store = DiskStore(str(directory))
        try:
            results[name] = await exercise(store)
        finally:
            store.close()
    assert results["old"] == results["new"]
    assert results["new"]["ids"] == {("ns", "r1"): (0, 2), ("ns", "r2"): (2, 1)}
    assert results["new"]["first"] == (0, [rec(0)], [0])
    assert results["new"]["hole"] == [rec(1)] and results["new"]["later"] == [rec(2)]
    assert set(IDENTITY_TABLES) <= autoindexed(str(old_dir))   # left in its own layout
