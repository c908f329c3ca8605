"""Bundles through the engine API: record, bundle, verify, replay offline from read-only media.

Real parts: diskcache in tmp_path, the stdlib zip format, a fresh interpreter for the replay
that cannot write to the bundle's directory and has no model at all.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import zipfile

import orjson
import pytest

from cachesaver import OnlineAPI, Request
from cachesaver.bundle import (BundleStore, Consumption, import_bundle, merge_bundles, read_bundle,
                               verify_bundle, write_bundle)
from cachesaver.errors import BundleError, OfflineMissError, ReadOnlyStoreError
from cachesaver.opening import open_store
from cachesaver.testing import FakeModel

from _experiment import NAMESPACES, PROMPTS, run_experiment
from _readonly import make_read_only, run_python

HERE = os.path.dirname(os.path.abspath(__file__))

REPLAY = r"""
import asyncio, json, socket, sys
sys.path.insert(0, sys.argv[2])
def no_network(*a, **k):
    raise RuntimeError("the replay tried to open a network connection")
socket.socket.connect = no_network
socket.create_connection = no_network
from cachesaver import OnlineAPI, Request
from cachesaver.errors import OfflineMissError
from _experiment import NAMESPACES, run_experiment

async def main():
    # model=None: there is no model to call; offline=True: a miss must raise, not generate.
    async with OnlineAPI(model=None, cache=sys.argv[1], batch_size=8, timeout=0.005, offline=True) as p:
        outputs = {ns: await run_experiment(p, ns) for ns in NAMESPACES}
        try:
            # Another arm, recorded by nobody: 3 samples per prompt where 2 were recorded.
            await run_experiment(p, "one-more-namespace", n=3)
            miss = None
        except OfflineMissError as exc:
            miss = str(exc)
        calls = p.stats.model_calls
    try:
        open(sys.argv[1] + ".probe", "w")
        writable = True
    except OSError:
        writable = False
    print(json.dumps({"outputs": outputs, "miss": miss, "model_calls": calls, "writable": writable}))

