"""`cachesaver batches collect` and `cancel`: a batch whose process died is collected (or
cancelled) from the command line, through litellm's real batch calls against the fake server,
on a real directory store and a real Redis; the listing shows billed and pending cost.

The engine finds the litellm and langchain backends through the ``cachesaver.batch_backends``
entry points (installed with the package: after adding one, ``pip install -e . --no-deps``)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from _helpers import BATCH_IN, BATCH_OUT, QUICK, ask, texts

import cachesaver_litellm
from cachesaver.batchapi.listing import money
from cachesaver.cli import main
from cachesaver.codec import decode_sample
from cachesaver.opening import open_store

HERE = os.path.dirname(__file__)
MAX_TOKENS = 20


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    """The key litellm reads from the environment (the journal keeps none)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-from-env")


def _run(spec, fn):
    async def go():
        store = open_store(spec)
        try:
            return await fn(store)
        finally:
            await store.aclose()

    return asyncio.run(go())


def _batches(spec):
    return _run(spec, lambda store: store.batch_journal().batches())


def _lines(spec, batch_id):
    return _run(spec, lambda store: store.batch_journal().lines(batch_id))


def _samples(spec, keys):
    async def read(store):
        return {key: [decode_sample(raw, key=key, index=i).data for i, raw in enumerate(await store.read(key, 0, 100))]
                for key in keys}

    return _run(spec, read)


def _submit_then_kill(spec, server, batches, options):
    """A child process submits ``batches`` batches of r0..r9 (n=2, minus what is stored) and is
    killed -9 once their ids are recorded (yields once while it is alive)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    argv = [sys.executable, os.path.join(HERE, "_submit_and_wait.py"), spec, server.base_url, json.dumps(options)]
    child = subprocess.Popen(argv, env=env)
    try:
        deadline = time.monotonic() + 60
        while sum(bool(b.provider_batch and b.state == "submitted") for b, _ in _batches(spec)) < batches:
            assert child.poll() is None and time.monotonic() < deadline, "the child did not submit"
            time.sleep(0.05)
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)


def _output_file(server, provider_batch):
    """The output file of a batch as the fake server serves it (over HTTP), by custom_id."""
    def get(path):
        with urllib.request.urlopen(server.base_url.rstrip("/") + path) as response:
            return response.read()

    batch = json.loads(get(f"/batches/{provider_batch}"))
    rows = [json.loads(raw) for raw in get(f"/files/{batch['output_file_id']}/content").splitlines() if raw.strip()]
    return {row["custom_id"]: row["response"]["body"] for row in rows}


def _estimate(questions):
    """A line's cost as estimated before its answer: its prompt's tokens and n x max_tokens, at
    litellm's batch prices for gpt-4o-mini."""
    import litellm

    return sum(litellm.token_counter(model="gpt-4o-mini", messages=[{"role": "user", "content": q}]) * BATCH_IN
               + 2 * MAX_TOKENS * BATCH_OUT for q in questions)


def _litellm_content(sample):
    return sample["choice"]["message"]["content"]


def _langchain_content(sample):
    return sample["message"]["kwargs"]["content"]


def _collected_exactly(spec, server, record, capsys, lines_stored, content=_litellm_content, ids=True):
    """``record`` was collected: exactly what the provider answered, in its order, once, with
    its request and batch price; returns the stored samples by key. ``content`` reads a stored
    sample's text (the adapters store different shapes); ``ids``: samples keep the answer's id."""
    answers = _output_file(server, record.provider_batch)
    lines = _lines(spec, record.id)
    stored = _samples(spec, [line.key for line in lines])
    billed = 0.0
    for line in lines:
        body = answers[line.custom_id]
        assert line.state == "stored" and line.first == 0
        assert [content(s) for s in stored[line.key]] == [c["message"]["content"] for c in body["choices"]]
        if ids:
            assert {s["id"] for s in stored[line.key]} == {body["id"]}
        usage = body["usage"]
        cost = usage["prompt_tokens"] * BATCH_IN + usage["completion_tokens"] * BATCH_OUT
        assert line.cost == pytest.approx(cost, rel=1e-9)
        billed += cost
    assert len(lines) == lines_stored
    counts = {r.id: c for r, c in _batches(spec)}[record.id]
    assert counts["stored"] == lines_stored and counts["open"] == 0
    assert counts["billed"] == pytest.approx(billed, rel=1e-9) and counts["pending"] == 0
    metas = _run(spec, lambda store: asyncio.gather(*(store.get_meta(key) for key in stored)))
    assert all(meta is not None and b"sk-" not in meta for meta in metas)  # stored with its request
    # Collecting again stores nothing twice.
    assert main(["batches", "collect", "--all", "--cache", spec]) == 0
    assert "nothing to collect" in capsys.readouterr().out
    assert _samples(spec, list(stored)) == stored
    return stored, billed


