"""A cache directory deleted or replaced while the process runs (issue 22, item 3).

SQLite keeps writing into a database file that was unlinked: before the fix, every miss after
``rm -rf`` of the directory was paid for, reported as stored, and lost with the file at exit
(5 misses, 0 errors). Now the first write after it fails with a StoreError naming the directory
and the fix, before the model is called; samples already read stay readable.
"""
from __future__ import annotations

import shutil

import pytest

from cachesaver.errors import StoreError
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import DiskStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request


def req(prompt: str, ns: str = "a") -> Request:
    return Request(prompt=prompt, n=1, namespace=ns)


@pytest.mark.parametrize("replaced", [False, True], ids=["deleted", "replaced"])
async def test_a_miss_after_the_directory_went_away_fails_before_the_model_is_called(tmp_path, replaced):
    directory = tmp_path / "cache"
    model = FakeModel()
    async with OnlineAPI(model=model, cache=str(directory), timeout=0) as pipe:
        first = await pipe.request(req("one"))
        shutil.rmtree(directory)
        if replaced:  # someone else starts a new cache at the same path
            other = DiskStore(str(directory))
            await other.append("k", [b'{"x": 1}'])
            other.close()
        for prompt in ("two", "three"):  # every later miss fails, none is paid for
            with pytest.raises(StoreError) as info:
                await pipe.request(req(prompt))
            assert str(directory) in str(info.value) and "deleted or replaced" in str(info.value)
            assert "Open the store again" in str(info.value)
        # What the open connection already holds is still served (a hit writes nothing).
        again = await pipe.request(req("one", ns="b"))
    assert again.data == first.data
    assert model.call_count == 1 and pipe.stats.model_calls == 1
    assert directory.exists() == replaced  # a deleted directory was not silently recreated


def test_a_write_after_the_directory_was_deleted_is_refused(tmp_path):
    """Any write transaction (here a key deletion) checks, not only generations."""
    import asyncio

    directory = tmp_path / "cache"
    store = DiskStore(str(directory))
    asyncio.run(store.append("k", [b'{"x": 1}']))
    shutil.rmtree(directory)
    with pytest.raises(StoreError, match="deleted or replaced"):
        asyncio.run(store.append("k", [b'{"x": 2}']))
    store.close()
    assert not directory.exists()
