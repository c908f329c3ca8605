"""G7 safety: no pickle anywhere, and secrets never written.

Pickle: the packages import no pickle-like module; then a separate process, with an audit hook
on ``pickle.find_class`` and every pickle entry point replaced by a tripwire, opens a disk
store and a Redis prefix where pickle payloads were planted in every kind of row (sample,
file-backed sample, length counter, meta, ledger, key, raw pickle bytes, Redis tokens) and
runs everything that reads a store: pipeline hits and misses, shared-run claims, key and
ledger iteration, export, copy, and the CLI's stats/inspect/prune/export. The payload would
create a canary file if it were ever executed.

Secrets: a sentinel API key and Authorization header go through the LiteLLM adapter (plain,
merged, streamed, failing and Router calls) on disk and on Redis; afterwards every byte
written (store files, Redis keys and values, JSONL exports, CLI output, log records of every
logger, stats) is searched for them. Credentials a user puts into output-shaping parameters
are keyed like any content (key policy 2) and never leave the machine: exports and bundles
refuse with the path, ``inspect`` masks them.
"""
from __future__ import annotations

import ast
import asyncio
import json
import logging
import os
import pathlib
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest
import redis as redis_sync

from cachesaver.keys import request_key
from cachesaver.pipelines import OnlineAPI
from cachesaver.testing import FakeModel
from cachesaver.transfer import export_jsonl
from cachesaver.typedefs import Request, unkeyed

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "core" / "cachesaver", ROOT / "cachesaver_litellm", ROOT / "cachesaver_langchain"]
PICKLE_LIKE = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "jsonpickle", "joblib"}

SECRET_KEY = "sk-SENTINEL-4b1d9e0c7a"
SECRET_HEADER = "SENTINEL-BEARER-e2f4a6"
SECRET_PASSWORD = "SENTINEL-PW-91c3"
SECRETS = (SECRET_KEY, SECRET_HEADER, SECRET_PASSWORD)


# -- no pickle anywhere ----------------------------------------------------------------------
def test_no_package_imports_a_pickle_like_module():
    offenders = []
    for package in PACKAGES:
        for path in package.rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                for name in names:
                    if name.split(".")[0] in PICKLE_LIKE or name.split(".")[-1] in PICKLE_LIKE:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert offenders == []