def _ask_again(spec, server, count):
    cachesaver_litellm.register(store=spec, timeout=0.02, batch_api=QUICK)

    async def again():
        return await asyncio.gather(*(ask(server, f"r{i}", "ns", 2, max_tokens=MAX_TOKENS) for i in range(count)),
                                    return_exceptions=True)

    results = asyncio.run(again())
    assert not [r for r in results if isinstance(r, BaseException)], results
    return results


def test_collect_and_cancel_the_batches_of_a_killed_process(store_path, capsys):
    """Two batches of a process killed -9: one cancelled (its lines asked again later go into
    one new batch, and only they), one collected from the command line (stored once, exactly
    as answered, never submitted again); the listing shows pending and billed cost."""
    from cachesaver.testing.server import FakeOpenAIServer

    with FakeOpenAIServer(seed=7, batch_delay=60.0) as server:
        killed = _submit_then_kill(store_path, server, 2, {"kwargs": {"max_tokens": MAX_TOKENS}, "window": 0.3,
                                                           "waves": [[0, 5], [5, 10]]})
        next(killed)
        # While the submitting process lives, its batches are left to it.
        assert main(["batches", "collect", "--all", "--cache", store_path]) == 0
        assert capsys.readouterr().out.count("collector is alive") == 2
        next(killed, None)
        assert server.batches.created == 2
        [(second, counts2), (first, counts1)] = _batches(store_path)
        assert counts1["open"] == counts2["open"] == 5 and counts1["samples"] == 10

        # Pending cost, estimated at batch prices before any answer.
        assert counts1["pending"] == pytest.approx(_estimate(f"r{i}" for i in range(5)), rel=1e-9)
        assert counts1["unestimated"] == 0
        assert main(["batches", "--cache", store_path]) == 0
        assert (f"10 lines pending, estimated {money(_estimate(f'r{i}' for i in range(10)))} at batch prices"
                in capsys.readouterr().out)

        # Cancel the second: asks for --yes, then cancels at the provider and closes its lines.
        assert main(["batches", "cancel", second.id[:12], "--cache", store_path]) == 2
        assert "--yes" in capsys.readouterr().err
        assert server.batches.batches[second.provider_batch]["status"] in ("validating", "in_progress")
        assert main(["batches", "cancel", second.provider_batch, "--yes", "--wait", "10", "--cache", store_path]) == 0
        assert "5 not answered (submitted again when asked)" in capsys.readouterr().out
        assert server.batches.batches[second.provider_batch]["status"] == "cancelled"
        second, counts2 = {r.id: (r, c) for r, c in _batches(store_path)}[second.id]
        assert second.state == "cancelled" and counts2["open"] == 0 and counts2["lost"] == 5

        # Collect the first once it ends.
        server.batches.completion_delay = 0.15
        assert main(["batches", "collect", first.id[:12], "--wait", "20", "--cache", store_path]) == 0
        reported = capsys.readouterr().out
        assert "5 lines stored (10 samples" in reported and "sk-" not in reported
        assert server.batches.created == 2 and server.batches.samples_generated == 10 and server.request_count == 0
        stored, billed = _collected_exactly(store_path, server, first, capsys, 5)
        assert main(["batches", "--cache", store_path]) == 0
        assert f"billed {money(billed)} for the stored lines; 0 lines pending" in capsys.readouterr().out

        # A new run: r0..r4 from the store (paid by the batch), r5..r9 in one new batch.
        results = _ask_again(store_path, server, 10)
        assert server.batches.created == 3
        assert server.batches.line_ns(list(server.batches.batches)[2]) == [2] * 5  # only the cancelled lines
        assert sorted(texts(r) for r in results[:5]) == \
            sorted([s["choice"]["message"]["content"] for s in samples] for samples in stored.values())
        flags = [r._hidden_params["cachesaver"]["cached"] for r in results]
        assert all(all(f) for f in flags[:5]) and not any(any(f) for f in flags[5:])
        assert server.batches.samples_generated == 20


