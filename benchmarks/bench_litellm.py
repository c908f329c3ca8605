"""Latency of a full cache hit through the LiteLLM adapter, beside litellm's own paths.

Rows (one process, one event loop, sequential calls, median and p90 in microseconds):

- plain ``litellm.acompletion(mock_response=...)``: litellm's whole pipeline, no network;
- litellm's own in-memory cache hit (``litellm.cache = Cache()``);
- ``acompletion("cachesaver/...")`` full hit (a fresh namespace per call, so every call is a
  genuine hit of stored sample 0);
- ``CacheSaverRouter.acompletion`` full hit (the cache above a Router: no litellm pass);
- litellm's ``Router(cache_responses=True)`` cache hit, the like-for-like pair of the row above;
- the engine's own synchronous hit (what a hit costs without litellm) and the thread hop to
  the engine's loop that only misses take, to show where time goes.

A second table times hits back to back *with their logging*: litellm logs a call in the
background after returning it, and its own cache hit never yields to the event loop, so back to
back its logging waits until the loop idles and a timing that stops when the call returns leaves
it out (500 hits in a row are logged only after the 500th returns). There each variant runs in
blocks of ``--block`` calls, a block ends when a counting callback has seen every call's success
event, and wall time and CPU time (``time.process_time``, all threads) are divided by the calls:
``acompletion`` and sync ``completion``, provider hit vs litellm's own cache hit.

Targets: provider hit <= 0.9x the plain mock_response call; CacheSaverRouter hit <= litellm's
own cache hit and <= 0.1x litellm Router's cache hit; provider hit <= 1.5x litellm's own cache hit back to back (issue 25). Run:
``python benchmarks/bench_litellm.py [--calls 400] [--settle 0]``. litellm's cache hit
path imports its proxy (fastapi, ...): install them with ``pip install -e ".[bench]"``; without
them the script stops with that instruction rather than skip the row. Every timed cachesaver
call is checked to be a hit (the engines make exactly one model call each, to populate).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

import cachesaver_litellm  # noqa: E402
from cachesaver.runtime import get_host  # noqa: E402
from cachesaver.testing.server import FakeOpenAIServer  # noqa: E402
from cachesaver_litellm._provider import build_request  # noqa: E402

MESSAGES = [{"role": "user", "content": "Benchmark prompt: name a colour."}]


async def measure_interleaved(variants: dict, rounds: int, warmup: int, settle: float) -> dict:
    """Time each variant once per round, in a shuffled order, after letting background work settle.

    Interleaving cancels machine drift (shared 2-core box); the settle pause keeps one call's
    background logging (litellm logs on the same loop, after returning) out of the next timing.
    """
    rng = random.Random(7)
    names = list(variants)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(-warmup, rounds):
        rng.shuffle(names)
        for name in names:
            await asyncio.sleep(settle)
            start = time.perf_counter()
            await variants[name](r)
            if r >= 0:
                out[name].append((time.perf_counter() - start) * 1e6)
    return out


class SuccessCount(CustomLogger):
    """Counts litellm's success events (async calls log async, sync calls sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time) -> None:
        self.seen += 1

    def log_success_event(self, kwargs, response_obj, start_time, end_time) -> None:
        self.seen += 1


async def measure_logged(variants: dict, rounds: int, block: int, counter: SuccessCount) -> dict:
    """Per call, wall and CPU microseconds of ``block`` back-to-back calls *and* their logging
    (the block ends when ``counter`` has seen each call's success event); variants interleaved."""
    rng = random.Random(11)
    names = list(variants)
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(-1, rounds):
        rng.shuffle(names)
        for name in names:
            await asyncio.sleep(0.02)  # the previous block's stragglers
            target = counter.seen + block
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(block):
                await variants[name](r * block + i)
            deadline = time.perf_counter() + 30
            while counter.seen < target:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"{name}: {target - counter.seen} success events never came")
                await asyncio.sleep(0.0005)
            if r >= 0:
                out[name].append(((time.perf_counter() - t0) / block * 1e6,
                                  (time.process_time() - c0) / block * 1e6))
    return out


def row(name: str, samples: list[float] | None, base: float | None) -> str:
    if not samples:
        return f"{name:<44} {'n/a':>10} {'n/a':>10} {'n/a':>8}"
    med = statistics.median(samples)
    p90 = sorted(samples)[int(0.9 * (len(samples) - 1))]
    ratio = f"{med / base:>7.2f}x" if base else f"{'':>8}"
    return f"{name:<44} {med:>10.0f} {p90:>10.0f} {ratio}"


