"""LangChain adapter: hit latency of CacheSaverChatModel beside LangChain's own InMemoryCache hit,
its SQLiteCache hit (langchain-community, the on-disk peer of the disk store; in the ``bench``
extra, the row is left out without it) and the bare inner model (a real HTTP call to the local
fake server). Prints Markdown.

    python benchmarks/bench_langchain.py            # ~30 s
    python benchmarks/bench_langchain.py --quick    # fewer rounds
    python benchmarks/bench_langchain.py --redis redis://127.0.0.1:6379/0   # also a Redis store

Target: a wrapper hit <= 1.3x an InMemoryCache hit, invoke and ainvoke, on memory and disk
stores; <= 2.5x on a Redis store (``--redis URL``: a random key prefix, deleted afterwards;
a hit there is one round trip to the server). Variants are measured in
interleaved rounds (one block of calls of each per round, median over rounds), so a busy machine
slows them alike and the ratios stay meaningful. Every wrapper hit is a real hit: each call uses
a fresh namespace, which starts at sample 0 of the one stored sample. The context rows show where
a hit's time goes: LangChain's own machinery for any model it calls (a constant model), the
engine's own synchronous hit, and the thread hop to the engine's loop that only misses take.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
from langchain_core.caches import InMemoryCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_openai import ChatOpenAI

from cachesaver.runtime import get_host
from cachesaver.testing.server import FakeOpenAIServer
from cachesaver_langchain import CacheSaverChatModel
from cachesaver_langchain._model import ChatRequest

PROMPT = "What is the meaning of life?"


class ConstantChat(BaseChatModel):
    """LangChain's floor: a model that answers at once, no cache."""

    @property
    def _llm_type(self) -> str:
        return "constant"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="42"))])

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return self._generate(messages)


