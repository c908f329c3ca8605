"""Never pay twice, never lose a batch: a process killed -9 after submitting, then a restart."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from _helpers import ask_all
from _helpers import QUICK

import cachesaver_litellm
from cachesaver.stores import DiskStore

HERE = os.path.dirname(__file__)


def _batches(store_path):
    store = DiskStore(store_path)
    try:
        return asyncio.run(store.batch_journal().batches())
    finally:
        store.close()


def test_kill_9_after_submission_then_restart_collects_without_resubmitting(batch_server, store_path, capsys):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "_submit_and_wait.py"), store_path,
                              batch_server.base_url], env=env)
    try:
        deadline = time.monotonic() + 60  # the child imports litellm first (seconds on a busy machine)
        while time.monotonic() < deadline:  # until the batch id is recorded in the store
            if os.path.exists(store_path) and any(b.provider_batch for b, _ in _batches(store_path)):
                break
            assert child.poll() is None, "the child exited before submitting"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    assert batch_server.batches.created == 1
    [(record, counts)] = _batches(store_path)
    assert record.state == "submitted" and counts["open"] == 10 and counts["samples"] == 20
    assert "sk-" not in repr(record)  # no credential in the journal (G7)
    from cachesaver.cli import main

    assert main(["batches", "--cache", store_path]) == 0
    listed = capsys.readouterr().out
    assert record.provider_batch in listed and "submitted" in listed

    # A new process on the same store (here: this one) asks the same questions.
    cachesaver_litellm.register(store=store_path, timeout=0.02, batch_api=QUICK)
    results = asyncio.run(ask_all(batch_server, [(f"r{i}", "ns", 2) for i in range(10)]))
    assert all(not isinstance(r, BaseException) and len(r.choices) == 2 for r in results)
    assert batch_server.batches.created == 1  # collected, not submitted again
    assert batch_server.batches.samples_generated == 20 and batch_server.request_count == 0
    flags = [f for r in results for f in r._hidden_params["cachesaver"]["cached"]]
    assert flags.count(False) == 20  # billed once, to this run's responses
    [(record, counts)] = _batches(store_path)
    assert record.state == "completed" and counts["stored"] == 10 and counts["open"] == 0


def test_a_line_stored_by_a_process_that_died_before_marking_it_is_not_stored_again(batch_server, store_path):
    """The crash window between appending a batch line's samples and marking the line stored:
    a restart that adopts the open line must not append its samples a second time (the list
    would hold each of them twice, and a namespace would be handed one answer twice, G1). It
    checks the index the line was planned for, marks the line stored, and asks only for what
    is missing."""
    from cachesaver.codec import decode_sample

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.run([sys.executable, os.path.join(HERE, "_store_then_die.py"), store_path,
                            batch_server.base_url], env=env, timeout=60)
    assert child.returncode == -signal.SIGKILL
    [(record, counts)] = _batches(store_path)
    assert counts["open"] == 4 and batch_server.batches.samples_generated == 8  # stored, not marked

    cachesaver_litellm.register(store=store_path, timeout=0.02, batch_api=QUICK)
    results = asyncio.run(ask_all(batch_server, [(f"r{i}", "ns", 3) for i in range(4)]))
    assert all(not isinstance(r, BaseException) for r in results), results
    store = DiskStore(store_path)
    try:
        async def lists():
            out = []
            async for key in store.iter_keys():
                raws = await store.read(key, 0, 100)
                out.append([repr(decode_sample(raw, key=key, index=i).data) for i, raw in enumerate(raws)])
            return out

        stored = asyncio.run(lists())
    finally:
        store.close()
    assert sorted(len(texts) for texts in stored) == [3, 3, 3, 3]  # before: 5 each (2 appended twice)
    assert all(len(set(texts)) == len(texts) for texts in stored)
    for r in results:
        got = [c.message.content for c in r.choices]
        assert len(set(got)) == 3  # three distinct samples for each request (G1)
    assert batch_server.batches.samples_generated == 8 + 4  # one more sample per key, nothing twice


def test_a_second_process_waits_for_the_first_ones_batch_instead_of_submitting_the_same_keys(store_path):
    """Two processes on one store, the same keys: the first's batch holds the keys' generation
    leases until the provider answers (here 2.5 s); the second waits for it, however long, and
    then serves the stored samples. Before, it gave up after the store's interactive limit
    (here 0.3 s) and submitted a second batch for the same keys (paid twice)."""
    import json

    from _helpers import texts

    from cachesaver.testing.server import FakeOpenAIServer

    with FakeOpenAIServer(seed=7, batch_delay=2.5) as server:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        child = subprocess.Popen([sys.executable, os.path.join(HERE, "_submit_slow.py"), store_path, server.base_url],
                                 env=env, stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60  # the child imports litellm first (seconds on a busy machine)
            while not (os.path.exists(store_path) and any(b.provider_batch for b, _ in _batches(store_path))):
                assert time.monotonic() < deadline and child.poll() is None, "the child did not submit"
                time.sleep(0.05)
            cachesaver_litellm.register(store=DiskStore(store_path, lease_max_wait=0.3), timeout=0.02,
                                        batch_api=QUICK)
            mine = asyncio.run(ask_all(server, [(f"r{i}", "other", 2) for i in range(4)]))
            out, _ = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode == 0
        assert server.batches.created == 1 and server.batches.samples_generated == 8  # paid once
        assert [texts(r) for r in mine] == json.loads(out)  # another namespace: the same samples
