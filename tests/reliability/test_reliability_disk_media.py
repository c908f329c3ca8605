"""Full, read-only and corrupt disk stores (issue 12, item 4).

A full disk: the first failed append reaches its callers as a StoreError naming the path and
the fix; from then on misses fail at once, before any model call, instead of paying for samples
that cannot be kept; hits still replay. A read-only directory opens without writing anything,
replays what it holds, and fails clearly (and for free) only on a miss. A garbage or truncated
``cache.db`` is a StoreError, and the CLI prints one line and exits 2.

Real media where the machine allows it: a small tmpfs (full), remounted read-only. Without the
privilege to mount, SQLite's ``max_page_count`` makes the file full, and ``read_only=True``
stands in for the read-only mount.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid

import pytest

from cachesaver.cli import main as cli
from cachesaver.errors import StoreError
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import DiskStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request


async def run_cli(argv: list) -> int:
    return await asyncio.to_thread(cli, argv)  # the CLI runs its own event loop


def req(prompt: str, ns: str = "A", n: int = 1) -> Request:
    return Request(prompt=prompt, n=n, request_id=f"{ns}-{prompt}", namespace=ns)


@contextlib.contextmanager
def tmpfs(tmp_path, size: str):
    """A real small tmpfs, or None where this process may not mount one."""
    where = tmp_path / f"mnt-{uuid.uuid4().hex[:8]}"
    where.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                        capture_output=True).returncode == 0 if os.geteuid() == 0 else False
    try:
        yield where if ok else None
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


async def _fill_until_full(directory: str, model: FakeModel, shrink=None):
    """Ask distinct prompts in batches of 8 until the store fails; return what happened."""
    ok, errors = [], []
    async with OnlineAPI(model=model, cache=directory, batch_size=8, timeout=0.001) as p:
        if shrink is not None:
            await p.request(req("first"))
            ok.append("first")
            shrink(p.store)
        for round_ in range(200):
            prompts = [f"prompt {round_}-{i}" for i in range(8)]
            results = await asyncio.gather(*(p.request(req(q)) for q in prompts), return_exceptions=True)
            for q, r in zip(prompts, results):
                (errors if isinstance(r, BaseException) else ok).append((q, r))
            if errors:
                break
        assert errors, "the store never filled up"
        paid_at_failure = model.samples_generated
        # From now on a miss fails at once: no model call, the same clear error.
        for i in range(20):
            with pytest.raises(StoreError, match="full") as info:
                await p.request(req(f"after {i}"))
            assert directory in str(info.value)
        assert model.samples_generated == paid_at_failure
        # What is stored still replays.
        hit = await p.request(Request(prompt=ok[-1][0] if isinstance(ok[-1], tuple) else "first", n=1,
                                      request_id="replay", namespace="B"))
        assert hit.cached == [False] or hit.cached == [True]
        assert model.samples_generated == paid_at_failure
    return ok, errors, paid_at_failure


async def test_a_full_disk_fails_clearly_and_stops_paying(tmp_path):
    model = FakeModel(answers=["y" * 20_000])
    with tmpfs(tmp_path, "400k") as mount:
        if mount is not None:
            directory = str(mount / "cache")
            ok, errors, paid = await _fill_until_full(directory, model)
        else:  # no mount privilege: make the SQLite file full instead
            directory = str(tmp_path / "cache")

            def shrink(store):
                con = store._connect(create=True)
                con.execute(f"PRAGMA max_page_count = {con.execute('PRAGMA page_count').fetchone()[0] + 40}")

            ok, errors, paid = await _fill_until_full(directory, model, shrink)
    err = errors[0][1]
    assert isinstance(err, StoreError) and "full" in str(err) and "free space" in str(err)
    assert "OperationalError" in str(err)  # the cause is named, not hidden
    # Only the one batch that hit the full disk was paid and lost; nothing after it.
    assert paid - len(ok) <= 8


async def test_a_fresh_directory_on_a_full_disk_fails_before_the_model_call(tmp_path):
    # The database is created when the first generation takes its lease, before the model
    # call: a directory that cannot hold it costs nothing (it used to pay for the sample first).
    with tmpfs(tmp_path, "8k") as mount:
        if mount is None:
            pytest.skip("needs the privilege to mount a small tmpfs")
        directory = str(mount / "cache")
        model = FakeModel()
        async with OnlineAPI(model=model, cache=directory, batch_size=4, timeout=0.001) as p:
            for i in range(3):
                with pytest.raises(StoreError, match="the disk is full") as info:
                    await p.request(req(f"first {i}"))
                assert directory in str(info.value)
        assert model.call_count == 0


async def _write_cache(directory: str) -> None:
    async with OnlineAPI(model=FakeModel(), cache=directory, batch_size=1, timeout=0) as p:
        for i in range(5):
            await p.request(req(f"q{i}", n=2))


async def _replay_read_only(directory: str, **kwargs) -> None:
    store = DiskStore(directory, **kwargs)
    assert store.read_only
    model = FakeModel()
    async with OnlineAPI(model=model, cache=store, batch_size=4, timeout=0.001) as p:
        for i in range(5):
            r = await p.request(req(f"q{i}", ns="replay", n=2))
            assert r.cached == [True, True] and len(r.data) == 2
        with pytest.raises(StoreError, match="read-only") as info:
            await p.request(req("a new prompt"))
        assert directory in str(info.value)
        with pytest.raises(StoreError, match="read-only"):
            await p.request(req("q0", ns="replay", n=1))  # a 3rd sample of q0 would be a miss
    assert model.call_count == 0  # nothing was paid for
    store.close()


async def test_a_read_only_cache_replays_and_fails_only_on_a_miss(tmp_path):
    with tmpfs(tmp_path, "4m") as mount:
        if mount is not None:
            directory = str(mount / "cache")
            await _write_cache(directory)
            before = sorted(os.listdir(directory))
            assert subprocess.run(["mount", "-o", "remount,ro", str(mount)]).returncode == 0
            await _replay_read_only(directory)  # detected: nothing passed
            assert await run_cli(["stats", "--cache", directory]) == 0
            assert sorted(os.listdir(directory)) == before
            return
    directory = str(tmp_path / "cache")
    await _write_cache(directory)
    await _replay_read_only(directory, read_only=True)


def _mtimes(directory: str) -> dict:
    return {name: (os.stat(os.path.join(directory, name)).st_mtime_ns, os.path.getsize(os.path.join(directory, name)))
            for name in sorted(os.listdir(directory))}


async def test_read_only_commands_change_nothing(tmp_path, capsys):
    """stats, inspect and export leave every file of the cache as it was (issue 12, item 2)."""
    import diskcache

    directory = str(tmp_path / "user")
    with diskcache.Cache(directory, size_limit=50_000, eviction_policy="least-recently-used") as user:
        user.set("mine", b"x")
        await _write_cache(directory)
    before = _mtimes(directory)
    assert await run_cli(["stats", "--cache", directory]) == 0
    assert await run_cli(["inspect", "--cache", directory, "--prompt", "q1"]) == 0
    assert await run_cli(["export", "--cache", directory, str(tmp_path / "out.jsonl")]) == 0
    capsys.readouterr()
    assert _mtimes(directory) == before
    with diskcache.Cache(directory) as user:  # the user's settings are theirs
        assert user.eviction_policy == "least-recently-used" and user.size_limit == 50_000


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
async def test_a_corrupt_cache_db_is_a_store_error_and_the_cli_exits_2(damage, tmp_path, capsys):
    directory = str(tmp_path / "cache")
    await _write_cache(directory)
    path = os.path.join(directory, "cache.db")
    if damage == "garbage":
        with open(path, "wb") as fh:
            fh.write(b"this is not a database at all" * 100)
    else:
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) // 3)
    with pytest.raises(StoreError) as info:
        store = DiskStore(directory)
        await store.read("k" * 64, 0, 1)
        async for _ in store.iter_keys():
            pass
    assert path in str(info.value) and "backup" in str(info.value)
    capsys.readouterr()
    assert await run_cli(["stats", "--cache", directory]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and path in out.err
    assert "Traceback" not in out.err
