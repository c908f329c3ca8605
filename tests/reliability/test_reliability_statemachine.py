"""A Hypothesis state machine over the engine API, checking G1-G5 and G8 after every step.

Rules: a single request, a concurrent batch, a failure injected for one prompt, a new run (a new
pipeline on the same store, private or with a shared ``run_id``), a restart (pipeline and store
closed, the store reopened from its directory or URL), and a replay of an earlier run.

The machine keeps its own model of what the engine must do and predicts every response exactly:
which samples (by content: the model's samples are ``"<prompt>#<i>"``), the ``cached`` and
``duplicated`` flags, which model calls with which ``n``, and which callers get the error of a
failed call. Invariants compare the store itself (every list, every shared-run ledger entry)
with the model after each step.

- G1: no (run, namespace) gets a sample of a key twice.
- G2: the store holds exactly the samples the most demanding (run, namespace) consumed, and the
  model is asked for exactly the missing count, once per key per batch (G3).
- G4: replaying any earlier run's successful requests returns identical samples, zero calls.
- G5: a failed call stores nothing, consumes no position, and fails exactly its waiters.
- G8: a new sample is billed (``cached`` false) to its first claimer only; the false flags add up
  to the samples generated; ``duplicated`` marks merged deliveries other than the original.
"""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections import defaultdict
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cachesaver.codec import decode_sample
from cachesaver.keys import request_key
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import DiskStore
from cachesaver.typedefs import Request, Response, SingleRequestModel, Usage

NAMESPACES = ["A", "B", "C"]
PROMPTS = ["p0", "p1", "p2"]
KEYS = {p: request_key(Request(prompt=p)) for p in PROMPTS}

request_st = st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(PROMPTS), st.integers(1, 3))


class ScriptModel(SingleRequestModel):
    """Sample i of a prompt is ``"<prompt>#<i>"``; failures are injected per prompt."""

    def __init__(self) -> None:
        self.made: dict[str, int] = defaultdict(int)
        self.fail: dict[str, int] = defaultdict(int)
        self.calls: list[tuple[str, int]] = []
        self.generated = 0

    async def request(self, request: Request) -> Response:
        prompt = request.prompt
        self.calls.append((prompt, request.n))
        if self.fail[prompt]:
            self.fail[prompt] -= 1
            raise RuntimeError(f"injected failure for {prompt}")
        start = self.made[prompt]
        self.made[prompt] += request.n
        self.generated += request.n
        return Response(data=[f"{prompt}#{i}" for i in range(start, start + request.n)], usage=Usage(1, request.n, 0.0))


