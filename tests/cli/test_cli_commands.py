"""Every cache command on a real disk cache, error cases included; nothing written by reads."""
from __future__ import annotations

import asyncio
import json
import os

import pytest

from cachesaver.cli import main
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import DiskStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

from _disk_rows import set_sample


@pytest.fixture
def cache(tmp_path):
    directory = str(tmp_path / "cache")

    async def fill():
        async with OnlineAPI(model=FakeModel(seed=1), cache=directory, run_id="exp-1") as p:
            for i in range(4):
                await p.request(Request(prompt=f"What is {i} + {i}?", n=3, namespace=f"ns{i % 2}", request_id=str(i)))

    asyncio.run(fill())
    return directory


def snapshot(directory):
    return sorted((name, os.path.getsize(os.path.join(directory, name))) for name in os.listdir(directory))


def keys_of(directory):
    store = DiskStore(directory)

    async def go():
        return [k async for k in store.iter_keys()]

    try:
        return asyncio.run(go())
    finally:
        store.close()


def test_stats_summarises_and_details_on_request(cache, capsys):
    assert main(["stats", "--cache", cache]) == 0
    out = capsys.readouterr().out
    assert "4 keys, 12 samples" in out
    assert "shared-run ledgers: 1 run, 2 namespaces, 12 samples consumed (2 run × namespace ledgers" in out
    assert "ns0" not in out and "What is" not in out  # detail only on request
    assert len(out.strip().splitlines()) <= 12
    assert main(["stats", "--cache", cache, "--by-run"]) == 0
    out = capsys.readouterr().out
    assert "exp-1" in out and "ns0" in out and "ns1" in out
    assert main(["stats", "--cache", cache, "--detail"]) == 0
    out = capsys.readouterr().out
    assert "What is 3 + 3?" in out and "ns0" not in out


def test_inspect_by_prompt_and_prefix(cache, capsys):
    assert main(["inspect", "--cache", cache, "--prompt", "2 + 2"]) == 0
    out = capsys.readouterr().out
    assert out.count("#1 ") == 1 and "#3 " in out and "#0 " not in out and "prompt: What is 2 + 2?" in out
    key = keys_of(cache)[0]
    assert main(["inspect", "--cache", cache, key[:10]]) == 0
    assert key in capsys.readouterr().out
    assert main(["inspect", "--cache", cache, "zzzz"]) == 2
    assert main(["inspect", "--cache", cache]) == 2


def test_export_import_round_trip_never_duplicates(cache, tmp_path, capsys):
    dump = str(tmp_path / "dump.jsonl")
    assert main(["export", "--cache", cache, dump, "--ledgers"]) == 0
    lines = [json.loads(line) for line in open(dump)]
    assert lines[0]["format"] == "cachesaver-jsonl"
    target = str(tmp_path / "copy")
    assert main(["import", "--cache", target, dump]) == 0
    assert main(["import", "--cache", target, dump]) == 0
    out = capsys.readouterr().out
    assert "12 samples added" in out and "0 samples added, 12 already present" in out
    dump2 = str(tmp_path / "dump2.jsonl")
    assert main(["export", "--cache", target, dump2, "--ledgers"]) == 0
    assert open(dump, "rb").read() == open(dump2, "rb").read()
    assert main(["import", "--cache", target, str(tmp_path / "missing.jsonl")]) == 2


def test_prune_and_clear(cache, capsys):
    keys = keys_of(cache)
    before = snapshot(cache)
    assert main(["prune", "--cache", cache, "--key", keys[0][:8], "--dry-run"]) == 0
    assert "would remove 1 keys" in capsys.readouterr().out
    assert keys_of(cache) == keys
    assert main(["prune", "--cache", cache, "--key", keys[0][:8]]) == 0
    assert sorted(keys_of(cache)) == sorted(keys[1:])
    assert main(["prune", "--cache", cache]) == 2  # says what to prune
    assert main(["clear", "--cache", cache]) == 2  # needs --yes
    assert keys_of(cache) != []
    assert main(["clear", "--cache", cache, "--yes"]) == 0
    assert keys_of(cache) == []
    assert before  # the directory existed all along


def test_prune_corrupt_removes_only_planted_garbage(cache, capsys):
    keys = keys_of(cache)
    set_sample(cache, keys[1], 0, b"\x00garbage")
    assert main(["inspect", "--cache", cache, keys[1][:12]]) == 0
    # shown, named, no crash; the error counts from 1 as the listing does (issue 26)
    assert f"#1 (unreadable) sample 1 of key {keys[1]} is not a CacheSaver record" in capsys.readouterr().out
    assert main(["prune", "--cache", cache, "--corrupt"]) == 0
    assert sorted(keys_of(cache)) == sorted(k for k in keys if k != keys[1])


def test_missing_and_foreign_directories_are_errors_and_stay_untouched(tmp_path, capsys):
    missing = str(tmp_path / "nope")
    for command in (["stats"], ["inspect", "abc"], ["export", str(tmp_path / "x.jsonl")], ["prune", "--corrupt"], ["clear", "--yes"]):
        assert main([command[0], "--cache", missing, *command[1:]]) == 2
        assert "nothing was created" in capsys.readouterr().err
    assert not os.path.exists(missing) and not os.path.exists(tmp_path / "x.jsonl")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    assert main(["stats", "--cache", str(foreign)]) == 2
    assert "not a CacheSaver cache" in capsys.readouterr().err
    assert os.listdir(foreign) == ["notes.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["stats", "--cache", str(afile)]) == 2


def test_serve_fake_parser_and_module_entry_point():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "cachesaver", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("demo", "stats", "inspect", "export", "import", "prune", "clear", "serve-fake"):
        assert command in out.stdout
