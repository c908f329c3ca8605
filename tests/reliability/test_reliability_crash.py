"""G6 under fire: worker processes killed with SIGKILL at random moments, on disk and on Redis.

A worker runs a long, deterministic workload (merged calls across namespaces, partial hits,
n = 1..3) and writes one line per response *after* the pipeline returned it. We kill it at a
seeded-random moment (including before its first answer), restart, and after every kill check:

- the store opens cleanly (SQLite ``integrity_check`` on disk) and every stored sample decodes;
- every sample a worker printed is in the store, at exactly the index its namespace's ledger
  gave it (private runs: the position the request sequence implies, so every restart hands
  out the same samples again; shared runs: positions persist across the crash, no sample is
  ever handed out twice in one namespace, and the ledger is at or past every returned sample);
- at the end, an in-process replay returns identical samples and generates only what the
  store was missing (G4, G2 after crashes).

Workers are forked from one pre-imported "zygote" process, so a kill round costs the random
delay, not a Python start-up (~0.4 s); each child is an ordinary process killed with SIGKILL.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from cachesaver.keys import request_key
from cachesaver.pipelines import OnlineAPI
from cachesaver.opening import open_store
from cachesaver.typedefs import Request

KILLS = 12  # per run mode: 24 kills per backend
#: Seconds between fork and SIGKILL, drawn uniformly: some kills land while the store opens.
KILL_WINDOW = (0.0, 0.25)
RUN_ID = "crash-exp"
#: Redis generation lease lifetime: how long a killed holder can delay the next worker.
LEASE_TTL = 0.2

# The workload, shared verbatim by the workers and by the checks below.
WORKLOAD = r'''
from cachesaver.typedefs import Request

def step_requests(i):
    """Step i: 4 requests; j=0,1 share a prompt, as do j=2,3 (merged calls, other namespaces)."""
    return [
        Request(prompt=f"p{(3 * i + j // 2) % 11}", n=1 + (i + j) % 3,
                namespace=f"ns{(i + 2 * j) % 5}", request_id=f"{i:06d}-{j}")
        for j in range(4)
    ]
'''

ZYGOTE = WORKLOAD + r'''
import asyncio, json, os, sys, traceback
from cachesaver.pipelines import OnlineAPI
from cachesaver.opening import open_store
from cachesaver.testing import FakeModel
import cachesaver.stores.disk, cachesaver.codec, cachesaver.cacher
try:
    import cachesaver.stores.redis
except ImportError:
    pass


class Tagged(FakeModel):
    def sample_text(self, prompt, k):
        return f"{self.tag}|{prompt}|{k}"


async def work(store, tag, run_id, steps):
    model = Tagged(latency=0.0005)
    model.tag = tag
    async with OnlineAPI(model=model, cache=store, batch_size=8, timeout=0.001, run_id=run_id) as p:
        async def one(r):
            resp = await p.request(r)
            os.write(1, (json.dumps([r.request_id, resp.data]) + "\n").encode())
        for i in range(steps):
            await asyncio.gather(*(one(r) for r in step_requests(i)))
    os.write(1, b"DONE\n")


for line in sys.stdin:
    cmd = json.loads(line)
    if "run" in cmd:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                fd = os.open(cmd["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                asyncio.run(work(**cmd["run"]))
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        print(pid, flush=True)
    elif "wait" in cmd:
        _, status = os.waitpid(cmd["wait"], 0)
        print(status, flush=True)
'''

_ns: dict = {}
exec(WORKLOAD, _ns)
step_requests = _ns["step_requests"]


class Zygote:
    """A Python process with everything imported that forks one worker per round."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def _ask(self, cmd: dict) -> int:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the zygote process died"
        return int(line)

    def start(self, out: str, **run) -> int:
        return self._ask({"out": out, "run": run})

    def kill(self, pid: int) -> int:
        """SIGKILL ``pid`` (a worker we forked) and return its wait status."""
        os.kill(pid, signal.SIGKILL)
        return self._ask({"wait": pid})

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture
def zygote():
    z = Zygote()
    yield z
    z.close()


def wait_for_an_answer(path: str, timeout: float = 60.0) -> None:
    """Block until the worker writing ``path`` has written its first complete answer."""
    deadline = time.monotonic() + timeout
    while not read_lines(path):
        assert time.monotonic() < deadline, f"no answer in {path} after {timeout} s"
        time.sleep(0.005)


def read_lines(path: str) -> list[tuple[str, list]]:
    """Complete lines the worker wrote before it died (a torn last line is not an answer)."""
    out: list[tuple[str, list]] = []
    if not os.path.exists(path):  # killed before it opened its output
        return out
    with open(path) as fh:
        for line in fh:
            if not line.endswith("\n") or line == "DONE\n":
                continue
            rid, data = json.loads(line)
            out.append((rid, data))
    return out


def expected_slots(max_step: int) -> dict[str, tuple[str, str, int, int]]:
    """rid -> (namespace, prompt, position, n) for a run replaying steps 0..max_step from 0."""
    positions: dict[tuple[str, str], int] = defaultdict(int)
    slots = {}
    for i in range(max_step + 1):
        for r in step_requests(i):  # request_id order inside a step
            slot = (r.namespace, r.prompt)
            slots[r.request_id] = (r.namespace, r.prompt, positions[slot], r.n)
            positions[slot] += r.n
    return slots


def key_of(prompt: str) -> str:
    return request_key(Request(prompt=prompt))


def integrity_ok(directory: str) -> None:
    con = sqlite3.connect(os.path.join(directory, "cache.db"))
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