class EngineMachine(RuleBasedStateMachine):
    """Subclasses say how to open the store (``open_store``) and what to remove at the end."""

    #: The batch window. Every miss of one tick must land in one batch for the exact model-call
    #: prediction; a store whose reads suspend (Redis) needs a window longer than the tick check.
    window = 0.001

    def open_store(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def destroy_store(self) -> None:  # pragma: no cover - overridden
        pass

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.model = ScriptModel()
        self.lists: dict[str, list[str]] = {p: [] for p in PROMPTS}      # what the store must hold
        self.positions: dict[str, dict[tuple[str, str], int]] = {}        # run -> (ns, prompt) -> pos
        self.delivered: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        self.logs: dict[str, list[tuple[str, str, int, list[str]]]] = defaultdict(list)
        self.billed = 0
        self.step = 0
        self.store = None
        self.pipeline: Optional[OnlineAPI] = None
        self.run_name = ""
        self.shared_run: Optional[str] = None

    def run(self, coro) -> Any:
        return self.loop.run_until_complete(coro)

    # -- lifecycle -----------------------------------------------------------------------------
    def _start_pipeline(self, shared_run: Optional[str], run_name: str) -> None:
        self.shared_run = shared_run
        self.run_name = run_name
        self.positions.setdefault(run_name, defaultdict(int))
        self.pipeline = OnlineAPI(model=self.model, cache=self.store, batch_size=10_000, timeout=self.window,
                                  run_id=shared_run)

    def _stop_pipeline(self) -> None:
        if self.pipeline is not None:
            self.run(self.pipeline.aclose())
            leftovers = [self.pipeline._inflight_ids, self.pipeline._tick, self.pipeline.queues.held(),
                         self.pipeline.cacher._turns, {k: v for k, v in self.pipeline.cacher._unbilled.items() if v}]
            assert not any(leftovers), leftovers
            self.pipeline = None

    @initialize()
    def setup(self) -> None:
        self.store = self.open_store()
        self._start_pipeline(None, "private-0")

    @rule(shared=st.booleans())
    def new_run(self, shared: bool) -> None:
        self._stop_pipeline()
        name = f"run-{len(self.positions)}"
        self._start_pipeline(name if shared else None, name)

    @rule()
    def restart(self) -> None:
        """Close everything and reopen the store: a shared run continues, a private one restarts."""
        self._stop_pipeline()
        self.run(self.store.aclose())
        self.store = self.open_store()
        if self.shared_run is not None:
            self._start_pipeline(self.shared_run, self.run_name)
        else:
            self._start_pipeline(None, f"run-{len(self.positions)}")

    @rule(prompt=st.sampled_from(PROMPTS), count=st.integers(1, 2))
    def inject_failure(self, prompt: str, count: int) -> None:
        self.model.fail[prompt] += count

    # -- requests ------------------------------------------------------------------------------
    @rule(req=request_st)
    def request(self, req) -> None:
        self._batch([req])

    @rule(reqs=st.lists(request_st, min_size=2, max_size=7))
    def batch(self, reqs) -> None:
        self._batch(reqs)

    def _batch(self, specs) -> None:
        self.step += 1
        requests = [Request(prompt=p, n=n, namespace=ns, request_id=f"{self.step:04d}-{i:02d}")
                    for i, (ns, p, n) in enumerate(specs)]
        expected, calls = self._predict(requests)
        before = len(self.model.calls)
        async def send():
            return await asyncio.gather(*(self.pipeline.request(r) for r in requests), return_exceptions=True)

        results = self.run(send())
        assert sorted(self.model.calls[before:]) == sorted(calls), "model calls (G2/G3)"
        errors: dict[str, list[BaseException]] = defaultdict(list)
        for r, want, got in zip(requests, expected, results):
            if want == "fail":
                assert isinstance(got, RuntimeError) and r.prompt in str(got), (r, got)
                errors[r.prompt].append(got)
                continue
            assert isinstance(got, Response), (r, got)
            data, cached, duplicated = want
            assert (got.data, got.cached, got.duplicated) == (data, cached, duplicated), r
            self.billed += cached.count(False)
            self.delivered[(self.run_name, r.namespace, r.prompt)].extend(got.data)
            self.logs[self.run_name].append((r.namespace, r.prompt, r.n, got.data))
        for same_call in errors.values():  # G5: one call, one error, reaching all its waiters
            assert all(e is same_call[0] for e in same_call)

    def _predict(self, requests):
        """What the engine must answer, per request, and which model calls it must make."""
        positions = self.positions[self.run_name]
        expected: dict[str, Any] = {}
        calls = []
        for prompt in PROMPTS:
            mine = [r for r in requests if r.prompt == prompt]  # request_id order
            stored = len(self.lists[prompt])
            queued: dict[str, list[Request]] = {}
            for r in mine:
                slot = (r.namespace, prompt)
                if r.namespace not in queued and positions[slot] + r.n <= stored:  # a full hit
                    pos = positions[slot]
                    expected[r.request_id] = (self.lists[prompt][pos:pos + r.n], [True] * r.n, [False] * r.n)
                    positions[slot] += r.n
                else:
                    queued.setdefault(r.namespace, []).append(r)
            if not queued:
                continue
            target = max(positions[(ns, prompt)] + sum(r.n for r in rs) for ns, rs in queued.items())
            missing = target - stored
            if missing > 0:
                calls.append((prompt, missing))
                if self.model.fail[prompt]:
                    for rs in queued.values():
                        for r in rs:
                            expected[r.request_id] = "fail"
                    continue
                self.lists[prompt] += [f"{prompt}#{i}" for i in range(stored, stored + missing)]
            call = range(stored, stored + max(missing, 0))
            plan = []
            for ns, rs in queued.items():  # demands in order of their first request_id
                for r in rs:
                    plan.append((r, positions[(ns, prompt)]))
                    positions[(ns, prompt)] += r.n
            receivers = sum(any(i in call for i in range(pos, pos + r.n)) for r, pos in plan)
            billed: set[int] = set()
            original_given = False
            for r, pos in plan:
                cached, duplicated = [], []
                for i in range(pos, pos + r.n):
                    new = i in call and i not in billed
                    billed.add(i)
                    cached.append(not new)
                    if i in call:
                        duplicated.append(original_given and receivers >= 2)
                        original_given = True
                    else:
                        duplicated.append(False)
                expected[r.request_id] = (self.lists[prompt][pos:pos + r.n], cached, duplicated)
        return [expected[r.request_id] for r in requests], calls

    @precondition(lambda self: any(self.logs.values()))
    @rule(data=st.data())
    def replay(self, data) -> None:
        """G4: an earlier run's successful requests, replayed one by one in a new run, sample for sample."""
        run_name = data.draw(st.sampled_from(sorted(name for name, log in self.logs.items() if log)))
        calls = len(self.model.calls)

        async def again():
            async with OnlineAPI(model=self.model, cache=self.store, batch_size=1, timeout=0) as p:
                for i, (ns, prompt, n, got) in enumerate(self.logs[run_name]):
                    # Ids name a request across runs (a later run gives an id the samples it took):
                    # each run's replay uses its own, as a program replaying that run would.
                    resp = await p.request(Request(prompt=prompt, n=n, namespace=ns,
                                                   request_id=f"replay-{run_name}-{i}"))
                    assert resp.data == got and all(resp.cached), (run_name, i)

        self.run(again())
        assert len(self.model.calls) == calls, "a replay called the model (G4)"

    # -- invariants ----------------------------------------------------------------------------
    @invariant()
    def store_holds_exactly_the_minimal_lists(self) -> None:
        if self.store is None:
            return

        async def read():
            out = {}
            for prompt, key in KEYS.items():
                raws = await self.store.read(key, 0, 10_000)
                assert await self.store.length(key) == len(raws)
                out[prompt] = [decode_sample(raw, key=key, index=i).data for i, raw in enumerate(raws)]
            return out

        assert self.run(read()) == self.lists  # G2, G5 (nothing partial), G6
        for prompt in PROMPTS:  # G2: generated = the most any (run, namespace) consumed
            most = max([pos for run in self.positions.values() for (ns, p), pos in run.items() if p == prompt],
                       default=0)
            assert len(self.lists[prompt]) == most

    @invariant()
    def no_sample_twice_in_a_namespace(self) -> None:
        for slot, got in self.delivered.items():
            assert len(got) == len(set(got)), slot  # G1

    @invariant()
    def billed_flags_add_up_to_generated(self) -> None:
        assert self.billed == self.model.generated  # G8

    @invariant()
    def shared_ledger_in_the_store_matches(self) -> None:
        if self.store is None or self.shared_run is None:
            return

        async def entries():
            return {(ns, key): pos async for run, ns, key, pos in self.store.iter_ledger() if run == self.shared_run}

        want = {(ns, KEYS[p]): pos for (ns, p), pos in self.positions[self.run_name].items() if pos}
        assert self.run(entries()) == want

    def teardown(self) -> None:
        try:
            self._stop_pipeline()
            if self.store is not None:
                self.run(self.store.aclose())
            self.destroy_store()
        finally:
            self.loop.close()


class DiskMachine(EngineMachine):
    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="cachesaver-sm-")
        super().__init__()

    def open_store(self):
        return DiskStore(self.directory)

    def destroy_store(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

TestDiskMachine = DiskMachine.TestCase
TestDiskMachine.settings = settings(max_examples=60, stateful_step_count=25, **SETTINGS)


@pytest.fixture
def redis_machine(redis_store_factory):
    from cachesaver.stores.redis import RedisStore

    class RedisMachine(EngineMachine):
        window = 0.05

        def __init__(self) -> None:
            self.prefix = f"{redis_store_factory.prefix}:sm-{uuid.uuid4().hex[:8]}"
            super().__init__()

        def open_store(self):
            return RedisStore(redis_store_factory.url, prefix=self.prefix)

        def destroy_store(self) -> None:
            async def clear():
                store = self.open_store()
                await store.clear()
                await store.aclose()

            self.run(clear())

    return RedisMachine


def test_redis_machine(redis_machine):
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(redis_machine, settings=settings(max_examples=12, stateful_step_count=15, **SETTINGS))


# -- found by the Redis machine: one tick's misses must meet in one batch (G3) -------------------
class SlowStore(DiskStore):
    """The disk store with a network-like pause on every read (as Redis has)."""

    inline_io = False

    async def read(self, key, start, count):
        await asyncio.sleep(0.003)
        return await super().read(key, start, count)


async def test_one_tick_of_one_key_is_one_model_call_even_on_a_slow_store(tmp_path):
    model = ScriptModel()
    store = SlowStore(str(tmp_path / "c"))
    async with OnlineAPI(model=model, cache=store, batch_size=100, timeout=0.001) as p:
        await asyncio.gather(*(p.request(Request(prompt="p0", n=n, namespace=ns, request_id=f"r{i}"))
                               for i, (ns, n) in enumerate([("A", 1), ("B", 3), ("C", 2)])))
    store.close()
    assert model.calls == [("p0", 3)]
