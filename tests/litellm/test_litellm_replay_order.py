"""Issue 21: concurrent ``litellm.acompletion`` calls replay exactly, with request ids or without
(then in issue order).

litellm runs each call's set-up on the event loop's default thread pool, so calls gathered
together reach CacheSaver in the order those threads finish, not in issue order. Here the pool
finishes them in an order chosen per run (run 1 in issue order, the replays reversed and
shuffled), which is what a loaded machine does at random. Before, a replay then came back in
another order; a request's samples now depend on its namespace, key and id, and a call without an
id is numbered in issue order before litellm's thread pool.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import random
import time

import litellm
import pytest

import cachesaver_litellm

from _litellm_helpers import MESSAGES, MODEL, sample_ids

CALLS = 8


class OrderedPool(concurrent.futures.ThreadPoolExecutor):
    """A real thread pool whose k-th job of a round waits ``delays[k]`` seconds first."""

    def __init__(self) -> None:
        super().__init__(max_workers=CALLS)
        self.delays: list[float] = []
        self._jobs = itertools.count()

    def start_round(self, finish_order: list[int]) -> None:
        self.delays = [0.0] * CALLS
        for rank, job in enumerate(finish_order):
            self.delays[job] = 0.005 * rank
        self._jobs = itertools.count()

    def submit(self, fn, /, *args, **kwargs):
        job = next(self._jobs)
        delay = self.delays[job] if job < len(self.delays) else 0.0

        def held():
            time.sleep(delay)
            return fn(*args, **kwargs)

        return super().submit(held)


async def _gathered(call_kwargs: dict, pool: OrderedPool, finish_order: list[int], with_ids: bool) -> list[int]:
    pool.start_round(finish_order)
    extra = {k: v for k, v in call_kwargs.items() if k not in ("model", "messages")}
    shared = {"cachesaver_namespace": "sc"}  # one dict for every call without an id, as programs do

    async def one(i: int) -> int:
        metadata = {"cachesaver_namespace": "sc", "cachesaver_request_id": f"r{i}"} if with_ids else shared
        response = await litellm.acompletion(model=MODEL, messages=MESSAGES, metadata=metadata, **extra)
        return sample_ids(response)[0]

    return list(await asyncio.gather(*(one(i) for i in range(CALLS))))


@pytest.mark.parametrize("with_ids", [True, False], ids=["ids", "no-ids"])
async def test_gathered_calls_replay_identically_whatever_order_they_arrive_in(store_path, server, call_kwargs,
                                                                              with_ids):
    pool = OrderedPool()
    asyncio.get_running_loop().set_default_executor(pool)
    rng = random.Random(7)
    cachesaver_litellm.register(store=store_path, timeout=0.1)
    first = await _gathered(call_kwargs, pool, list(range(CALLS)), with_ids)
    cachesaver_litellm.unregister()
    assert sorted(first) == list(range(1, CALLS + 1))
    calls = server.request_count
    orders = [list(reversed(range(CALLS)))] + [rng.sample(range(CALLS), CALLS) for _ in range(5)]
    for replay, order in enumerate(orders, 1):  # each register() is a new run of the namespace
        cachesaver_litellm.register(store=store_path, timeout=0.1)
        assert await _gathered(call_kwargs, pool, order, with_ids) == first, f"replay {replay}, arrival order {order}"
        cachesaver_litellm.unregister()
    assert server.request_count == calls


async def test_calls_without_ids_in_several_namespaces_at_once(provider, server, call_kwargs):
    """Issue numbers count per namespace; the ids they become are unique across namespaces."""
    extra = {k: v for k, v in call_kwargs.items() if k not in ("model", "messages")}
    replies = await asyncio.gather(*(
        litellm.acompletion(model=MODEL, messages=MESSAGES, metadata={"cachesaver_namespace": ns}, **extra)
        for ns in ("a", "b", "a", "b")))
    assert [sample_ids(r)[0] for r in replies] == [1, 1, 2, 2]
    assert sorted(r._hidden_params["cachesaver"]["request_id"] for r in replies) == [
        "issue-0000000000@a", "issue-0000000000@b", "issue-0000000001@a", "issue-0000000001@b"]