_PLANTED = textwrap.dedent(r'''
    import asyncio, json, os, pickle, sys, _pickle

    events, calls = [], []
    sys.addaudithook(lambda event, args: events.append(event) if event.startswith("pickle") else None)

    def tripwire(name):
        def refuse(*args, **kwargs):
            calls.append(name)
            raise RuntimeError(f"{name} called")
        return refuse

    for module in (pickle, _pickle):
        for name in ("load", "loads", "Unpickler"):
            setattr(module, name, tripwire(f"{module.__name__}.{name}"))

    import diskcache, orjson, redis, sqlite3
    from cachesaver.cli import main as cli
    from cachesaver.errors import CacheSaverError
    from cachesaver.keys import request_key
    from cachesaver.pipelines import OnlineAPI
    from cachesaver.opening import open_store
    from cachesaver.stores import MemoryStore
    from cachesaver.testing import FakeModel
    from cachesaver.transfer import copy_store, export_jsonl
    from cachesaver.typedefs import Request

    spec, canary, workdir = sys.argv[1], sys.argv[2], sys.argv[3]
    DUMPS = pickle.dumps  # writing a pickle is harmless; reading one is what must never happen


    class Exploit:
        def __reduce__(self):
            return (open, (canary, "w"))


    PAYLOAD = DUMPS(Exploit())
    BIG = DUMPS([Exploit(), "x" * 200_000])  # large: diskcache would keep it in a file
    K = {p: request_key(Request(prompt=p)) for p in ("q", "big", "counter", "meta", "fine")}
    outcomes = {}


    def record(name, fn):
        try:
            result = fn()
            outcomes[name] = "ok" if result in (None, 0) else f"ok:{result}"
        except CacheSaverError as exc:
            outcomes[name] = type(exc).__name__
        except Exception as exc:
            outcomes[name] = f"UNCLEAR {type(exc).__name__}: {exc}"[:200]


    async def fill():
        async with OnlineAPI(model=FakeModel(seed=1), cache=spec, batch_size=1, timeout=0, run_id="exp") as p:
            for prompt in K:
                await p.request(Request(prompt=prompt, n=3, request_id=prompt, namespace="W"))

    asyncio.run(fill())

    if spec.startswith("redis://"):
        store = open_store(spec)
        prefix = store.prefix
        r = redis.Redis.from_url(spec.split("?")[0])
        base = lambda k: f"{prefix}:{{{k}}}:"
        r.lset(base(K["q"]) + "s", 1, PAYLOAD)
        r.lset(base(K["big"]) + "s", 0, BIG)
        r.set(base(K["meta"]) + "m", PAYLOAD)
        r.hset(base(K["q"]) + "l", orjson.dumps(["exp", "A"]), PAYLOAD)
        r.hset(base(K["counter"]) + "l", PAYLOAD, b"1")
        r.lpush(base(K["fine"]) + "t", PAYLOAD)
        r.hset(base(K["fine"]) + "c", orjson.dumps(["exp", "W"]), PAYLOAD)
        r.rpush(f"{prefix}:{{planted}}:s", PAYLOAD)
    else:
        # Pickles written straight into the store's rows (what an attacker with the file does)...
        raw = sqlite3.connect(os.path.join(spec, "cache.db"), isolation_level=None)
        raw.execute("UPDATE cachesaver_samples SET value = ? WHERE key = ? AND idx = 1", (PAYLOAD, K["q"]))
        raw.execute("UPDATE cachesaver_samples SET value = ? WHERE key = ? AND idx = 0", (BIG, K["big"]))
        raw.execute("UPDATE cachesaver_keys SET count = ? WHERE key = ?", (PAYLOAD, K["counter"]))
        raw.execute("UPDATE cachesaver_keys SET meta = ? WHERE key = ?", (PAYLOAD, K["meta"]))
        raw.execute("UPDATE cachesaver_ledger SET pos = ? WHERE key = ?", (PAYLOAD, K["q"]))
        raw.execute("INSERT INTO cachesaver_ledger VALUES (?, ?, ?, ?)", ("exp", PAYLOAD, K["fine"], 1))
        raw.close()
        # ... and into diskcache's own table of the same file, with plain diskcache (pickle mode).
        with diskcache.Cache(spec) as foreign:
            foreign.set(f"cs1:s:{K['q']}:1", Exploit())
            foreign.set(Exploit(), "a pickled key")
            foreign.set(("tuple", "key"), Exploit())


    async def requests(run_id):
        async with OnlineAPI(model=FakeModel(seed=2), cache=spec, batch_size=8, timeout=0.001, run_id=run_id) as p:
            out = await asyncio.gather(*(p.request(Request(prompt=prompt, n=3, request_id=prompt, namespace="A"))
                                         for prompt in K), return_exceptions=True)
        return ",".join(sorted(type(o).__name__ for o in out))


    async def walk():
        store = open_store(spec)
        try:
            keys = [k async for k in store.iter_keys()]
            ledger = [e async for e in store.iter_ledger()]
            metas = [await store.get_meta(k) for k in keys]
            for k in keys:
                await store.read(k, 0, 10)
        finally:
            await store.aclose()
        return len(keys)


    record("private run", lambda: asyncio.run(requests(None)))
    record("shared run", lambda: asyncio.run(requests("exp")))
    record("iterate", lambda: asyncio.run(walk()))
    record("export", lambda: asyncio.run(export_jsonl(spec, os.path.join(workdir, "out.jsonl"))) and None)
    record("copy", lambda: asyncio.run(copy_store(spec, MemoryStore())) and None)
    for argv in (["stats"], ["inspect", "--prompt", "q", "--all"], ["prune", "--corrupt", "--dry-run"],
                 ["export", os.path.join(workdir, "cli.jsonl")]):
        record("cli " + argv[0], lambda: cli(argv + ["--cache", spec]))
    print(json.dumps({"events": events, "calls": calls, "canary": os.path.exists(canary), "outcomes": outcomes}))
''')