def test_collect_on_redis_the_batch_of_a_process_of_another_host_that_died(batch_server, redis_store_factory,
                                                                           capsys):
    """On Redis, a batch submitted from another host is collected once that host's process
    stops renewing its liveness (``lease_ttl``, 1 s here), never while it does."""
    spec = f"{redis_store_factory.url}?prefix={redis_store_factory.prefix}&lease_ttl=1"
    batch_server.batches.completion_delay = 60.0  # pending while the child lives
    killed = _submit_then_kill(spec, batch_server, 1, {"kwargs": {"max_tokens": MAX_TOKENS}, "window": 0.3,
                                                       "hostname": "another-host"})
    next(killed)
    [(record, counts)] = _batches(spec)
    assert record.owner.startswith("another-host:")
    time.sleep(1.2)  # longer than its liveness lasts without renewal: the child renews it
    assert main(["batches", "collect", "--all", "--cache", spec]) == 0
    assert "collector is alive (pid" in capsys.readouterr().out
    next(killed, None)
    batch_server.batches.completion_delay = 0.15
    deadline = time.monotonic() + 20
    while _run(spec, lambda store: store.batch_journal().alive(record.owner)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    [(record, counts)] = _batches(spec)
    assert counts["open"] == 10 and counts["pending"] == pytest.approx(_estimate(f"r{i}" for i in range(10)))
    assert main(["batches", "collect", "--all", "--wait", "20", "--cache", spec]) == 0
    assert "10 lines stored (20 samples" in capsys.readouterr().out
    assert batch_server.batches.created == 1 and batch_server.batches.samples_generated == 20
    stored, _billed = _collected_exactly(spec, batch_server, record, capsys, 10)
    results = _ask_again(spec, batch_server, 10)
    assert batch_server.batches.created == 1 and batch_server.request_count == 0  # nothing paid again
    assert sorted(texts(r) for r in results) == \
        sorted([s["choice"]["message"]["content"] for s in samples] for samples in stored.values())
    assert all(f for r in results for f in r._hidden_params["cachesaver"]["cached"])


def test_collect_does_not_store_again_what_the_dead_process_stored_before_marking_it(batch_server, store_path,
                                                                                      capsys):
    """The crash window between appending a line's samples and marking the line stored: collect
    finds them where the line planned them, marks the line stored and appends nothing."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.run([sys.executable, os.path.join(HERE, "_store_then_die.py"), store_path,
                            batch_server.base_url], env=env, timeout=120)
    assert child.returncode == -signal.SIGKILL
    [(record, counts)] = _batches(store_path)
    assert counts["open"] == 4 and batch_server.batches.samples_generated == 8
    keys = [line.key for line in _lines(store_path, record.id)]
    before = _samples(store_path, keys)
    assert sorted(len(samples) for samples in before.values()) == [2, 2, 2, 2]

    assert main(["batches", "collect", record.id, "--cache", store_path]) == 0
    assert _samples(store_path, keys) == before  # before the check: 4 samples each, 2 of them twice
    out = capsys.readouterr().out
    assert "0 lines stored (0 samples" in out and "4 already stored" in out
    [(record, counts)] = _batches(store_path)
    assert counts["stored"] == 4 and counts["open"] == 0 and batch_server.batches.created == 1


def _recorded(spec, info, provider_batch="batch_x"):
    """A batch recorded by a process that is gone (this pid, an earlier boot), with one open line."""
    import socket

    from cachesaver.batchapi.journal import BatchRecord, LineRecord

    owner = f"{socket.gethostname()}:{os.getpid()}:an-earlier-boot:x"

    async def add(store):
        await store.batch_journal().add(BatchRecord("j1", "submitted", owner, 1.0, provider_batch=provider_batch,
                                                    info=info), [LineRecord("j1", "c1", "k1", 2, first=0)])

    _run(spec, add)


def test_a_batch_submitted_through_an_adapter_without_a_backend_is_left_to_it(store_path, capsys):
    _recorded(store_path, {"adapter": "an-adapter", "provider": "openai", "model": "gpt-4o-mini"})
    assert main(["batches", "collect", "--all", "--cache", store_path]) == 0
    assert "submitted through an-adapter" in capsys.readouterr().out
    assert main(["batches", "collect", "j1", "--cache", store_path]) == 1
    assert "the next an-adapter process that asks for one of its keys collects it" in capsys.readouterr().err
    [(record, counts)] = _batches(store_path)
    assert (record.owner.split(":")[2], counts["open"]) == ("an-earlier-boot", 1)  # untouched


def _lc_submit_then_kill(spec, server):
    """A LangChain child submits one batch of r0..r5 (n=1, namespace ns) and is killed -9 once
    its provider batch id is recorded."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "_lc_submit_and_wait.py"), spec, server.base_url],
                             env=env)
    try:
        deadline = time.monotonic() + 60
        while not (os.path.exists(spec) and any(b.provider_batch for b, _ in _batches(spec))):
            assert child.poll() is None and time.monotonic() < deadline, "the child did not submit"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    [(record, counts)] = _batches(spec)
    assert record.info["adapter"] == "langchain" and counts["open"] == 6 and server.batches.created == 1
    return record