def interleaved(variants: dict[str, Callable[[int], Any]], rounds: int, block: int) -> dict[str, float]:
    """Median microseconds per call of each sync variant, over interleaved rounds."""
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    counter = itertools.count()
    for _ in range(rounds):
        for name, fn in variants.items():
            n = max(1, block // 20) if name.startswith("bare") else block
            t0 = time.perf_counter()
            for _ in range(n):
                fn(next(counter))
            per_round[name].append((time.perf_counter() - t0) / n)
    return {name: statistics.median(v) * 1e6 for name, v in per_round.items()}


async def ainterleaved(variants: dict[str, Callable[[int], Any]], rounds: int, block: int) -> dict[str, float]:
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    counter = itertools.count()
    for _ in range(rounds):
        for name, fn in variants.items():
            n = max(1, block // 20) if name.startswith("bare") else block
            t0 = time.perf_counter()
            for _ in range(n):
                await fn(next(counter))
            per_round[name].append((time.perf_counter() - t0) / n)
    return {name: statistics.median(v) * 1e6 for name, v in per_round.items()}


def sqlite_cache(path: str) -> Any:
    """LangChain's SQLiteCache at ``path``, or None without langchain-community."""
    try:
        import warnings

        with warnings.catch_warnings():  # (its import warns that the package is being sunset)
            warnings.simplefilter("ignore")
            from langchain_community.cache import SQLiteCache
    except ImportError:
        return None
    return SQLiteCache(database_path=path)


def ns(i: int) -> dict:
    return {"metadata": {"cachesaver_namespace": f"ns-{i}"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--redis", metavar="URL", help="also a Redis store at URL (a random key prefix)")
    args = parser.parse_args()
    rounds, block = (7, 100) if args.quick else (15, 300)

    with FakeOpenAIServer(seed=1) as server, tempfile.TemporaryDirectory() as tmp:
        def openai(**kwargs: Any) -> ChatOpenAI:
            return ChatOpenAI(model="fake-model", base_url=server.base_url, api_key="sk-bench",
                              max_retries=0, **kwargs)

        in_memory = openai(cache=InMemoryCache())
        peers = {"InMemoryCache hit (ChatOpenAI)": in_memory}
        sqlite = sqlite_cache(os.path.join(tmp, "langchain.db"))
        if sqlite is not None:
            peers["SQLiteCache hit (ChatOpenAI)"] = openai(cache=sqlite)
        wrapper_mem = CacheSaverChatModel(chat_model=openai(), store="memory")
        wrapper_disk = CacheSaverChatModel(chat_model=openai(), store=os.path.join(tmp, "store"))
        wrappers = {"memory": wrapper_mem, "disk": wrapper_disk}
        redis_store = None
        if args.redis:
            from cachesaver.stores.redis import RedisStore

            redis_store = RedisStore(args.redis, prefix=f"bench-lc-{os.urandom(4).hex()}")
            wrappers["Redis"] = CacheSaverChatModel(chat_model=openai(), store=redis_store)
        bare = openai(http_async_client=httpx.AsyncClient())  # its own client: its own loop
        constant = ConstantChat()
        for model in (*peers.values(), *wrappers.values()):
            model.invoke(PROMPT, config=ns(-1))  # store the one sample every hit replays
        populated = server.request_count

        host = get_host()
        pipeline = wrapper_mem.pipeline
        request = wrapper_mem._request([HumanMessage(PROMPT)], None, {}, None)

        fresh = itertools.count()

        def engine_alone(n: int) -> float:
            """The engine's own synchronous hit (no LangChain, no hop), asserted to be a hit."""
            t0 = time.perf_counter()
            for _ in range(n):
                hit = pipeline.try_now(ChatRequest(prompt=request.prompt, params=request.params,
                                                   namespace=f"e{next(fresh)}"))
                assert hit is not None and all(hit.cached), "the engine-alone row must be hits"
            return (time.perf_counter() - t0) / n * 1e6

        async def nothing() -> None:
            return None

        redis_context: dict[str, Callable[[int], Any]] = {}
        if redis_store is not None:
            import redis as redis_sync

            sync_client = redis_sync.Redis.from_url(args.redis)
            probe = f"{redis_store.prefix}:{{probe}}:s"  # an empty list: one LRANGE all the same
            redis_context = {
                "context: Redis, hop + LRANGE on the engine loop (a hit's store read)":
                    lambda i: host.run(redis_store.read("probe", 0, 1)),
                "context: Redis, a synchronous LRANGE on the caller's thread":
                    lambda i: sync_client.lrange(probe, 0, 0),
            }

        def peer_hit(model: ChatOpenAI) -> Callable[[int], Any]:
            return lambda i: model.invoke(PROMPT)

        def peer_ahit(model: ChatOpenAI) -> Callable[[int], Any]:
            return lambda i: model.ainvoke(PROMPT)

        def sync_hit(model: CacheSaverChatModel) -> Callable[[int], Any]:
            return lambda i: model.invoke(PROMPT, config=ns(i))

        def async_hit(model: CacheSaverChatModel) -> Callable[[int], Any]:
            return lambda i: model.ainvoke(PROMPT, config=ns(10**7 + i))

        sync = interleaved({
            **{name: peer_hit(peer) for name, peer in peers.items()},
            **{f"CacheSaver hit, {label} store": sync_hit(model) for label, model in wrappers.items()},
            "bare ChatOpenAI call (local HTTP)": lambda i: bare.invoke(PROMPT),
            "context: constant model, no cache": lambda i: constant.invoke(PROMPT),
            "context: a thread hop to the engine loop (misses only)": lambda i: host.run(nothing()),
            **redis_context,
        }, rounds, block)
        sync["context: engine hit alone (synchronous)"] = statistics.median(
            engine_alone(block) for _ in range(rounds))

        async def run_async() -> dict[str, float]:
            return await ainterleaved({
                **{name: peer_ahit(peer) for name, peer in peers.items()},
                **{f"CacheSaver hit, {label} store": async_hit(model) for label, model in wrappers.items()},
                "bare ChatOpenAI call (local HTTP)": lambda i: bare.ainvoke(PROMPT),
                "context: constant model, no cache": lambda i: constant.ainvoke(PROMPT),
                "context: a thread hop to the engine loop (misses only)": lambda i: host.arun(nothing()),
            }, rounds, block)

        asynchronous = asyncio.run(run_async())
        # Every timed call of a cache was a hit: the server only answered the bare calls.
        bare_calls = 2 * rounds * max(1, block // 20)
        assert server.request_count == populated + bare_calls, "a timed cache call reached the server"
        for model in wrappers.values():
            assert model.stats.model_calls == 1, "every timed wrapper call must have been a hit"
            model.close()
        if redis_store is not None:
            async def clear() -> None:
                await redis_store.clear()
                await redis_store.aclose()

            asyncio.run(clear())

    ref_s, ref_a = sync["InMemoryCache hit (ChatOpenAI)"], asynchronous["InMemoryCache hit (ChatOpenAI)"]
    bare_s, bare_a = sync["bare ChatOpenAI call (local HTTP)"], asynchronous["bare ChatOpenAI call (local HTTP)"]
    print(f"## CacheSaverChatModel hit latency (median us per call; {rounds} interleaved rounds)\n")
    print("| variant | invoke (us) | x InMemoryCache | ainvoke (us) | x InMemoryCache |")
    print("|---|---:|---:|---:|---:|")
    for name in sync:
        a = asynchronous.get(name)
        a_txt = f"{a:.0f} | {a / ref_a:.2f}" if a is not None else "- | -"
        print(f"| {name} | {sync[name]:.0f} | {sync[name] / ref_s:.2f} | {a_txt} |")
    print()
    for label in wrappers:
        s, a = sync[f"CacheSaver hit, {label} store"], asynchronous[f"CacheSaver hit, {label} store"]
        target = 2.5 if label == "Redis" else 1.3
        verdict = "met" if max(s / ref_s, a / ref_a) <= target else "NOT met"
        print(f"- {label} store: hit = {s / ref_s:.2f}x (sync) / {a / ref_a:.2f}x (async) an InMemoryCache "
              f"hit, {s / bare_s:.3f}x / {a / bare_a:.3f}x a bare local call; target <= {target}x: {verdict}")
    sqlite_name = "SQLiteCache hit (ChatOpenAI)"
    if sqlite_name in sync:
        s, a = sync["CacheSaver hit, disk store"], asynchronous["CacheSaver hit, disk store"]
        print(f"- disk store against LangChain's on-disk cache: {s / sync[sqlite_name]:.2f}x (sync) / "
              f"{a / asynchronous[sqlite_name]:.2f}x (async) a SQLiteCache hit")
    else:
        print("- (no SQLiteCache row: `pip install -e \".[bench]\"` installs langchain-community)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
