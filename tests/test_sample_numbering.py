"""Issue 26: messages count a key's samples from 1, as ``cachesaver inspect`` (``#1``), the fake
server ("sample 1 of this prompt") and the offline-miss error do. Before, store errors named the
0-based position ("claiming samples 1..2" for the 2nd and 3rd samples, "sample 0 of key ... is not
a CacheSaver record" beside ``inspect``'s ``#1``), and so did the demo ("from sample 0").

The other messages (corrupt records, bundle and import conflicts, unserializable samples) are
checked where their tests trigger them, with the 1-based number."""
from __future__ import annotations

import asyncio
import re
import sqlite3

import pytest

from cachesaver.codec import encode_sample
from cachesaver.errors import StoreError
from cachesaver.stores import DiskStore

K = "k" * 64


def test_a_disk_claim_that_fails_names_the_samples_from_1(tmp_path):
    async def main():
        store = DiskStore(str(tmp_path / "c"), timeout=0.2)
        await store.append(K, [encode_sample(f"s{i}") for i in range(3)], None)
        other = sqlite3.connect(str(tmp_path / "c" / "cache.db"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the timeout
        try:
            with pytest.raises(StoreError, match=f"^claiming samples 2..3 of key {K} in the cache at "):
                await store.claim_at("run", "ns", K, 1, 2)  # positions 1 and 2: the 2nd and 3rd samples
        finally:
            other.execute("ROLLBACK")
            other.close()
        taken = await store.claim_at("run", "ns", K, 1, 2)
        store.close()
        return taken
    assert asyncio.run(main()) == [encode_sample("s1"), encode_sample("s2")]


def test_a_redis_append_of_a_non_record_names_it_from_1(redis_store_factory):
    store = redis_store_factory()

    async def main():
        try:
            with pytest.raises(TypeError, match=f"^sample 2 of 2 appended to key {K} must be bytes"):
                await store.append(K, [encode_sample("ok"), "not bytes"], None)
            return await store.length(K)
        finally:
            await store.aclose()
    assert asyncio.run(main()) == 0


def test_the_demo_says_sample_1(capsys, tmp_path, monkeypatch):
    pytest.importorskip("litellm")
    from cachesaver.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--cache", str(tmp_path / "c"), "--quiet", "--puzzles", "1",
                 "--chart", str(tmp_path / "chart.png")]) == 0
    out = capsys.readouterr().out
    assert "each namespace from sample 1)" in out
    assert not re.search(r"\bsamples? 0\b", out)


def test_an_import_names_the_file_line_samples_from_1(tmp_path):
    """An export line edited to start at the 3rd sample (``"start": 2``), into an empty cache: the
    gap and a garbled record are named from 1, like ``inspect``'s ``#3``."""
    import orjson

    from cachesaver.transfer import TransferError, export_jsonl, import_jsonl

    async def main():
        source = DiskStore(str(tmp_path / "source"))
        await source.append(K, [encode_sample(f"s{i}") for i in range(3)], None)
        source.close()
        await export_jsonl(str(tmp_path / "source"), str(tmp_path / "all.jsonl"))
        header, line = (tmp_path / "all.jsonl").read_bytes().splitlines()
        edited = {**orjson.loads(line), "start": 2}
        (tmp_path / "gap.jsonl").write_bytes(header + b"\n" + orjson.dumps(edited) + b"\n")
        with pytest.raises(TransferError, match=f"^line 2: key {K} continues at sample 3 but .* holds only 0;"):
            await import_jsonl(str(tmp_path / "target"), str(tmp_path / "gap.jsonl"))
        garbled = {**edited, "samples": [edited["samples"][0], "not a record"]}
        (tmp_path / "garbled.jsonl").write_bytes(header + b"\n" + orjson.dumps(garbled) + b"\n")
        with pytest.raises(TransferError, match=f"^line 2: sample 4 of key {K} is not a CacheSaver record"):
            await import_jsonl(str(tmp_path / "target"), str(tmp_path / "garbled.jsonl"))
    asyncio.run(main())


def test_a_redis_bulk_claim_that_fails_names_the_samples_from_1(redis_store_factory):
    """The tick's bulk replay claims (``claim_at_many``) name samples as ``claim_at`` does."""
    import redis as redis_sync

    store = redis_store_factory()
    raw = redis_sync.Redis.from_url(redis_store_factory.url)
    raw.set(store._base(K) + "s", b"not a list")  # the script then fails on this key alone

    async def main():
        try:
            return await store.claim_at_many("run", [("ns", K, 1, 2)])
        finally:
            await store.aclose()
    [failed] = asyncio.run(main())
    raw.close()
    assert isinstance(failed, StoreError)
    assert f" failed while claiming samples 2..3 of key {K} for 'ns'" in str(failed)
