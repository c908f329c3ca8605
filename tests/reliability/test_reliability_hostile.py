"""Hostile input: values that are not JSON, 10 MB samples, unicode of every plane, fields of the
wrong type, and garbage written into the store behind the engine's back.

Expected every time: a clear error (naming the key, and the index for a stored sample) that
reaches only the callers concerned, nothing half-stored, and the rest of the cache keeps
working in the same pipeline. Scenarios that would hang the engine run in a subprocess with a
timeout, so a regression fails the test instead of freezing the suite.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import math
import os
import subprocess
import sys
import textwrap
import time

import orjson
import pytest
import redis as redis_sync

from cachesaver.errors import CacheSaverError, CorruptSampleError, NotSerializableError, StoreError
from cachesaver.keys import request_key
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import DiskStore, MemoryStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request, Response, SingleRequestModel, Usage

from _disk_rows import set_count, set_ledger, set_sample

EVERY_PLANE = "".join(chr((plane << 16) | 0x100 | plane) for plane in range(17)) + (
    "\x00\x1f\u00e9\u0301\u200f\u2028\ufeff\ufffd\uffff\U0001F600\U0001F3F3\uFE0F\u200D\U0001F308"
    "\U00020000\U000E0001\U000F0000\U0010FFFF"
)


def req(rid: str, ns: str = "A", n: int = 1, prompt: object = "q") -> Request:
    return Request(prompt=prompt, n=n, request_id=rid, namespace=ns)


def key_of(prompt: object) -> str:
    return request_key(req("x", prompt=prompt))


class ScriptedModel(SingleRequestModel):
    """Serves ``samples[prompt]``: a list handed out in order, or a callable of n; counts calls."""

    def __init__(self, samples: dict) -> None:
        self.samples = samples
        self.served: dict[object, int] = {}
        self.calls: list[tuple[object, int]] = []

    async def request(self, request: Request) -> Response:
        self.calls.append((request.prompt, request.n))
        made = self.samples[request.prompt]
        if callable(made):
            data = made(request.n)
        else:
            start = self.served.get(request.prompt, 0)
            data = list(made)[start:start + request.n]
            self.served[request.prompt] = start + len(data)
        return Response(data=data, usage=Usage(1, len(data), 0.0))


@dataclasses.dataclass
class Point:
    x: int


@pytest.fixture(params=["memory", "disk", "redis"])
def any_store(request, tmp_path):
    if request.param == "memory":
        store = MemoryStore()
    elif request.param == "disk":
        store = DiskStore(str(tmp_path / "c"))
    else:
        store = request.getfixturevalue("redis_store_factory")()
    yield store
    store.close()


# -- values that are not JSON ----------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    {1, 2}, b"raw bytes", object(), 2**70, {1: "int key"}, "lone \ud800 surrogate",
    datetime.datetime(2024, 1, 1), Point(1), [1, {"deep": {"set": {3}}}],
], ids=["set", "bytes", "object", "bigint", "intkey", "surrogate", "datetime", "dataclass", "nested"])
async def test_non_json_sample_fails_its_call_only_and_stores_nothing(bad, any_store, leftovers):
    model = ScriptedModel({"bad": lambda n: ["fine"] * (n - 1) + [bad], "good": lambda n: [f"g{i}" for i in range(n)]})
    async with OnlineAPI(model=model, cache=any_store, batch_size=100, timeout=0.01) as p:
        results = await asyncio.gather(
            p.request(req("r1", ns="A", n=2, prompt="bad")),
            p.request(req("r2", ns="B", n=1, prompt="bad")),
            p.request(req("r3", ns="A", n=1, prompt="good")),
            return_exceptions=True,
        )
        assert isinstance(results[0], NotSerializableError) and results[0] is results[1]
        message = str(results[0])
        assert key_of("bad") in message and "sample 2 returned" in message and "plain JSON" in message
        assert results[2].data == ["g0"]
        assert await any_store.length(key_of("bad")) == 0  # not even the good sample of that call
        model.samples["bad"] = lambda n: [f"b{i}" for i in range(n)]
        again = await p.request(req("r4", ns="A", n=2, prompt="bad"))  # retry: no position was consumed
        assert again.data == ["b0", "b1"]
        assert leftovers(p) == {}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {"score": math.nan}])
async def test_nan_and_infinity_samples_are_refused_not_turned_into_null(bad):
    model = ScriptedModel({"q": [bad]})
    async with OnlineAPI(model=model, cache="memory", batch_size=1, timeout=0) as p:
        with pytest.raises(NotSerializableError, match=key_of("q")):
            await p.request(req("r1"))


@pytest.mark.parametrize("prompt, field", [
    ({"a": math.nan}, r"\$\.prompt\.a"), ([1, {2: "x"}], r"\$\.prompt\[1\]"), ({"a": {1, 2}}, r"\$\.prompt\.a"),
])
async def test_non_json_key_material_is_refused_before_anything_happens(prompt, field, fake_model, leftovers):
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=1, timeout=0) as p:
        with pytest.raises(NotSerializableError, match=field):
            await p.request(req("r1", prompt=prompt))
        assert (await p.request(req("r2"))).cached == [False]  # the pipeline is unharmed
        assert leftovers(p) == {}
    assert len(fake_model.calls) == 1


async def test_lone_surrogate_in_a_key_field_names_the_field(fake_model):
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=1, timeout=0) as p:
        with pytest.raises(NotSerializableError, match=r"\$\.prompt\.text"):
            await p.request(req("r1", prompt={"text": "half a pair \udc00"}))


# -- big and strange but valid ---------------------------------------------------------------
async def test_ten_megabyte_samples_and_prompt_round_trip_exactly(any_store, leftovers):
    big_text = ("0123456789abcdef" * 65536 * 10)[: 10 * 1024 * 1024]  # 10 MiB of text
    big_json = {"rows": [{"i": i, "s": EVERY_PLANE, "f": i / 7} for i in range(60_000)]}
    big_prompt = "p" * (10 * 1024 * 1024)
    model = ScriptedModel({"text": [big_text, "small"], "json": [big_json], big_prompt: ["from a 10 MB prompt"]})
    async with OnlineAPI(model=model, cache=any_store, batch_size=100, timeout=0.01) as p:
        live = await asyncio.gather(
            p.request(req("r1", n=2, prompt="text")), p.request(req("r2", prompt="json")),
            p.request(req("r3", prompt=big_prompt)))
    assert len(orjson.dumps(big_json)) > 4 * 1024 * 1024
    async with OnlineAPI(model=model, cache=any_store, batch_size=100, timeout=0.01) as p:
        replay = await asyncio.gather(
            p.request(req("r1", n=2, prompt="text")), p.request(req("r2", prompt="json")),
            p.request(req("r3", prompt=big_prompt)))
        assert leftovers(p) == {}
    assert live[0].data == replay[0].data == [big_text, "small"]
    assert live[1].data == replay[1].data == [big_json]
    assert replay[2].data == ["from a 10 MB prompt"] and all(all(r.cached) for r in replay)
    assert len(model.calls) == 3


async def test_unicode_of_every_plane_in_samples_keys_namespaces_ids_and_runs(any_store):
    samples = [EVERY_PLANE, {EVERY_PLANE: [EVERY_PLANE]}, EVERY_PLANE[::-1]]
    prompt = {"messages": [{"role": "user", "content": EVERY_PLANE}]}
    class ByPrompt(ScriptedModel):
        async def request(self, request):
            return await super().request(dataclasses.replace(request, prompt=str(request.prompt)))

    model = ByPrompt({str(prompt): samples})
    namespace, run_id = "ns " + EVERY_PLANE, "run " + EVERY_PLANE
    async with OnlineAPI(model=model, cache=any_store, batch_size=1, timeout=0, run_id=run_id) as p:
        first = await p.request(Request(prompt=prompt, n=1, request_id=EVERY_PLANE, namespace=namespace))
        second = await p.request(Request(prompt=prompt, n=1, request_id=EVERY_PLANE, namespace=namespace))
    assert first.data + second.data == samples[:2]  # one run (shared ledger), consecutive samples
    async with OnlineAPI(model=model, cache=any_store, batch_size=1, timeout=0, run_id=run_id) as p:
        nxt = await p.request(Request(prompt=prompt, n=1, request_id="x", namespace=namespace))
        other = await p.request(Request(prompt=prompt, n=3, request_id="y", namespace=namespace[::-1]))
    assert nxt.data == [samples[2]]  # the shared run continues after reopening
    assert other.data == samples and len(model.calls) == 3
    entries = [e async for e in any_store.iter_ledger()] if not isinstance(any_store, MemoryStore) else []
    if entries:
        assert (run_id, namespace, key_of(prompt)) in {e[:3] for e in entries}


# -- wrong types -------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("namespace", 7), ("namespace", None), ("namespace", b"A"), ("request_id", 3), ("request_id", None),
    ("n", "2"), ("n", 2.0), ("n", True), ("n", None), ("n", 0), ("n", -1),
])
async def test_fields_of_the_wrong_type_name_the_field_and_leave_no_trace(field, value, fake_model, leftovers):
    async with OnlineAPI(model=fake_model, cache="memory", batch_size=10, timeout=0.005) as p:
        ok = asyncio.ensure_future(p.request(req("ok", ns="A")))
        with pytest.raises((TypeError, ValueError), match=f"request.{field}"):
            await p.request(dataclasses.replace(req("bad"), **{field: value}))
        assert (await ok).data == [fake_model.sample_text("q", 0)]
        assert p.stats.ns("A").requests == 1 and leftovers(p) == {}


# -- garbage written into the store ------------------------------------------------------------
async def _fill(cache, prompt="q", n=3):
    model = FakeModel(seed=1)
    async with OnlineAPI(model=model, cache=cache, batch_size=1, timeout=0) as p:
        stored = (await p.request(req("w", ns="W", n=n, prompt=prompt))).data
        await p.request(req("w2", ns="W", prompt="other"))
    return stored


@pytest.mark.parametrize("where", ["garbage bytes", "a text value"])
async def test_garbage_in_a_disk_sample_names_key_and_index_and_the_rest_works(where, tmp_path, leftovers):
    directory = str(tmp_path / "c")
    big = "x" * 100_000
    prompt = "q"
    model = ScriptedModel({prompt: ["s0", big, "s2"], "other": ["o0"], "fresh": ["f0"]})
    async with OnlineAPI(model=model, cache=directory, batch_size=1, timeout=0) as p:
        await p.request(req("w", ns="W", n=3, prompt=prompt))
        await p.request(req("w2", ns="W", prompt="other"))
    key = key_of(prompt)
    if where == "garbage bytes":
        set_sample(directory, key, 1, b"\x80\x04\x95 not json \xff")
    else:
        set_sample(directory, key, 1, "x" * 50_000 + "\x00garbage")
    async with OnlineAPI(model=model, cache=directory, batch_size=100, timeout=0.01) as p:
        results = await asyncio.gather(
            p.request(req("a", ns="A", n=1, prompt=prompt)),   # the 1st sample only: fine
            p.request(req("b", ns="B", n=2, prompt=prompt)),   # reaches the 2nd sample: corrupt
            p.request(req("c", ns="C", prompt="other")),
            p.request(req("d", ns="D", prompt="fresh")),       # a miss: the model still works
            return_exceptions=True)
        assert results[0].data == ["s0"]
        assert isinstance(results[1], CorruptSampleError)
        assert f"sample 2 of key {key}" in str(results[1]) and "remove that key" in str(results[1])
        assert results[2].data == ["o0"] and results[3].data == ["f0"]
        # B's failed claim skipped the corrupt sample: B moves on instead of failing forever.
        assert (await p.request(req("e", ns="B", prompt=prompt))).data == ["s2"]
        assert leftovers(p) == {}


_HOLE_SCRIPT = textwrap.dedent("""
    import asyncio, sys, sqlite3, os
    from cachesaver.pipelines import OnlineAPI
    from cachesaver.testing import FakeModel
    from cachesaver.typedefs import Request
    from cachesaver.keys import request_key

    directory, how = sys.argv[1], sys.argv[2]
    async def main():
        model = FakeModel(seed=1, answers=["x" * 100_000])
        run = "exp" if how == "negative ledger" else None
        async with OnlineAPI(model=model, cache=directory, batch_size=1, timeout=0, run_id=run) as p:
            await p.request(Request(prompt="q", n=3, request_id="w", namespace="A"))
        key = request_key(Request(prompt="q"))
        raw = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
        if how == "deleted row":
            raw.execute("DELETE FROM cachesaver_samples WHERE key = ? AND idx = 1", (key,))
        elif how == "deleted first row":
            raw.execute("DELETE FROM cachesaver_samples WHERE key = ? AND idx = 0", (key,))
        else:
            raw.execute("UPDATE cachesaver_ledger SET pos = -5 WHERE run = 'exp' AND ns = 'A' AND key = ?", (key,))
        raw.close()
        async with OnlineAPI(model=model, cache=directory, batch_size=1, timeout=0, run_id=run) as p:
            try:
                await p.request(Request(prompt="q", n=3, request_id="a", namespace="B" if run is None else "A"))
                print("SERVED")
            except Exception as exc:
                print(type(exc).__name__, exc)
            r = await p.request(Request(prompt="other", n=1, request_id="b", namespace="A"))
            print("OTHER", len(r.data))
    asyncio.run(main())