async def open_and_dump(spec: str, read_store, directory: str | None):
    """Open the store as a restarted process would; every list must be whole and decodable."""
    if directory is not None and os.path.exists(os.path.join(directory, "cache.db")):
        integrity_ok(directory)
    store = open_store(spec)
    try:
        lists = await read_store(store)
        ledger = {(ns, key): pos async for run, ns, key, pos in store.iter_ledger() if run == RUN_ID}
    finally:
        await store.aclose()
    for key, samples in lists.items():
        assert len(samples) == len(set(samples)), f"key {key} holds a sample twice"
    return lists, ledger


def check_private(rounds: list[list[tuple[str, list]]], lists: dict) -> None:
    """Every round replayed from sample 0: each printed answer sits where the sequence puts it."""
    max_step = max((int(rid[:6]) for lines in rounds for rid, _ in lines), default=0)
    slots = expected_slots(max_step)
    for lines in rounds:
        for rid, data in lines:
            _, prompt, pos, n = slots[rid]
            assert data == lists[key_of(prompt)][pos:pos + n], f"request {rid} got samples not at its ledger slot"


def check_shared(rounds: list[list[tuple[str, list]]], lists: dict, ledger: dict) -> None:
    """One run across crashes: no sample twice per namespace; within a process no gap; ledger ahead."""
    taken: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)  # slot -> (round, start, stop)
    for round_no, lines in enumerate(rounds):
        for rid, data in lines:
            i, j = int(rid[:6]), int(rid[7:])
            r = step_requests(i)[j]
            stored = lists[key_of(r.prompt)]
            start = stored.index(data[0])
            assert stored[start:start + len(data)] == data, f"request {rid} got non-contiguous samples"
            taken[(r.namespace, r.prompt)].append((round_no, start, start + len(data)))
    for (ns, prompt), spans in taken.items():
        spans.sort(key=lambda s: s[1])
        for (r1, s1, e1), (r2, s2, e2) in zip(spans, spans[1:]):
            assert e1 <= s2, f"namespace {ns} got samples {s2}..{e1 - 1} of {prompt} twice (G1 across a crash)"
            if r1 == r2:  # same process: positions advance without holes
                assert e1 == s2, f"namespace {ns} skipped samples {e1}..{s2 - 1} of {prompt} inside one process"
        assert ledger[(ns, key_of(prompt))] >= spans[-1][2], "a returned sample is not committed in the ledger"


async def replay_private(spec: str, rounds: list, tagged_model) -> None:
    """A fresh in-process run over every step seen returns what the killed runs printed."""
    printed = {rid: data for lines in rounds for rid, data in lines}
    max_step = max(int(rid[:6]) for rid in printed)
    store = open_store(spec)
    stored_before = {key: await store.length(key) async for key in store.iter_keys()}
    model = tagged_model("replay")
    need: dict[str, int] = defaultdict(int)
    async with OnlineAPI(model=model, cache=store, batch_size=8, timeout=0.001) as p:
        for i in range(max_step + 1):
            reqs = step_requests(i)
            for r, resp in zip(reqs, await asyncio.gather(*(p.request(r) for r in reqs))):
                if r.request_id in printed:
                    assert resp.data == printed[r.request_id], f"replay of {r.request_id} differs (G4)"
        for ns, prompt, pos, n in expected_slots(max_step).values():
            need[key_of(prompt)] = max(need[key_of(prompt)], pos + n)
    await store.aclose()
    # G2 after crashes: the replay generated exactly what no killed worker had stored.
    assert model.samples_generated == sum(max(0, k - stored_before.get(key, 0)) for key, k in need.items())


@pytest.mark.parametrize("run_mode", ["private", "shared"])
@pytest.mark.parametrize("backend", ["disk", "redis"])
async def test_kill_minus_9_at_random_moments_loses_nothing_returned(
        backend, run_mode, zygote, tmp_path, read_store, tagged_model, request):
    if backend == "disk":
        directory = str(tmp_path / "store")
        spec = directory
    else:
        directory = None
        # A killed worker may hold a key's generation lease; it expires after lease_ttl.
        spec = request.getfixturevalue("redis_url_with_prefix") + f"&lease_ttl={LEASE_TTL}"
    rng = random.Random(f"{backend}-{run_mode}")
    rounds: list[list[tuple[str, list]]] = []
    killed_mid_workload = 0
    for round_no in range(KILLS):
        out = str(tmp_path / f"round-{round_no}.jsonl")
        pid = zygote.start(out, store=spec, tag=f"r{round_no}",
                           run_id=RUN_ID if run_mode == "shared" else None, steps=10**6)
        if round_no % 2:
            # Every other kill lands after the first answer whatever the machine's load (a busy
            # machine can take longer than the whole window to start a worker); the others land
            # at any moment from the fork, also while the store opens.
            wait_for_an_answer(out)
        time.sleep(rng.uniform(*KILL_WINDOW))
        status = zygote.kill(pid)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
            f"worker {round_no} was not killed mid-run (status {status}): see its stderr"
        lines = read_lines(out)
        killed_mid_workload += bool(lines)
        rounds.append(lines)
        lists, ledger = await open_and_dump(spec, read_store, directory)
        if run_mode == "private":
            check_private(rounds, lists)
        else:
            check_shared(rounds, lists, ledger)
    assert killed_mid_workload >= KILLS // 2, "too few kills landed after the first answer"
    assert sum(map(len, rounds)) > 100
    if run_mode == "private":
        await replay_private(spec, rounds, tagged_model)
