"""Imports write all keys or none: one conflicting key among ten leaves the target untouched.

``cachesaver import`` (``import_jsonl``) and ``cachesaver bundle import`` (``import_bundle``)
first check every line against the target without writing, then write. Before, the nine keys
sorted ahead of the conflicting one were written before the conflict was raised.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import os

import pytest

from cachesaver import OnlineAPI, Request
from cachesaver.bundle import import_bundle, write_bundle
from cachesaver.cli import main
from cachesaver.stores import MemoryStore
from cachesaver.testing import FakeModel
from cachesaver.transfer import TransferConflictError, TransferError, export_jsonl, import_jsonl

PROMPTS = [f"question {i}" for i in range(10)]


def _fill(directory: str, prompts, seed: int):
    async def go():
        async with OnlineAPI(model=FakeModel(seed=seed), model_id="fake/m", cache=directory, timeout=0.001) as p:
            for prompt in prompts:
                await p.request(Request(prompt=prompt, n=2, namespace="ns"))
            return await p.consumption()
    return asyncio.run(go())


def _files(directory: str) -> dict[str, str]:
    """Every regular file of a disk store (``cache.db`` and its journal) by SHA-256."""
    out = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                out[name] = hashlib.sha256(fh.read()).hexdigest()
    assert "cache.db" in out
    return out


@pytest.fixture
def diverged(tmp_path):
    """A source cache of 10 keys, and a target holding the *last* of them (in key order, so it is
    imported last) with other samples: a conflict at sample 0 of that key."""
    source, target = str(tmp_path / "source"), str(tmp_path / "target")
    consumption = _fill(source, PROMPTS, seed=1)
    keys = sorted(consumption["ns"])
    assert len(keys) == 10
    last = keys[-1]
    prompt = next(p for p in PROMPTS if _fill(str(tmp_path / "probe" / p), [p], seed=1)["ns"].keys() == {last})
    _fill(target, [prompt], seed=2)
    return source, target, consumption, last


def test_cli_import_with_one_conflicting_key_writes_none_of_the_ten(tmp_path, diverged, capsys):
    source, target, _, conflicting = diverged
    export = str(tmp_path / "source.jsonl")
    assert main(["export", "--cache", source, export]) == 0
    before = _files(target)
    assert main(["import", "--cache", target, export]) == 1
    assert _files(target) == before  # byte-identical: 0 of 10 keys written
    err = capsys.readouterr().err
    assert f"sample 1 of key {conflicting} differs" in err and "Nothing was imported" in err


def test_bundle_import_with_one_conflicting_key_writes_none_of_the_ten(tmp_path, diverged, capsys):
    source, target, consumption, conflicting = diverged
    bundle = tmp_path / "source.csbundle"
    asyncio.run(write_bundle(source, consumption, bundle))
    before = _files(target)
    with pytest.raises(TransferConflictError) as refused:
        asyncio.run(import_bundle(bundle, target))
    assert _files(target) == before
    assert f"sample 1 of key {conflicting} differs" in str(refused.value)
    assert "Nothing was imported" in str(refused.value)
    assert main(["bundle", "import", str(bundle), "--cache", target]) == 1
    assert f"key {conflicting}" in capsys.readouterr().err
    assert _files(target) == before


def test_a_bad_last_line_of_a_stream_writes_nothing(tmp_path):
    """The file is read twice (a stream is spooled): a malformed line anywhere refuses it all."""
    source = str(tmp_path / "source")
    _fill(source, PROMPTS[:3], seed=1)
    buffer = io.BytesIO()
    asyncio.run(export_jsonl(source, buffer))
    good = buffer.getvalue()
    target = MemoryStore()

    async def keys():
        return [k async for k in target.iter_keys()]

    with pytest.raises(TransferError, match="line 5: 'key' must be a non-empty string"):
        asyncio.run(import_jsonl(target, io.BytesIO(good + b'{"key": "", "samples": []}\n')))
    assert asyncio.run(keys()) == []
    report = asyncio.run(import_jsonl(target, io.BytesIO(good)))  # the same stream, whole: all of it
    assert (report.keys, report.samples_added) == (3, 6) and len(asyncio.run(keys())) == 3


def test_a_key_given_twice_by_one_file_is_refused_before_writing(tmp_path):
    source = str(tmp_path / "source")
    _fill(source, PROMPTS[:1], seed=1)
    buffer = io.StringIO()
    asyncio.run(export_jsonl(source, buffer))
    header, line = buffer.getvalue().splitlines()
    target = MemoryStore()
    with pytest.raises(TransferError, match="samples from 0 on were already given by an earlier line"):
        asyncio.run(import_jsonl(target, io.StringIO("\n".join([header, line, line.replace('"d":"', '"d":"X')]))))
    assert asyncio.run(target.length(next(iter(asyncio.run(_keys(source)))))) == 0


async def _keys(directory):
    from cachesaver.stores import DiskStore

    store = DiskStore(directory)
    try:
        return [k async for k in store.iter_keys()]
    finally:
        await store.aclose()
