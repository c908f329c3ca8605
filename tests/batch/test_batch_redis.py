"""Batch mode on a Redis store: the journal under the store's prefix, so a fleet of workers on
one Redis records, finds and collects provider batches like processes on one directory."""
from __future__ import annotations

import asyncio

from _helpers import ask_all, texts
from _helpers import QUICK

import cachesaver_litellm
from cachesaver.batchapi.journal import BatchRecord, LineRecord


def test_the_redis_journal_records_finds_takes_over_and_closes(redis_store_factory):
    store = redis_store_factory()
    journal = store.batch_journal()

    async def scenario():
        await journal.add(BatchRecord("b1", "submitting", "host:1:x:a", 10.0, info={"model": "m"}),
                          [LineRecord("b1", "c1", "k1", 2, first=0), LineRecord("b1", "c2", "k2", 3)])
        await journal.update("b1", provider_batch="batch_9", state="submitted")
        [(record, line)] = await journal.open_lines("k1")
        assert (record.provider_batch, record.state, record.info) == ("batch_9", "submitted", {"model": "m"})
        assert (line.custom_id, line.n, line.first, line.state) == ("c1", 2, 0, "open")
        assert await journal.take_over("b1", "someone-else", "me") is False
        assert await journal.take_over("b1", "host:1:x:a", "me") is True
        await journal.close_line("b1", "c1", "stored")
        await journal.close_line("b1", "c1", "lost")  # a closed line stays closed
        assert await journal.open_lines("k1") == []
        [(listed, counts)] = await journal.batches()
        assert listed.owner == "me"
        assert (counts["open"], counts["stored"], counts["samples"], counts["stored_samples"]) == (1, 1, 5, 2)
        await store.aclose()

    asyncio.run(scenario())


def test_batch_mode_on_redis_asks_only_the_missing_samples(batch_server, redis_store_factory):
    url = f"{redis_store_factory.url}?prefix={redis_store_factory.prefix}"
    cachesaver_litellm.register(store=url, timeout=0.02, batch_api=dict(QUICK, window=1.0))
    questions = [f"redis question {i}" for i in range(10)]

    async def run():
        first = await ask_all(batch_server, [(q, "arm-a", 2) for q in questions])
        second = await ask_all(batch_server, [(q, "arm-b", 3) for q in questions])
        return first, second

    first, second = asyncio.run(run())
    assert not [r for r in first + second if isinstance(r, BaseException)], first + second
    assert batch_server.batches.created == 2 and batch_server.request_count == 0
    assert batch_server.batches.line_ns() == [2] * 10 + [1] * 10  # only the missing sample per key
    for a, b in zip(first, second):
        assert texts(b)[:2] == texts(a) and len(set(texts(b))) == 3  # reuse, then one fresh (G1)
    flags = [f for r in first + second for f in r._hidden_params["cachesaver"]["cached"]]
    assert flags.count(False) == batch_server.batches.samples_generated == 30  # G8
    [journal_view] = [cachesaver_litellm.get_pipeline().store.batch_journal()]
    listed = asyncio.run(_batches(journal_view))
    assert len(listed) == 2 and all(counts["stored"] == 10 and counts["open"] == 0 for _, counts in listed)


async def _batches(journal):
    return await journal.batches()
