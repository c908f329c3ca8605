"""``cachesaver bundle create|merge|import`` and ``stats``/``inspect`` on a bundle, in-process."""
from __future__ import annotations

import asyncio

from cachesaver import OnlineAPI, Request
from cachesaver.bundle import Consumption, read_bundle
from cachesaver.cli import main
from cachesaver.testing import FakeModel


def test_create_from_a_shared_run_and_from_a_saved_consumption(tmp_path, capsys):
    cache = str(tmp_path / "c")

    async def run():
        async with OnlineAPI(model=FakeModel(), cache=cache, run_id="paper-run", timeout=0.001) as p:
            await p.request(Request(prompt="a", n=2, namespace="x"))
            await p.request(Request(prompt="b", n=1, namespace="y"))
        async with OnlineAPI(model=FakeModel(), cache=cache, timeout=0.001) as p:  # private run
            await p.request(Request(prompt="c", n=3, namespace="z"))
            (await p.consumption()).save(tmp_path / "private.json")
    asyncio.run(run())

    assert main(["bundle", "create", "--cache", cache, "--run-id", "paper-run", "-o", str(tmp_path / "s.csbundle")]) == 0
    out = capsys.readouterr().out
    assert "2 keys, 3 samples" in out and "sha256 " in out
    shared = read_bundle(tmp_path / "s.csbundle")
    assert shared.consumption.run_ids == ["paper-run"] and set(shared.consumption) == {"x", "y"}

    assert main(["bundle", "create", "--cache", cache, "--consumption", str(tmp_path / "private.json"),
                 "-o", str(tmp_path / "p.csbundle")]) == 0
    assert read_bundle(tmp_path / "p.csbundle").sample_count == 3
    assert Consumption.load(tmp_path / "private.json").samples == 3

    assert main(["bundle", "create", "--cache", cache, "--run-id", "nope", "-o", str(tmp_path / "n.csbundle")]) == 1
    assert "no ledger rows for run_id 'nope'" in capsys.readouterr().err
    assert main(["bundle", "create", "--cache", cache, "-o", str(tmp_path / "n.csbundle")]) == 2

    assert main(["bundle", "merge", str(tmp_path / "s.csbundle"), str(tmp_path / "p.csbundle"),
                 "-o", str(tmp_path / "all.csbundle")]) == 0
    merged = read_bundle(tmp_path / "all.csbundle")
    assert merged.sample_count == 6 and set(merged.consumption) == {"x", "y", "z"}
    capsys.readouterr()

    assert main(["stats", "--cache", str(tmp_path / "all.csbundle")]) == 0
    assert "3 keys, 6 samples" in capsys.readouterr().out
    assert main(["inspect", "--cache", str(tmp_path / "all.csbundle"), "--prompt", "c"]) == 0
    assert "#2" in capsys.readouterr().out

    assert main(["bundle", "import", str(tmp_path / "all.csbundle"), "--cache", str(tmp_path / "fresh")]) == 0
    assert "6 samples added" in capsys.readouterr().out
    assert main(["bundle", "import", str(tmp_path / "all.csbundle"), "--cache", str(tmp_path / "fresh")]) == 0
    assert "0 samples added, 6 already present" in capsys.readouterr().out
    # A bundle is read-only: clearing it through the CLI is refused and changes nothing.
    before = (tmp_path / "all.csbundle").read_bytes()
    assert main(["clear", "--cache", str(tmp_path / "all.csbundle"), "--yes"]) == 2  # a store error: one line, exit 2
    assert "read-only" in capsys.readouterr().err
    assert (tmp_path / "all.csbundle").read_bytes() == before