@pytest.mark.parametrize("backend", ["disk", "redis"])
def test_planted_pickles_are_never_executed_by_anything_that_reads_a_store(backend, tmp_path, request):
    if backend == "disk":
        spec = str(tmp_path / "store")
    else:
        spec = request.getfixturevalue("redis_url_with_prefix")
    canary = tmp_path / "pwned"
    proc = subprocess.run([sys.executable, "-c", _PLANTED, spec, str(canary), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # Nothing was ever unpickled, whatever each reader answered (its outcome is in the message;
    # how clear those errors are is test_reliability_hostile's business).
    assert report["events"] == [] and report["calls"] == [], report["outcomes"]
    assert report["canary"] is False and not canary.exists()
    assert set(report["outcomes"]) == {"private run", "shared run", "iterate", "export", "copy", "cli stats",
                                       "cli inspect", "cli prune", "cli export"}
    assert "Response" in report["outcomes"]["private run"]  # the untouched keys still served


# -- secrets ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SecretRequest(Request):
    api_key: str = unkeyed(default="")
    headers: dict = unkeyed(default=None)


def _all_bytes_under(directory: pathlib.Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


def _redis_dump(url: str, prefix: str) -> bytes:
    with redis_sync.Redis.from_url(url) as r:
        out = []
        for name in r.scan_iter(match=f"{prefix}:*", count=1000):
            out.append(name)
            out.append(r.dump(name) or b"")
        return b"\n".join(out)


def _assert_clean(where: str, blob: "bytes | str") -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    found = [s for s in SECRETS if s.encode() in data]
    assert found == [], f"{where} contains {found}"

async def _assert_nothing_written_holds_a_secret(spec, backend, tmp_path, capsys, request, cli_commands=()):
    """Export the store, run the CLI on it, then search the store, the exports and the CLI
    output for the sentinels (the step every adapter's secret test ends with)."""
    from cachesaver.cli import main as cli

    await export_jsonl(spec, tmp_path / "export.jsonl", ledger=True)
    capsys.readouterr()
    for argv in (["stats"], ["inspect", "--prompt", "colour", "--all"], *cli_commands):
        assert await asyncio.to_thread(cli, argv + ["--cache", spec]) == 0  # the CLI runs its own loop
    cli_output = capsys.readouterr()
    if backend == "disk":
        _assert_clean("the store directory", _all_bytes_under(pathlib.Path(spec)))
    else:
        factory = request.getfixturevalue("redis_store_factory")
        _assert_clean("the Redis keys and values", _redis_dump(factory.url, factory.prefix))
    exports = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("*.jsonl")))
    _assert_clean("the JSONL exports", exports)
    _assert_clean("the CLI output", cli_output.out + cli_output.err)



@pytest.fixture
def all_logs(caplog):
    """Every log record of every logger at DEBUG (levels restored afterwards)."""
    caplog.set_level(logging.DEBUG)
    names = ("cachesaver", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


async def test_engine_secrets_never_reach_redis_exports_or_logs(redis_store_factory, tmp_path, all_logs):
    store = redis_store_factory()

    class SecretEcho(FakeModel):
        async def request(self, request):
            assert request.api_key == SECRET_KEY and request.headers["Authorization"].endswith(SECRET_HEADER)
            return await super().request(request)

    model = SecretEcho(seed=3)
    auth = {"Authorization": f"Bearer {SECRET_HEADER}"}
    async with OnlineAPI(model=model, cache=store, batch_size=8, timeout=0.005, run_id="exp") as p:
        await asyncio.gather(*(p.request(SecretRequest(prompt=f"q{i % 2}", n=2, request_id=f"r{i}", namespace=f"N{i}",
                                                       api_key=SECRET_KEY, headers=auth)) for i in range(6)))
        model.fail_next()
        with pytest.raises(Exception):
            await p.request(SecretRequest(prompt="fails", request_id="f", api_key=SECRET_KEY, headers=auth))
        stats = json.dumps(p.stats.as_dict()) + p.stats.summary()
    await export_jsonl(store, tmp_path / "export.jsonl", ledger=True)
    # not key material: another key and header give the same key (and the canonical request
    # JSON stored beside the samples is searched below)
    assert request_key(SecretRequest(prompt="q0", api_key=SECRET_KEY, headers=auth)) == \
        request_key(SecretRequest(prompt="q0", api_key="sk-other", headers={"Authorization": "Bearer other"}))
    _assert_clean("the Redis keys and values", _redis_dump(redis_store_factory.url, redis_store_factory.prefix))
    _assert_clean("the export", (tmp_path / "export.jsonl").read_bytes())
    _assert_clean("the stats", stats)
    _assert_clean("the logs", "\n".join(r.getMessage() for r in all_logs.records))


def _litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    import cachesaver_litellm

    litellm.suppress_debug_info = True
    return litellm, cachesaver_litellm


@pytest.fixture
def litellm_provider():
    litellm, cachesaver_litellm = _litellm()
    callbacks = list(litellm.callbacks)
    yield litellm, cachesaver_litellm
    cachesaver_litellm.unregister()
    litellm.callbacks = callbacks


@pytest.mark.parametrize("backend", ["disk", "redis"])
async def test_litellm_secrets_never_reach_keys_store_exports_logs_or_cli(
        backend, litellm_provider, fake_server, tmp_path, all_logs, monkeypatch, capsys, request):
    litellm, cachesaver_litellm = litellm_provider
    from cachesaver_litellm import CacheSaverRouter
    from cachesaver_litellm._backend import LiteLLMBackend

    seen = []  # what the real calls received: proves the sentinels were in use
    real_invoke = LiteLLMBackend._invoke

    async def spy(self, call, n):
        seen.append(call.kwargs)
        return await real_invoke(self, call, n)

    monkeypatch.setattr(LiteLLMBackend, "_invoke", spy)
    if backend == "disk":
        spec = str(tmp_path / "store")
    else:
        spec = request.getfixturevalue("redis_url_with_prefix")
    cachesaver_litellm.register(store=spec, timeout=0.01)
    kwargs = dict(model="cachesaver/openai/fake-model", api_base=fake_server.base_url, api_key=SECRET_KEY,
                  extra_headers={"Authorization": f"Bearer {SECRET_HEADER}"}, max_retries=0)

    def msgs(text):
        return [{"role": "user", "content": text}]

    await asyncio.gather(*(litellm.acompletion(messages=msgs("colour"), n=2, metadata={"cachesaver_namespace": f"N{i}"},
                                               **kwargs) for i in range(3)))
    stream = await litellm.acompletion(messages=msgs("colour"), stream=True, metadata={"cachesaver_namespace": "S"},
                                       **kwargs)
    [chunk async for chunk in stream]
    for status in (500, 429):
        fake_server.fail_next(status)
        with pytest.raises(Exception):
            await litellm.acompletion(messages=msgs(f"fails {status}"), **kwargs)
    router = CacheSaverRouter(model_list=[{"model_name": "gpt", "litellm_params": {
        "model": "openai/fake-model", "api_base": fake_server.base_url, "api_key": SECRET_KEY,
        "extra_headers": {"Authorization": f"Bearer {SECRET_HEADER}"}}}], store=spec, timeout=0.01)
    try:
        await router.acompletion(model="gpt", messages=msgs("router"), metadata={"cachesaver_namespace": "R"})
    finally:
        await router.aclose()
    stats = json.dumps(cachesaver_litellm.stats().as_dict()) + cachesaver_litellm.stats().summary()
    cachesaver_litellm.unregister()

    # the sentinels really travelled: direct calls carry them (Router deployments keep their own)
    assert sum(k.get("api_key") == SECRET_KEY for k in seen) == 3  # merged call, 500, 429
    assert any(SECRET_HEADER in json.dumps(k.get("extra_headers") or k.get("headers") or {}) for k in seen)
    await _assert_nothing_written_holds_a_secret(
        spec, backend, tmp_path, capsys, request, cli_commands=[["export", str(tmp_path / "cli.jsonl")]])
    _assert_clean("the stats", stats)
    _assert_clean("the log records", "\n".join(r.getMessage() for r in all_logs.records))


async def test_a_provider_error_that_echoes_the_key_is_not_logged_with_it(
        litellm_provider, fake_server, tmp_path, all_logs):
    litellm, cachesaver_litellm = litellm_provider
    cachesaver_litellm.register(store=str(tmp_path / "store"), timeout=0.01)
    fake_server.fail_next(401, body=json.dumps({"error": {
        "message": f"Incorrect API key provided: {SECRET_KEY}", "type": "invalid_request_error",
        "code": "invalid_api_key"}}))
    with pytest.raises(litellm.exceptions.AuthenticationError):
        await litellm.acompletion(model="cachesaver/openai/fake-model", messages=[{"role": "user", "content": "hi"}],
                                  api_base=fake_server.base_url, api_key=SECRET_KEY, max_retries=0)
    cachesaver_litellm.unregister()
    ours = [r.getMessage() for r in all_logs.records if r.name.startswith("cachesaver")]
    _assert_clean("cachesaver's log records", "\n".join(ours))


def test_registering_a_redis_url_with_a_password_does_not_log_it(litellm_provider, all_logs, redis_store_factory):
    _, cachesaver_litellm = litellm_provider
    url = redis_store_factory.url.replace("redis://", f"redis://:{SECRET_PASSWORD}@")
    cachesaver_litellm.register(store=f"{url}?prefix={redis_store_factory.prefix}")
    cachesaver_litellm.unregister()
    _assert_clean("the log records", "\n".join(r.getMessage() for r in all_logs.records))


@pytest.mark.parametrize("backend", ["disk", "redis"])
async def test_langchain_secrets_never_reach_store_exports_logs_or_cli(
        backend, fake_server, tmp_path, all_logs, capsys, request):
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI

    from cachesaver_langchain import CacheSaverChatModel, cachesaver_config

    from langchain_core.callbacks import BaseCallbackHandler

    class Traces(BaseCallbackHandler):
        """What a tracer (LangSmith, a log handler) would receive and write."""

        def __init__(self) -> None:
            self.seen: list[str] = []

        def on_chat_model_start(self, serialized, messages, **kwargs):
            self.seen.append(repr((serialized, messages, kwargs)))

        def on_llm_end(self, response, **kwargs):
            self.seen.append(repr((response, kwargs)))

        def on_llm_error(self, error, **kwargs):
            self.seen.append(repr((error, kwargs)))

    traces = Traces()

    def config(ns):
        return {**cachesaver_config(ns), "callbacks": [traces]}

    spec = str(tmp_path / "store") if backend == "disk" else request.getfixturevalue("redis_url_with_prefix")
    inner = ChatOpenAI(model="fake-model", base_url=fake_server.base_url, api_key=SECRET_KEY, max_retries=0,
                       default_headers={"X-Auth": f"Bearer {SECRET_HEADER}"})
    chat = CacheSaverChatModel(chat_model=inner, store=spec)
    try:
        await chat.abatch(["colour?"] * 3, config=[config(f"N{i}") for i in range(3)])
        [c async for c in chat.astream("colour?", config=config("S"))]
        fake_server.fail_next(500)
        with pytest.raises(Exception):
            await chat.ainvoke("fails?", config=config("F"))
        stats = str(chat.stats)
    finally:
        chat.close()
    assert fake_server.request_count == 2 and len(traces.seen) >= 8
    await _assert_nothing_written_holds_a_secret(spec, backend, tmp_path, capsys, request)
    _assert_clean("the stats", stats)
    # Traces carry the inner model's own serialization, which in plain LangChain already holds
    # ``default_headers`` verbatim (api_key is a SecretStr there): only the key is ours to check.
    assert SECRET_KEY not in "\n".join(traces.seen)
    _assert_clean("the log records", "\n".join(r.getMessage() for r in all_logs.records))


# Credentials a user puts into *output-shaping* parameters (key policy 2, issue 20): they reach
# the provider and are keyed like any content (nothing is dropped for how it looks), so they are
# in the local store; they never leave the machine: an export or bundle refuses with the JSON
# path (never the value), ``inspect`` masks them, and no log record holds them.
CREDENTIAL_FORMS = {
    "extra_body api_key": ({"extra_body": {"api_key": SECRET_KEY}}, "$.params.extra_body.api_key"),
    "api_token": ({"api_token": SECRET_KEY}, "$.params.api_token"),
    "token": ({"token": SECRET_KEY}, "$.params.token"),
    "private_key": ({"private_key": SECRET_KEY}, "$.params.private_key"),
    "authorization value": ({"authorization": f"Bearer {SECRET_HEADER}"}, "$.params.authorization"),
    "nested value": ({"extra_body": {"options": {"x": f"Bearer {SECRET_HEADER}"}}}, "$.params.extra_body.options.x"),
}


async def _assert_published_nowhere(spec, tmp_path, capsys, paths, all_logs=None):
    """The store holds the request; exports, bundles, ``inspect`` and logs never show it."""
    from cachesaver.bundle import write_bundle
    from cachesaver.cli import main as cli
    from cachesaver.errors import SecretFoundError

    target = tmp_path / "export.jsonl"
    with pytest.raises(SecretFoundError) as refused:
        await export_jsonl(spec, target)
    message = str(refused.value)
    assert not target.exists()
    for path in paths:
        assert path in message
    _assert_clean("the export refusal", message)
    consumption = {"ns": {key: 1 for key, _, _ in refused.value.findings}}
    with pytest.raises(SecretFoundError):
        await write_bundle(spec, consumption, tmp_path / "paper.csbundle")
    assert not (tmp_path / "paper.csbundle").exists()
    capsys.readouterr()
    assert await asyncio.to_thread(cli, ["export", str(tmp_path / "cli.jsonl"), "--cache", spec]) != 0
    assert await asyncio.to_thread(cli, ["inspect", "--prompt", "colour", "--all", "--cache", spec]) == 0
    shown = capsys.readouterr()
    _assert_clean("the CLI output", shown.out + shown.err)
    if all_logs is not None:
        _assert_clean("the log records", "\n".join(r.getMessage() for r in all_logs.records))


async def test_litellm_credentials_in_output_shaping_params_are_sent_and_never_published(
        litellm_provider, fake_server, tmp_path, capsys, all_logs):
    litellm, cachesaver_litellm = litellm_provider
    spec = str(tmp_path / "store")
    cachesaver_litellm.register(store=spec, timeout=0.01)
    for i, (name, (form, _)) in enumerate(CREDENTIAL_FORMS.items()):
        await litellm.acompletion(model="cachesaver/openai/fake-model", api_base=fake_server.base_url,
                                  api_key="sk-test", max_retries=0, metadata={"cachesaver_namespace": "A"},
                                  messages=[{"role": "user", "content": f"colour {i}"}], **form)
        sent = json.dumps(fake_server.requests[-1])
        assert SECRET_KEY in sent or SECRET_HEADER in sent, f"{name} did not reach the provider"
    cachesaver_litellm.unregister()
    ours = [r for r in all_logs.records if r.name.startswith("cachesaver")]
    _assert_clean("cachesaver's log records", "\n".join(r.getMessage() for r in ours))
    await _assert_published_nowhere(spec, tmp_path, capsys, [path for _, path in CREDENTIAL_FORMS.values()])


def test_credentials_in_an_api_base_are_never_keyed(litellm_provider):
    """``register(key_api_base=True)`` keys the endpoint, never the user info in it."""
    from cachesaver.keys import canonical_json
    from cachesaver.typedefs import request_fields
    from cachesaver_litellm._provider import build_request

    def meta(api_base):
        request = build_request(model="cachesaver/openai/fake-model", messages=[{"role": "user", "content": "x"}],
                                optional_params={}, litellm_params={}, api_key=None, api_base=api_base,
                                headers=None, timeout=None, default_namespace="d", key_api_base=True)
        return canonical_json(request_fields(request))

    with_password = meta(f"https://user:{SECRET_PASSWORD}@llm.example/v1")
    assert SECRET_PASSWORD.encode() not in with_password and b"llm.example/v1" in with_password
    assert with_password == meta("https://llm.example/v1")  # same endpoint, same samples
    assert meta("https://other.example/v1") != with_password


async def test_langchain_credentials_in_model_params_are_sent_and_never_published(fake_server, tmp_path, capsys):
    from langchain_openai import ChatOpenAI

    from cachesaver_langchain import CacheSaverChatModel

    spec = str(tmp_path / "store")
    inner = ChatOpenAI(model="fake-model", base_url=fake_server.base_url, api_key="sk-test", max_retries=0,
                       extra_body={"token": SECRET_KEY, "options": {"auth": f"Bearer {SECRET_HEADER}"}})
    chat = CacheSaverChatModel(chat_model=inner, store=spec)
    await chat.ainvoke("colour", config={"metadata": {"cachesaver_namespace": "A"}})
    chat.close()
    assert SECRET_KEY in json.dumps(fake_server.requests[-1])  # it reached the provider
    await _assert_published_nowhere(spec, tmp_path, capsys,
                                    ["$.params.extra_body.token", "$.params.extra_body.options.auth"])