async def run(calls: int, warmup: int, settle: float, block: int) -> None:
    litellm.suppress_debug_info = True
    # The server answers as gpt-4o-mini, the model litellm's own cache hit answers as: both hits are
    # then priced by litellm (saved cost) under the same name.
    with FakeOpenAIServer(seed=1, model_name="gpt-4o-mini") as server, tempfile.TemporaryDirectory() as tmp:
        real = dict(model="openai/gpt-4o-mini", messages=MESSAGES, api_key="sk-bench")
        cachesaver_litellm.register(store=os.path.join(tmp, "provider"), timeout=0.01)
        kw = dict(model="cachesaver/openai/gpt-4o-mini", messages=MESSAGES, api_base=server.base_url,
                  api_key="sk-bench", max_retries=0)
        handler = cachesaver_litellm.get_handler()
        router = litellm.Router(model_list=[
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": server.base_url,
                                                     "api_key": "sk-a", "max_retries": 0}},
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": server.base_url,
                                                     "api_key": "sk-b", "max_retries": 0}},
        ])
        wrapped = cachesaver_litellm.CacheSaverRouter(router, store=os.path.join(tmp, "router"), timeout=0.01)
        own_cache = litellm.Cache()
        # The like-for-like pair of CacheSaverRouter: litellm's Router with its own response cache.
        cached_router = litellm.Router(model_list=[
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": server.base_url,
                                                     "api_key": "sk-a", "max_retries": 0}},
        ], cache_responses=True)

        # Populate: one real call each, so every measured call below is a full hit.
        await litellm.acompletion(metadata={"cachesaver_namespace": "populate"}, **kw)
        await wrapped.acompletion(model="gpt", messages=MESSAGES, metadata={"cachesaver_namespace": "populate"})
        litellm.cache = own_cache
        try:
            await litellm.acompletion(mock_response="Teal.", caching=True, **real)
            await asyncio.sleep(0.05)
            await litellm.acompletion(mock_response="Teal.", caching=True, **real)
        except ImportError as exc:
            raise SystemExit(f"litellm's own cache hit needs its proxy dependencies ({exc}): "
                             'pip install -e ".[bench]"') from None
        finally:
            litellm.cache = None
        litellm.cache = own_cache
        try:  # populate litellm's Router cache: one real request, then every call below is a hit
            await cached_router.acompletion(model="gpt", messages=MESSAGES, caching=True)
            await asyncio.sleep(0.05)
        finally:
            litellm.cache = None
        populated = server.request_count

        async def router_cache_hit(i: int):
            litellm.cache = own_cache
            try:
                r = await cached_router.acompletion(model="gpt", messages=MESSAGES, caching=True)
            finally:
                litellm.cache = None
            assert r._hidden_params.get("cache_hit"), "every timed litellm Router call must be a hit"

        async def own_cache_hit(i: int):
            litellm.cache = own_cache
            try:
                return await litellm.acompletion(mock_response="Teal.", caching=True, **real)
            finally:
                litellm.cache = None

        def engine_request(i: int):
            return build_request(model="openai/gpt-4o-mini", messages=MESSAGES, optional_params={},
                                 litellm_params={"metadata": {"cachesaver_namespace": f"e{i}"}},
                                 api_key=None, api_base=server.base_url, headers=None, timeout=None,
                                 default_namespace="default", key_api_base=False)

        async def noop() -> None:
            return None

        async def engine_hit(i: int):
            hit = handler.pipeline.try_now(engine_request(i))
            assert hit is not None and all(hit.cached), "the engine-alone row must be hits"

        async def provider_hit(i: int):
            r = await litellm.acompletion(metadata={"cachesaver_namespace": f"p{i}"}, **kw)
            assert r._hidden_params["cache_hit"], "every timed provider call must be a hit"

        host = get_host()
        variants = {
            "plain": lambda i: litellm.acompletion(mock_response="Teal.", **real),
            "provider": provider_hit,
            "router": lambda i: wrapped.acompletion(model="gpt", messages=MESSAGES,
                                                    metadata={"cachesaver_namespace": f"r{i}"}),
            "engine_hit": engine_hit,
            "hop": lambda i: host.arun(noop()),
        }
        variants["litellm_cache"] = own_cache_hit
        variants["litellm_router_cache"] = router_cache_hit
        results: dict[str, list[float] | None] = await measure_interleaved(variants, calls, warmup, settle)
        results.setdefault("litellm_cache", None)
        assert server.request_count == populated, "a timed litellm Router call reached the server"

        # Back to back with each call's logging (see the module docstring), async and sync.
        counter = SuccessCount()
        litellm.callbacks.append(counter)

        async def provider_sync(i: int):
            r = litellm.completion(metadata={"cachesaver_namespace": f"s{i}"}, **kw)
            assert r._hidden_params["cache_hit"], "every timed provider call must be a hit"

        async def own_cache_sync(i: int):
            litellm.cache = own_cache
            try:
                r = litellm.completion(mock_response="Teal.", caching=True, **real)
            finally:
                litellm.cache = None
            assert r._hidden_params.get("cache_hit"), "every timed litellm cache call must be a hit"

        async def provider_logged(i: int):
            await provider_hit(100_000 + i)

        logged = await measure_logged({"provider": provider_logged, "litellm_cache": own_cache_hit,
                                       "provider_sync": provider_sync, "litellm_cache_sync": own_cache_sync},
                                      max(4, calls // block), block, counter)
        litellm.callbacks.remove(counter)
        assert handler.pipeline.stats.model_calls == 1 and wrapped.stats.model_calls == 1, "not all hits"
        await wrapped.aclose()
        cachesaver_litellm.unregister()
        requests = server.request_count

    base = statistics.median(results["plain"])
    print(f"\nLiteLLM adapter: full-hit latency, {calls} interleaved rounds after {warmup} warm-up rounds, "
          f"{settle * 1000:.0f} ms settle\n(HTTP requests to the fake server: {requests}, all for populating)\n")
    print(f"{'path':<44} {'median us':>10} {'p90 us':>10} {'vs plain':>8}")
    print("-" * 75)
    print(row("litellm.acompletion(mock_response=...)", results["plain"], base))
    print(row("litellm in-memory cache hit", results["litellm_cache"], base))
    print(row("acompletion('cachesaver/...') full hit", results["provider"], base))
    print(row("CacheSaverRouter.acompletion full hit", results["router"], base))
    print(row("litellm Router(cache_responses=True) hit", results["litellm_router_cache"], base))
    print(row("engine hit alone (synchronous)", results["engine_hit"], base))
    print(row("thread hop to the engine loop (misses only)", results["hop"], base))
    provider = statistics.median(results["provider"])
    router_med = statistics.median(results["router"])
    print()
    print(f"target provider <= 0.9x plain: {provider / base:.2f}x -> {'met' if provider <= 0.9 * base else 'MISSED'}")
    own = statistics.median(results["litellm_cache"])
    verdict = "met" if router_med <= own else "MISSED"
    print(f"target CacheSaverRouter hit <= litellm cache hit: {router_med:.0f} us vs {own:.0f} us -> {verdict}")
    print(f"provider hit vs litellm cache hit: {provider / own:.2f}x")
    router_own = statistics.median(results["litellm_router_cache"])
    verdict = "met" if router_med <= 0.1 * router_own else "MISSED"
    print(f"target CacheSaverRouter hit <= 0.1x litellm Router's cache hit: {router_med:.0f} us vs "
          f"{router_own:.0f} us = {router_med / router_own:.2f}x -> {verdict}")
    rounds = len(logged["provider"])
    print(f"\nBack to back with each call's logging: {rounds} interleaved blocks of {block} calls, medians per call "
          f"(load average {os.getloadavg()[0]:.2f})\n")
    print(f"{'path':<44} {'wall us':>10} {'CPU us':>10}")
    print("-" * 66)
    labels = {"litellm_cache": "litellm in-memory cache hit, acompletion",
              "provider": "cachesaver/ provider hit, acompletion",
              "litellm_cache_sync": "litellm in-memory cache hit, completion",
              "provider_sync": "cachesaver/ provider hit, completion"}
    med = {name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for name, v in logged.items()}
    for name, label in labels.items():
        print(f"{label:<44} {med[name][0]:>10.0f} {med[name][1]:>10.0f}")
    print()
    for mode, a, b in (("acompletion", "provider", "litellm_cache"), ("completion", "provider_sync", "litellm_cache_sync")):
        wall, cpu = med[a][0] / med[b][0], med[a][1] / med[b][1]
        verdict = "met" if wall <= 1.5 else "MISSED"
        print(f"target provider hit <= 1.5x litellm cache hit ({mode}, logging included): "
              f"wall {wall:.2f}x, CPU {cpu:.2f}x -> {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--settle", type=float, default=0.005, help="pause before each timed call (s)")
    parser.add_argument("--block", type=int, default=25, help="calls per block in the logging-included table")
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.warmup, args.settle, args.block))


if __name__ == "__main__":
    main()
