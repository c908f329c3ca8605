"""A bundle counts what each recorded run consumed, also where runs reuse namespace names.

Issue 22, item 2: a bundle of three demo runs that share namespace names reported 297 samples
consumed where the runs consumed 415 (``stats`` said 415), because the runs' consumption was
merged slot by slot (the most any run consumed), which is what a replay needs but not what the
runs would have paid without a cache. Now each run is kept (manifest version 2,
``consumption.runs``) and the "without a cache" figures are summed over runs.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import zipfile

from cachesaver import OnlineAPI
from cachesaver.bundle import Consumption, consumption_of_runs, merge_bundles, read_bundle, write_bundle
from cachesaver.bundle import format as bundle_format
from cachesaver.stores import DiskStore
from cachesaver.testing import FakeModel

from _experiment import run_experiment


def _record(tmp_path):
    """Two shared runs of one experiment on one cache, in the same two namespaces: the second
    run replays the first (0 model calls) but, without a cache, would have paid again."""
    model = FakeModel(seed=5)
    cache = str(tmp_path / "cache")

    async def main():
        for run_id in ("run-1", "run-2"):
            async with OnlineAPI(model=model, cache=cache, timeout=0.005, run_id=run_id) as pipeline:
                for namespace in ("arm-a", "arm-b"):
                    await run_experiment(pipeline, namespace)
                stats = pipeline.stats
        return stats

    asyncio.run(main())
    return cache, model


async def _bundle(cache, run_ids, path):
    store = DiskStore(cache)
    try:
        consumption = await consumption_of_runs(store, run_ids)
        await write_bundle(store, consumption, path)
    finally:
        store.close()
    return consumption


def test_runs_sharing_namespace_names_are_each_counted(tmp_path):
    cache, model = _record(tmp_path)
    one = asyncio.run(_bundle(cache, ["run-1"], tmp_path / "one.csbundle"))
    both = asyncio.run(_bundle(cache, ["run-1", "run-2"], tmp_path / "both.csbundle"))
    assert set(both.runs) == {"run-1", "run-2"} and both.runs["run-1"] == both.runs["run-2"] == dict(one)
    assert dict(both) == dict(one)  # a replay of both needs exactly what one run consumed

    single = read_bundle(tmp_path / "one.csbundle").summary
    summary = read_bundle(tmp_path / "both.csbundle").summary
    # Each run handed out 2 namespaces x (6 prompts x 2 + 6 follow-ups) = 36 samples.
    assert single["consumed_samples"] == 36
    assert summary["consumed_samples"] == 72  # before: 36, the re-run left out
    assert summary["consumed_cost"] == round(2 * single["consumed_cost"], 9) > 0
    assert summary["samples"] == single["samples"] == model.samples_generated  # stored once
    assert summary["namespaces"]["arm-a"]["samples"] == 36

    # Merging one bundle per run counts both runs; merging a bundle with itself counts it once.
    asyncio.run(_bundle(cache, ["run-2"], tmp_path / "two.csbundle"))
    merge_bundles([tmp_path / "one.csbundle", tmp_path / "two.csbundle"], tmp_path / "merged.csbundle")
    assert read_bundle(tmp_path / "merged.csbundle").summary["consumed_samples"] == 72
    merge_bundles([tmp_path / "one.csbundle", tmp_path / "one.csbundle"], tmp_path / "self.csbundle")
    assert read_bundle(tmp_path / "self.csbundle").summary["consumed_samples"] == 36


def test_private_runs_are_named_by_what_they_consumed(tmp_path):
    """A private run's id is random: it is kept as a digest of its consumption, so the same
    run bundles to the same bytes, and two different private runs stay two runs."""
    model = FakeModel(seed=6)

    async def one_run(namespace):
        async with OnlineAPI(model=model, cache=str(tmp_path / "cache"), timeout=0.005) as pipeline:
            await run_experiment(pipeline, namespace)
            return await pipeline.consumption()

    first, again, other = (asyncio.run(one_run(ns)) for ns in ("x", "x", "y"))
    assert list(first.runs) == list(again.runs) and list(first.runs)[0].startswith("private-")
    assert first.to_json() == again.to_json()
    assert set(first.merged(other).runs) == set(first.runs) | set(other.runs)
    assert first.merged(other).samples == first.samples + other.samples


def _as_version_1(path):
    """Rewrite a bundle as the version-1 writer made it: no ``consumption.runs``, version 1, the
    summary over the union of the runs, every digest and the file's seal recomputed."""
    from cachesaver.bundle.summary import summarize

    contents = read_bundle(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members[bundle_format.MANIFEST])
    del manifest["consumption"]["runs"]
    manifest["version"] = 1
    manifest["summary"] = summarize(contents.samples, contents.metas, dict(contents.consumption))
    del manifest["content_sha256"]
    manifest["content_sha256"] = hashlib.sha256(bundle_format._canonical(manifest)).hexdigest()
    members[bundle_format.MANIFEST] = json.dumps(manifest, sort_keys=True, indent=2).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            bundle_format._add(archive, name, data)
        archive.comment = bundle_format._SEAL + b"0" * bundle_format._DIGEST_LEN
    data = buf.getvalue()
    data = data[:-bundle_format._DIGEST_LEN] + hashlib.sha256(data[:-bundle_format._DIGEST_LEN]).hexdigest().encode()
    path.write_bytes(data)


def test_a_version_1_bundle_is_still_read_as_one_run(tmp_path):
    cache, _ = _record(tmp_path)
    asyncio.run(_bundle(cache, ["run-1", "run-2"], tmp_path / "old.csbundle"))
    _as_version_1(tmp_path / "old.csbundle")
    contents = read_bundle(tmp_path / "old.csbundle")
    assert isinstance(contents.consumption, Consumption) and list(contents.consumption.runs) == [""]
    # What version 1 could say: the union, once (its summary was computed that way).
    assert contents.summary["consumed_samples"] == 36
