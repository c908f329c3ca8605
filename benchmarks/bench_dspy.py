"""DSPy: a ``CacheSaverLM`` hit beside a ``dspy.LM(cache=True)`` hit (DSPy's own cache). Prints Markdown.

    python benchmarks/bench_dspy.py                       # memory and disk stores, ~1 min
    python benchmarks/bench_dspy.py --quick               # fewer rounds
    python benchmarks/bench_dspy.py --stores memory,disk,redis://127.0.0.1:6379/0

Target (issue 25): a ``CacheSaverLM`` hit <= 1.0x DSPy's own cache hit, back to back, sync
``lm(prompt)`` and async ``await lm.acall(prompt)``.

Both sides go through DSPy's public call (callbacks, history, usage tracking included) with the
same prompt and settings, against the local fake server. Variants run interleaved: each round
times one block of back-to-back calls of every variant (after a warm-up round, a ``gc.collect()``
before each block), and the table gives the median call over all rounds. Every timed call is
asserted to be what it claims: DSPy's cache hits make no HTTP request; every ``CacheSaverLM``
hit makes no HTTP request, no model call, and reports each sample as stored
(``_hidden_params["cachesaver"]["cached"]``). The hits of one variant take consecutive ledger
positions of one namespace (samples generated before the timing, ``n=100`` at a time).

The second DSPy row is DSPy's cache in front of its LiteLLM engine (``engine="litellm"``): its
hit hands out a litellm ``ModelResponse`` (a deep copy of the stored one), as a ``CacheSaverLM``
hit does; the default engine's hit builds DSPy's own lighter response objects.

"no callbacks" times DSPy's hit with no DSPy callback installed, as in a process without
CacheSaver: importing ``cachesaver_litellm.dspy`` (or ``register()`` with DSPy loaded) adds one
process-wide DSPy callback, the warning guard of ``_dspy_guard``, and with any callback DSPy's
callback wrapper runs on every LM call (every other row pays it alike).

"normal path" is the same ``CacheSaverLM`` call sent through DSPy's own ``__call__``/``acall``
body (DSPy -> litellm -> the ``cachesaver/`` provider), which is how every hit was served before
the fast path: the "before" figure.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="bench-dspy-cache-"))

import dspy  # noqa: E402
from dspy.clients.base_lm import BaseLM  # noqa: E402

import cachesaver_litellm  # noqa: E402
from cachesaver.testing.server import FakeOpenAIServer  # noqa: E402
from cachesaver_litellm.dspy import CacheSaverLM, namespace  # noqa: E402

PROMPT = "What is the meaning of life?"
SETTINGS = {"temperature": 0.7, "max_tokens": 100}


def timed_block(call: Callable[[], Any], block: int) -> list[float]:
    gc.collect()
    out = []
    for _ in range(block):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def timed_block_async(loop: asyncio.AbstractEventLoop, call: Callable[[], Any], block: int) -> list[float]:
    async def run() -> list[float]:
        out = []
        for _ in range(block):
            start = time.perf_counter()
            await call()
            out.append(time.perf_counter() - start)
        return out

    gc.collect()
    return loop.run_until_complete(run())


class Hits:
    """One variant: the calls it times, and the check that each was a hit."""

    def __init__(self, name: str, lm: Any, call: Callable[[], Any], asynchronous: bool, cachesaver: bool,
                 bare: bool = False) -> None:
        self.name, self.lm, self.call, self.asynchronous, self.cachesaver = name, lm, call, asynchronous, cachesaver
        #: Timed with no DSPy callback installed: DSPy's hit in a process without CacheSaver, whose
        #: import adds one process-wide callback (the cache guard) that every DSPy LM call pays for.
        self.bare = bare
        self.times: list[float] = []

    def run(self, loop: asyncio.AbstractEventLoop, block: int) -> list[float]:
        callbacks = dspy.settings.callbacks
        saved = list(callbacks)
        if self.bare:
            callbacks.clear()
        try:
            return timed_block_async(loop, self.call, block) if self.asynchronous else timed_block(self.call, block)
        finally:
            callbacks[:] = saved

    def check(self, server: FakeOpenAIServer, requests_before: int, calls_before: int, block: int) -> None:
        assert server.request_count == requests_before, f"{self.name}: an HTTP request during hits"
        if not self.cachesaver:
            return
        assert cachesaver_litellm.stats().model_calls == calls_before, f"{self.name}: a model call during hits"
        for entry in self.lm.history[-block:]:
            flags = entry["response"]._hidden_params["cachesaver"]
            assert flags["cached"] == [True] and flags["model_calls"] == 0, f"{self.name}: not a hit: {flags}"


def fill(lm: CacheSaverLM, samples: int) -> None:
    """Generate ``samples`` samples of PROMPT (namespace "fill": each call takes new ones)."""
    with namespace("fill"):
        left = samples
        while left > 0:
            lm(PROMPT, n=min(100, left))
            left -= 100


def bench_store(store: Any, label: str, rounds: int, block: int, server: FakeOpenAIServer) -> dict[str, float]:
    cachesaver_litellm.register(store=store, namespace="bench")
    common = dict(api_base=server.base_url, api_key="sk-bench", num_retries=0, **SETTINGS)
    plain = dspy.LM("openai/gpt-4o-mini", cache=True, **common)
    # DSPy's cache in front of its LiteLLM engine: its hit also hands out a litellm ModelResponse
    # (a deep copy of the stored one), as a CacheSaverLM hit does.
    via_litellm = dspy.LM("openai/gpt-4o-mini", cache=True, engine="litellm", **common)
    fast = CacheSaverLM("cachesaver/openai/gpt-4o-mini", **common)
    slow = CacheSaverLM("cachesaver/openai/gpt-4o-mini", **common)
    per_variant = (rounds + 1) * block
    fill(fast, 4 * per_variant)
    for lm in (plain, via_litellm):  # DSPy's cache holds the answers from here on
        lm(PROMPT)
        asyncio.run(lm.acall(PROMPT))
    loop = asyncio.new_event_loop()

    def normal_path(lm: CacheSaverLM) -> Any:
        return BaseLM.__call__(lm, PROMPT, **lm._cachesaver_kwargs({}))

    async def normal_path_async(lm: CacheSaverLM) -> Any:
        return await BaseLM.acall(lm, PROMPT, **lm._cachesaver_kwargs({}))

    variants = [
        Hits("dspy.LM(cache=True) hit", plain, lambda: plain(PROMPT), False, False),
        Hits("CacheSaverLM hit", fast, lambda: fast(PROMPT), False, True),
        Hits("CacheSaverLM hit, normal path (before)", slow, lambda: normal_path(slow), False, True),
        Hits("dspy.LM(cache=True, engine='litellm') hit", via_litellm, lambda: via_litellm(PROMPT), False, False),
        Hits("dspy.LM(cache=True) hit, no callbacks", plain, lambda: plain(PROMPT), False, False, bare=True),
        Hits("dspy.LM(cache=True) hit, acall", plain, lambda: plain.acall(PROMPT), True, False),
        Hits("dspy.LM(cache=True, engine='litellm') hit, acall", via_litellm, lambda: via_litellm.acall(PROMPT),
             True, False),
        Hits("dspy.LM(cache=True) hit, acall, no callbacks", plain, lambda: plain.acall(PROMPT), True, False,
             bare=True),
        Hits("CacheSaverLM hit, acall", fast, lambda: fast.acall(PROMPT), True, True),
        Hits("CacheSaverLM hit, acall, normal path (before)", slow, lambda: normal_path_async(slow), True, True),
    ]
    try:
        with namespace(f"hits-{label}"):
            for round_ in range(rounds + 1):  # round 0 warms up
                for v in variants:
                    requests, calls = server.request_count, cachesaver_litellm.stats().model_calls
                    times = v.run(loop, block)
                    v.check(server, requests, calls, block)
                    if round_:
                        v.times.extend(times)
    finally:
        pending = asyncio.all_tasks(loop)  # litellm's logging worker, started by the normal path
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
    return {v.name: statistics.median(v.times) * 1e6 for v in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--block", type=int, default=100, help="back-to-back calls per block")
    parser.add_argument("--stores", default="memory,disk", help="comma-separated: memory, disk, redis://...")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 8)
    results: dict[str, dict[str, float]] = {}
    with FakeOpenAIServer() as server:
        for spec in args.stores.split(","):
            directory = None
            if spec == "disk":
                directory = tempfile.mkdtemp(prefix="bench-dspy-store-")
                store: Any = directory
            elif spec.startswith("redis://"):
                from cachesaver.stores import RedisStore

                store = RedisStore(spec, prefix=f"bench-dspy-{os.getpid()}")
                store.clear()
            else:
                store = spec
            label = spec.split("://")[0]
            try:
                results[label] = bench_store(store, label, rounds, args.block, server)
            finally:
                cachesaver_litellm.unregister()
                if directory:
                    shutil.rmtree(directory, ignore_errors=True)
    print(f"## CacheSaverLM hit vs DSPy's own cache hit (median us per call, back to back; "
          f"{rounds} interleaved rounds of {args.block} calls; Python {sys.version.split()[0]}, dspy {dspy.__version__})\n")
    print("| store | variant | sync `lm(p)` (us) | x DSPy cache | async `acall` (us) | x DSPy cache |")
    print("|---|---|---:|---:|---:|---:|")
    for label, r in results.items():
        ref_s, ref_a = r["dspy.LM(cache=True) hit"], r["dspy.LM(cache=True) hit, acall"]
        for name in ("dspy.LM(cache=True) hit", "dspy.LM(cache=True, engine='litellm') hit",
                     "dspy.LM(cache=True) hit, no callbacks", "CacheSaverLM hit",
                     "CacheSaverLM hit, normal path (before)"):
            s = r[name]
            a = r[name.replace(" hit", " hit, acall", 1)] if "," in name else r[f"{name}, acall"]
            print(f"| {label} | {name} | {s:.0f} | {s / ref_s:.2f} | {a:.0f} | {a / ref_a:.2f} |")
    print()
    lit = "dspy.LM(cache=True, engine='litellm') hit"
    bare, bare_a = "dspy.LM(cache=True) hit, no callbacks", "dspy.LM(cache=True) hit, acall, no callbacks"
    for label, r in results.items():
        print(f"- {label} store: CacheSaverLM hit = {r['CacheSaverLM hit'] / r['dspy.LM(cache=True) hit']:.2f}x "
              f"(sync) / {r['CacheSaverLM hit, acall'] / r['dspy.LM(cache=True) hit, acall']:.2f}x (async) "
              "DSPy's own cache hit (target <= 1.0x); "
              f"{r['CacheSaverLM hit'] / r[lit]:.2f}x / {r['CacheSaverLM hit, acall'] / r[lit + ', acall']:.2f}x "
              "its hit on DSPy's LiteLLM engine; "
              f"{r['CacheSaverLM hit'] / r[bare]:.2f}x / {r['CacheSaverLM hit, acall'] / r[bare_a]:.2f}x "
              "its hit with no DSPy callback installed")


if __name__ == "__main__":
    main()