asyncio.run(main())
"""


def test_consumption_names_every_slot_a_run_used(tmp_path):
    async def main():
        async with OnlineAPI(model=FakeModel(), cache=str(tmp_path / "c"), timeout=0.001) as p:
            await p.request(Request(prompt="a", n=3, namespace="x"))
            await p.request(Request(prompt="a", n=1, namespace="y"))
            await p.request(Request(prompt="b", n=2, namespace="y"))
            return await p.consumption(), p
    consumption, p = asyncio.run(main())
    lengths = {ns: sorted(keys.values()) for ns, keys in consumption.items()}
    assert lengths == {"x": [3], "y": [1, 2]}
    assert consumption.samples == 6 and consumption.run_ids == []  # a private run's id is random
    assert sorted(consumption.needed().values()) == [2, 3]


def test_shared_run_consumption_counts_every_process(tmp_path):
    """Two pipelines of one shared run (as two processes would) are one consumption."""
    cache = str(tmp_path / "c")

    async def main():
        async with OnlineAPI(model=FakeModel(), cache=cache, run_id="run-1", timeout=0.001) as p1, \
                OnlineAPI(model=FakeModel(), cache=cache, run_id="run-1", timeout=0.001) as p2:
            await p1.request(Request(prompt="a", n=2, namespace="x"))
            await p2.request(Request(prompt="a", n=1, namespace="x"))
            return await p1.consumption()
    consumption = asyncio.run(main())
    assert list(consumption) == ["x"] and list(consumption["x"].values()) == [3]
    assert consumption.run_ids == ["run-1"]


def test_bundle_holds_only_consumed_samples_and_a_true_summary(recorded, tmp_path):
    path, outputs, model = recorded
    contents = verify_bundle(path)
    # 6 prompts x 2 samples + 6 follow-ups, shared by both namespaces: nothing else.
    assert contents.sample_count == model.samples_generated == 18
    assert contents.summary["consumed_samples"] == 36
    assert set(contents.summary["namespaces"]) == set(NAMESPACES)
    generated_tokens = model.prompt_tokens + model.completion_tokens
    assert contents.summary["prompt_tokens"] + contents.summary["completion_tokens"] == pytest.approx(generated_tokens)
    assert contents.summary["cost"] == pytest.approx(generated_tokens * model.price_per_token)
    assert contents.versions["cachesaver"]
    # Deterministic: bundling the same consumption again gives the same bytes.
    async def again():
        store = open_store(str(tmp_path / "cache"))
        try:
            await write_bundle(store, contents.consumption, tmp_path / "again.csbundle")
        finally:
            await store.aclose()
    asyncio.run(again())
    assert (tmp_path / "again.csbundle").read_bytes() == path.read_bytes()
    # Members are JSON only: the manifest and one JSONL member per key.
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert names[-1] == "manifest.json" and len(names) == 1 + len(contents.samples)
        manifest = json.loads(z.read("manifest.json"))
        assert {e["key"] for e in manifest["keys"]} == set(contents.samples)
        assert json.loads(manifest["keys"][0]["meta"])["prompt"]


def test_replay_in_a_fresh_process_from_read_only_media(recorded, tmp_path, restore_permissions):
    path, outputs, model = recorded
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    shutil.copy(path, shelf / "exp.csbundle")
    make_read_only(shelf)
    result = run_python(REPLAY, str(shelf / "exp.csbundle"), HERE)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["writable"] is False          # the directory really was read-only for the replay
    assert got["outputs"] == outputs          # identical samples, in the same places
    assert got["model_calls"] == 0
    assert "one-more-namespace" in got["miss"] and "Solve puzzle" in got["miss"]
    assert "samples 1..3" in got["miss"] and "holds 2 sample(s)" in got["miss"] and "model was not called" in got["miss"]


def test_offline_miss_names_prompt_key_position_and_calls_nothing(recorded):
    path, outputs, _ = recorded
    model = FakeModel()

    async def main():
        async with OnlineAPI(model=model, cache=str(path), offline=True, timeout=0.001) as p:
            hit = await p.request(Request(prompt=PROMPTS[0], n=2, namespace="baseline", request_id="baseline-0"))
            with pytest.raises(OfflineMissError) as info:
                await p.request(Request(prompt=PROMPTS[0], n=1, namespace="baseline"))
            with pytest.raises(OfflineMissError, match="never asked"):
                await p.request(Request(prompt="never asked " + "x" * 200, n=1))
            return hit, info.value
    hit, error = asyncio.run(main())
    assert hit.data == outputs["baseline"][0] and all(hit.cached)
    text = str(error)
    assert PROMPTS[0] in text and "'baseline'" in text and "holds 2" in text
    assert "asks for sample 3, but" in text  # the 3rd sample (counted from 1, issue 26), 2 held
    assert model.call_count == 0


def test_a_bundle_is_read_only_and_its_pipeline_is_offline(recorded):
    path, _, _ = recorded
    model = FakeModel()

    async def main():
        store = BundleStore(path)
        with pytest.raises(ReadOnlyStoreError, match="read-only"):
            await store.append("k", [b'{"d":1}'])
        with pytest.raises(ReadOnlyStoreError):
            await store.clear()
        async with OnlineAPI(model=model, cache=store, timeout=0.001) as p:  # no offline=True
            assert p.offline
            with pytest.raises(OfflineMissError):
                await p.request(Request(prompt="new", n=1))
    asyncio.run(main())
    assert model.call_count == 0


def test_offline_on_a_normal_cache(tmp_path):
    """offline=True is not bundle-specific: any store serves hits and refuses misses."""
    model = FakeModel()

    async def main():
        async with OnlineAPI(model=model, cache=str(tmp_path / "c"), timeout=0.001) as p:
            first = await p.request(Request(prompt="q", n=2))
        async with OnlineAPI(model=model, cache=str(tmp_path / "c"), timeout=0.001, offline=True) as p:
            again = await p.request(Request(prompt="q", n=2))
            with pytest.raises(OfflineMissError, match="samples 3..4"):
                await p.request(Request(prompt="q", n=2))
        return first, again
    first, again = asyncio.run(main())
    assert first.data == again.data and model.call_count == 1


def test_import_then_extend_pays_only_for_new_samples(recorded, tmp_path):
    path, outputs, _ = recorded
    model = FakeModel(seed=11)

    async def main():
        report = await import_bundle(path, str(tmp_path / "new-cache"))
        again = await import_bundle(path, str(tmp_path / "new-cache"))
        async with OnlineAPI(model=model, cache=str(tmp_path / "new-cache"), batch_size=8, timeout=0.005) as p:
            replayed = await run_experiment(p, "baseline")
            assert model.call_count == 0
            # A new namespace asking for more (n=3 where 2 are stored) pays only for the third.
            new = await p.request(Request(prompt=PROMPTS[0], n=3, namespace="extension"))
        return report, again, replayed, new
    report, again, replayed, new = asyncio.run(main())
    assert report.samples_added == 18 and again.samples_added == 0 and again.samples_present == 18
    assert replayed == outputs["baseline"]
    assert new.cached == [True, True, False] and model.samples_generated == 1


def test_merge_unions_runs_and_refuses_diverged_bundles(tmp_path):
    cache = str(tmp_path / "c")

    async def run(namespace, prompts, out):
        async with OnlineAPI(model=FakeModel(), cache=cache, timeout=0.001) as p:
            for prompt in prompts:
                await p.request(Request(prompt=prompt, n=2, namespace=namespace))
            await write_bundle(p.store, await p.consumption(), out)
    asyncio.run(run("t1", ["a", "b"], tmp_path / "one.csbundle"))
    asyncio.run(run("t2", ["b", "c"], tmp_path / "two.csbundle"))
    merged = merge_bundles([tmp_path / "one.csbundle", tmp_path / "two.csbundle"], tmp_path / "all.csbundle")
    assert len(merged.samples) == 3 and merged.sample_count == 6
    assert set(read_bundle(tmp_path / "all.csbundle").consumption) == {"t1", "t2"}
    # A bundle of another cache (other samples for key "a") cannot be merged in.
    async def other():
        async with OnlineAPI(model=FakeModel(seed=99), cache=str(tmp_path / "other"), timeout=0.001) as p:
            await p.request(Request(prompt="a", n=2, namespace="t3"))
            await write_bundle(p.store, await p.consumption(), tmp_path / "other.csbundle")
    asyncio.run(other())
    with pytest.raises(BundleError, match="sample 1 differs"):
        merge_bundles([tmp_path / "all.csbundle", tmp_path / "other.csbundle"], tmp_path / "bad.csbundle")
    assert not (tmp_path / "bad.csbundle").exists()


def _meta(obj) -> tuple[str, bytes]:
    """A canonical request and its key (the SHA-256 of its bytes), as the engine stores them."""
    import hashlib

    raw = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest(), raw


BEARER = "Bearer ya29SENTINELa0AfH6SMBx3jLq9vZ7"


def test_bundle_refuses_a_request_carrying_a_credential(tmp_path):
    """The secret scanner (detect-secrets) decides by the value, at any depth, prompt included:
    the bundle is refused naming the key and path, and nothing is written."""
    from cachesaver.stores import MemoryStore

    sample = b'{"d":"x","u":[1,1,0.1]}'

    async def main():
        store = MemoryStore()
        k1, m1 = _meta({"prompt": "hi", "extra": {"api_key": "sk-live"}})
        await store.append(k1, [sample], m1)
        with pytest.raises(BundleError, match=rf"key {k1}: \$\.extra\.api_key \(Secret Keyword\)"):
            await write_bundle(store, Consumption({"ns": {k1: 1}}), tmp_path / "x.csbundle")
        k2, m2 = _meta({"prompt": "hi", "api_base": "https://user:hunter2@proxy.example/v1"})
        await store.append(k2, [sample], m2)
        with pytest.raises(BundleError, match=r"\$\.api_base \(Basic Auth Credentials\)") as caught:
            await write_bundle(store, Consumption({"ns": {k2: 1}}), tmp_path / "x.csbundle")
        assert "hunter2" not in str(caught.value)
        # Prompt text is scanned too, but talking about credentials is not holding one.
        k3, m3 = _meta({"prompt": "Bearer tokens look like Bearer abc"})
        await store.append(k3, [sample], m3)
        await write_bundle(store, Consumption({"ns": {k3: 1}}), tmp_path / "ok.csbundle")
        k4, m4 = _meta({"prompt": f"call it with {BEARER}"})
        await store.append(k4, [sample], m4)
        with pytest.raises(BundleError, match=r"\$\.prompt \(Authorization Header Credentials\)"):
            await write_bundle(store, Consumption({"ns": {k4: 1}}), tmp_path / "x.csbundle")
        # A bundle made by another tool with a credential inside: merging it is refused too.
        from cachesaver.bundle.format import BundleContents, encode_bundle
        k5, m5 = _meta({"prompt": "hi", "headers": {"Authorization": BEARER}})
        crafted = BundleContents({k5: [sample]}, {k5: m5}, Consumption({"ns": {k5: 1}}))
        (tmp_path / "crafted.csbundle").write_bytes(encode_bundle(crafted))
        with pytest.raises(BundleError, match=r"\$\.headers\.Authorization"):
            merge_bundles([tmp_path / "crafted.csbundle"], tmp_path / "merged.csbundle")
        assert not (tmp_path / "merged.csbundle").exists()
        with pytest.raises(BundleError, match="holds 1"):
            await write_bundle(store, Consumption({"ns": {k1: 2}}), tmp_path / "x.csbundle")
    asyncio.run(main())
    assert not (tmp_path / "x.csbundle").exists()


def test_bundle_refuses_a_store_whose_request_does_not_hash_to_its_key(tmp_path):
    """A bundle that could not be verified is never written."""
    from cachesaver.stores import MemoryStore

    async def main():
        store = MemoryStore()
        key, _ = _meta({"prompt": "what was asked"})
        await store.append(key, [b'{"d":"x","u":[1,1,0.1]}'], orjson.dumps({"prompt": "something else"}))
        with pytest.raises(BundleError, match=f"canonical request stored for key {key} does not hash to that key"):
            await write_bundle(store, Consumption({"ns": {key: 1}}), tmp_path / "x.csbundle")
    asyncio.run(main())
    assert not (tmp_path / "x.csbundle").exists()


def test_local_api_offline(tmp_path):
    """LocalAPI (hardware-batched local models) has the same offline switch."""
    from cachesaver import LocalAPI

    model = FakeModel()

    async def main():
        async with LocalAPI(model=model, cache=str(tmp_path / "c"), batch_size=2, timeout=0.001) as p:
            first = await p.request(Request(prompt="q", n=2))  # two one-sample items, one batch
            await write_bundle(p.store, await p.consumption(), tmp_path / "l.csbundle")
        async with LocalAPI(model=None, cache=str(tmp_path / "l.csbundle"), offline=True, timeout=0.001) as p:
            again = await p.request(Request(prompt="q", n=2))
            with pytest.raises(OfflineMissError, match="'q'"):
                await p.request(Request(prompt="q", n=1))
        return first, again
    first, again = asyncio.run(main())
    assert first.data == again.data and model.batch_calls == 1