""")
HOLES = ["deleted row", "deleted first row", "negative ledger"]


def test_missing_stored_sample_is_an_error_not_a_hang_on_disk(tmp_path):
    """Each variant runs in its own process (in parallel): a spinning engine cannot be interrupted."""
    procs = {how: subprocess.Popen([sys.executable, "-c", _HOLE_SCRIPT, str(tmp_path / how.replace(" ", "-")), how],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for how in HOLES}
    outcomes = {}
    deadline = time.monotonic() + 4
    for how, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            outcomes[how] = "spins forever (killed after 4 s)"
            continue
        lines = out.splitlines()
        ok = (proc.returncode == 0 and len(lines) == 2 and lines[0].startswith("CorruptSampleError")
              and key_of("q") in lines[0] and lines[1] == "OTHER 1")
        outcomes[how] = "ok" if ok else f"rc={proc.returncode} out={out!r} err={err[-300:]!r}"
    assert outcomes == {how: "ok" for how in HOLES}


@pytest.mark.parametrize("row", ["length", "ledger"])
async def test_garbage_in_disk_counters_names_the_key(row, tmp_path, fake_model):
    directory = str(tmp_path / "c")
    run = "exp" if row == "ledger" else None
    async with OnlineAPI(model=fake_model, cache=directory, batch_size=1, timeout=0, run_id=run) as p:
        await p.request(req("w", n=2))
    key = key_of("q")
    if row == "length":
        set_count(directory, key, b"garbage")
    else:
        set_ledger(directory, "exp", "A", key, b"garbage")
    async with OnlineAPI(model=fake_model, cache=directory, batch_size=1, timeout=0, run_id=run) as p:
        with pytest.raises(CorruptSampleError, match=key):
            await p.request(req("a", n=5))
        assert (await p.request(req("b", prompt="other"))).cached == [False]


@pytest.fixture
def raw_redis(redis_store_factory):
    with redis_sync.Redis.from_url(redis_store_factory.url) as client:
        yield client


@pytest.mark.parametrize("garbage", ["sample bytes", "wrong type", "ledger value"])
async def test_garbage_in_redis_names_the_key_and_the_rest_works(garbage, redis_store_factory, raw_redis, leftovers):
    store = redis_store_factory()
    run = "exp" if garbage == "ledger value" else None
    stored = await _fill_with(store, run)
    key = key_of("q")
    base = f"{store.prefix}:{{{key}}}:"
    if garbage == "sample bytes":
        raw_redis.lset(base + "s", 1, b"\x80\x04garbage\xff")
    elif garbage == "wrong type":
        raw_redis.delete(base + "s")
        raw_redis.set(base + "s", b"not a list")
    else:
        raw_redis.hset(base + "l", orjson.dumps([run, "A"]), b"garbage")
    async with OnlineAPI(model=FakeModel(seed=9), cache=store, batch_size=100, timeout=0.01, run_id=run) as p:
        results = await asyncio.gather(
            p.request(req("a", ns="A", n=2)), p.request(req("c", ns="C", prompt="other")),
            p.request(req("d", ns="D", prompt="fresh")), return_exceptions=True)
        expected = {"sample bytes": CorruptSampleError, "wrong type": StoreError, "ledger value": StoreError}[garbage]
        assert isinstance(results[0], expected) and key in str(results[0])
        if garbage == "sample bytes":
            assert f"sample 2 of key {key}" in str(results[0])
        assert results[1].data == stored["other"] and results[2].cached == [False]
        assert leftovers(p) == {}


async def _fill_with(store, run):
    out = {}
    async with OnlineAPI(model=FakeModel(seed=1), cache=store, batch_size=1, timeout=0, run_id=run) as p:
        out["q"] = (await p.request(req("w", ns="W", n=3))).data
        out["other"] = (await p.request(req("w2", ns="W", prompt="other"))).data
    return out


async def test_negative_ledger_position_in_redis_is_an_error_not_a_spin(redis_store_factory, raw_redis):
    store = redis_store_factory()
    await _fill_with(store, "exp")
    key = key_of("q")
    raw_redis.hset(f"{store.prefix}:{{{key}}}:l", orjson.dumps(["exp", "A"]), b"-5")
    async with OnlineAPI(model=FakeModel(seed=9), cache=store, batch_size=1, timeout=0, run_id="exp") as p:
        task = asyncio.ensure_future(p.request(req("a", ns="A", n=3)))
        done, _ = await asyncio.wait([task], timeout=1)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            pytest.fail("the engine spins on Redis forever")
        with pytest.raises(CorruptSampleError, match=key):
            task.result()


async def _ledger_outcome(store) -> str:
    try:
        entries = [e async for e in store.iter_ledger()]
    except CacheSaverError as exc:
        return f"clear: {type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - what we are checking for
        return f"UNCLEAR {type(exc).__name__}: {exc}"
    return f"skipped foreign rows ({len(entries)} entries)"


@pytest.mark.parametrize("row", ["disk: position not a count", "redis: field not JSON", "redis: position not int"])
async def test_foreign_ledger_rows_never_crash_iteration_and_keys_can_still_be_removed(row, tmp_path, request):
    if row.startswith("disk"):
        directory = str(tmp_path / "c")
        store = DiskStore(directory)
        await _fill_with(store, "exp")
        set_ledger(directory, "exp", "X", key_of("q"), b"{not a count")
    else:
        store = request.getfixturevalue("redis_store_factory")()
        await _fill_with(store, "exp")
        key = key_of("q")
        with redis_sync.Redis.from_url(request.getfixturevalue("redis_store_factory").url) as raw:
            name = f"{store.prefix}:{{{key}}}:l"
            if row.endswith("field not JSON"):
                raw.hset(name, b"\x80 not json", b"1")
            else:
                raw.hset(name, orjson.dumps(["exp", "X"]), b"garbage")
    try:
        outcome = await _ledger_outcome(store)
        assert not outcome.startswith("UNCLEAR"), outcome
        assert await store.delete(key_of("other")) == 1  # removing another key still works
    finally:
        store.close()
