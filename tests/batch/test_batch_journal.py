"""What every store's batch journal keeps per line for `cachesaver batches`: the request JSON
(to store a collected answer as the engine would), the estimated cost of an open line and the
billed cost of a stored one."""
from __future__ import annotations

import asyncio
import sqlite3

from cachesaver.batchapi.journal import BatchRecord, LineRecord
from cachesaver.stores import DiskStore


def test_lines_keep_request_estimate_and_billed_cost(make_store):
    store = make_store()
    journal = store.batch_journal()

    async def scenario():
        await journal.add(BatchRecord("b1", "submitted", "host:1:x:a", 10.0, provider_batch="batch_1"), [
            LineRecord("b1", "c1", "k1", 2, first=0, meta=b'{"prompt":"one"}', estimate=1.25e-05),
            LineRecord("b1", "c2", "k2", 3, first=4, meta=b'{"prompt":"two"}', estimate=2.5e-05),
            LineRecord("b1", "c3", "k3", 1)])
        [(_, counts)] = await journal.batches()
        assert (counts["open"], counts["pending"], counts["unestimated"], counts["billed"]) == (3, 1.25e-05 + 2.5e-05, 1, 0)
        await journal.close_line("b1", "c1", "stored", 1.0000000000000002e-05)  # kept to the last digit
        await journal.close_line("b1", "c2", "failed")
        await journal.close_line("b1", "c1", "lost", 9.0)  # a closed line stays as it is
        lines = await journal.lines("b1")
        assert [(ln.custom_id, ln.key, ln.n, ln.state, ln.first, ln.meta, ln.estimate, ln.cost) for ln in lines] == [
            ("c1", "k1", 2, "stored", 0, b'{"prompt":"one"}', 1.25e-05, 1.0000000000000002e-05),
            ("c2", "k2", 3, "failed", 4, b'{"prompt":"two"}', 2.5e-05, None),
            ("c3", "k3", 1, "open", -1, None, None, None)]
        [(_, counts)] = await journal.batches()
        assert (counts["stored"], counts["failed"], counts["open"]) == (1, 1, 1)
        assert (counts["billed"], counts["pending"], counts["unestimated"]) == (1.0000000000000002e-05, 0.0, 1)
        await store.aclose()

    asyncio.run(scenario())


def test_a_journal_written_before_the_cost_columns_is_read_and_extended(tmp_path):
    """A directory store whose line table predates the request/estimate/cost columns: listed
    as it is (no estimate, no cost), and extended by the next batch written."""
    path = str(tmp_path / "store")
    store = DiskStore(path)
    asyncio.run(store.append("k", [b'{"v":1}']))  # the store's own tables
    store.close()
    con = sqlite3.connect(f"{path}/cache.db")
    con.execute("CREATE TABLE cachesaver_batches (id TEXT PRIMARY KEY, state TEXT NOT NULL, owner TEXT NOT NULL, "
                "created REAL NOT NULL, provider_batch TEXT, input_file TEXT, info TEXT NOT NULL)")
    con.execute("CREATE TABLE cachesaver_batch_lines (batch TEXT NOT NULL, custom_id TEXT NOT NULL, key TEXT NOT NULL, "
                "n INTEGER NOT NULL, state TEXT NOT NULL, first INTEGER NOT NULL DEFAULT -1, "
                "PRIMARY KEY (batch, custom_id))")
    con.execute("INSERT INTO cachesaver_batches VALUES ('old', 'submitted', 'h:1:x:a', 1.0, 'batch_0', NULL, '{}')")
    con.execute("INSERT INTO cachesaver_batch_lines VALUES ('old', 'c0', 'k0', 2, 'open', 0)")
    con.commit()
    con.close()

    async def scenario():
        store = DiskStore(path)
        journal = store.batch_journal()
        [(record, counts)] = await journal.batches()
        assert record.id == "old" and (counts["open"], counts["unestimated"], counts["pending"]) == (1, 1, 0.0)
        [line] = await journal.lines("old")
        assert (line.key, line.meta, line.estimate, line.cost) == ("k0", None, None, None)
        await journal.close_line("old", "c0", "stored", 0.25)  # (adds the columns)
        await journal.add(BatchRecord("new", "submitted", "h:1:x:a", 2.0),
                          [LineRecord("new", "c1", "k1", 1, meta=b"{}", estimate=0.5)])
        listed = {record.id: counts for record, counts in await journal.batches()}
        assert (listed["new"]["pending"], listed["old"]["billed"]) == (0.5, 0.25)
        assert (await journal.lines("new"))[0].meta == b"{}"
        await store.aclose()

    asyncio.run(scenario())


def test_a_collector_of_another_host_is_gone_once_it_stops_renewing_its_liveness_on_redis(redis_store_factory):
    import time

    from cachesaver.batchapi.journal import collector_gone, owner_token
    from cachesaver.stores.redis import RedisStore

    store = RedisStore(redis_store_factory.url, prefix=redis_store_factory.prefix, lease_ttl=0.3)
    journal = store.batch_journal()
    me, other = owner_token("me"), "another-host:4242:boot:x"

    async def scenario():
        assert await collector_gone(journal, other, me)  # never said it was alive
        await journal.heartbeat(other)
        assert not await collector_gone(journal, other, me) and await journal.alive(other)
        time.sleep(0.4)
        assert await collector_gone(journal, other, me)  # stopped renewing for longer than lease_ttl
        await store.aclose()

    asyncio.run(scenario())


def test_other_stores_leave_a_batch_of_another_host_to_it(tmp_path):
    """A directory store is shared by the processes of one host (SQLite needs a local file
    system): a batch recorded from another host is never taken from it."""
    from cachesaver.batchapi.journal import MemoryJournal, collector_gone, owner_token

    disk = DiskStore(str(tmp_path / "s"))

    async def scenario():
        for journal in (MemoryJournal(), disk.batch_journal()):
            assert not await collector_gone(journal, "another-host:4242:boot:x", owner_token("me"))

    asyncio.run(scenario())
    disk.close()