def _lc_ask_again(spec, server):
    from _lc_batch_helpers import make_chat

    from cachesaver_langchain import cachesaver_config

    chat = make_chat(server.base_url, spec)
    try:
        return asyncio.run(chat.abatch([f"r{i}" for i in range(6)], config=cachesaver_config("ns")))
    finally:
        chat.close()


def test_collect_the_batch_of_a_killed_langchain_process(batch_server, store_path, capsys, monkeypatch):
    """A batch of a ``CacheSaverChatModel`` process killed -9 is collected from the command line
    through a ``ChatOpenAI`` of the recorded model and endpoint (key from the environment):
    each answer stored once, exactly as the provider answered it, at the batch price; a new run
    then gets them all as hits and submits nothing."""
    record = _lc_submit_then_kill(store_path, batch_server)
    assert record.info["price"] == "litellm" and "sk-" not in repr(record)
    monkeypatch.delenv("OPENAI_API_KEY")
    assert main(["batches", "collect", "--all", "--cache", store_path]) == 1
    assert "set OPENAI_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-from-env")

    assert main(["batches", "collect", "--all", "--wait", "20", "--cache", store_path]) == 0
    reported = capsys.readouterr().out
    assert "6 lines stored (6 samples" in reported and "sk-" not in reported
    stored, _billed = _collected_exactly(store_path, batch_server, record, capsys, 6,
                                         content=_langchain_content, ids=False)
    assert all(len(samples) == 1 for samples in stored.values())
    [(record, _counts)] = _batches(store_path)
    assert record.state == "completed"
    assert batch_server.batches.created == 1 and batch_server.batches.samples_generated == 6

    messages = _lc_ask_again(store_path, batch_server)
    assert batch_server.batches.created == 1 and batch_server.request_count == 0  # nothing paid again
    assert [m.response_metadata["cachesaver"]["cached"] for m in messages] == [True] * 6
    assert sorted(m.content for m in messages) == sorted(_langchain_content(s)
                                                         for samples in stored.values() for s in samples)
    assert batch_server.batches.samples_generated == 6
def test_a_provider_that_cannot_be_reached_is_reported_without_its_message(store_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-0123456789abcdef")
    _recorded(store_path, {"adapter": "litellm", "provider": "openai", "model": "gpt-4o-mini",
                           "endpoint": "http://127.0.0.1:9/v1"})
    assert main(["batches", "collect", "j1", "--cache", store_path]) == 2
    out = capsys.readouterr()
    assert "failed at the provider (APIConnectionError)" in out.err, out
    assert "sk-secret" not in out.out + out.err
    [(record, counts)] = _batches(store_path)
    assert counts["open"] == 1 and record.state == "submitted"  # nothing changed


def test_cancel_the_batch_of_a_killed_langchain_process(batch_server, store_path, capsys):
    """Cancelled from the command line: stopped at the provider, its lines closed as not
    answered; a new run submits them again (all of them, in one new batch) and is answered."""
    batch_server.batches.completion_delay = 60.0  # pending until cancelled
    record = _lc_submit_then_kill(store_path, batch_server)
    assert main(["batches", "cancel", record.id[:12], "--yes", "--wait", "10", "--cache", store_path]) == 0
    assert "6 not answered (submitted again when asked)" in capsys.readouterr().out
    assert batch_server.batches.batches[record.provider_batch]["status"] == "cancelled"
    [(record, counts)] = _batches(store_path)
    assert record.state == "cancelled" and counts["open"] == 0 and counts["lost"] == 6

    batch_server.batches.completion_delay = 0.15
    messages = _lc_ask_again(store_path, batch_server)
    assert batch_server.batches.created == 2
    assert batch_server.batches.line_ns(list(batch_server.batches.batches)[1]) == [1] * 6
    assert [m.response_metadata["cachesaver"]["cached"] for m in messages] == [False] * 6
    assert batch_server.batches.samples_generated == 6
