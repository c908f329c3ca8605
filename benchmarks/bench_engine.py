"""Engine benchmarks: hit overhead, append cost, scale, import time. Prints Markdown tables.

    python benchmarks/bench_engine.py            # full run (~1 min)
    python benchmarks/bench_engine.py --quick    # smaller sizes

Targets: a full hit on the synchronous path adapters use (``OnlineAPI.try_now``) <= 2x (memory)
and <= 3x (disk) a bare diskcache get + JSON decode, measured in one interleaved run; append
cost flat from 1 to 100,000 samples; `import cachesaver` <= 50 ms without litellm or langchain.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import diskcache
import orjson

from cachesaver.codec import encode_sample
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import DiskStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


class _Hits:
    """A pipeline with one stored sample; each call is a full hit (a fresh namespace), checked."""

    def __init__(self, cache) -> None:
        self.pipeline = OnlineAPI(model=FakeModel(), cache=cache, batch_size=1, timeout=0)
        self.i = 0

    async def warm(self) -> None:
        await self.pipeline.request(Request(prompt=PROMPT, n=1, request_id="warm", namespace="warm"))

    def _next(self) -> Request:
        self.i += 1
        return Request(prompt=PROMPT, n=1, namespace=f"ns{self.i}")

    def sync_hit(self) -> None:  # what adapters do: served on the calling thread
        hit = self.pipeline.try_now(self._next())
        assert hit is not None and hit.cached == [True], "not a hit"

    async def async_hit(self) -> None:  # the engine's own loop path (tick, reorder, claim)
        hit = await self.pipeline.request(self._next())
        assert hit.cached == [True], "not a hit"


PROMPT = "What is the meaning of life?"


async def interleaved(variants: dict, rounds: int, block: int) -> dict[str, float]:
    """Median microseconds per call of each variant, over rounds that run every variant in turn
    (a block of calls each), after one warm-up round."""
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds + 1):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(block):
                result = fn()
                if asyncio.iscoroutine(result):
                    await result
            if r:
                per_round[name].append((time.perf_counter() - t0) / block)
    return {name: median_us(v) for name, v in per_round.items()}


def _bare_get(directory: str):
    cache = diskcache.Cache(directory)
    cache.set("k", encode_sample("The answer is 42 #0", 8, 6, 1e-5))
    return cache, lambda: orjson.loads(cache.get("k"))


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


async def bench_hits(rounds: int, block: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bare_cache, bare = _bare_get(f"{tmp}/bare")
        memory, disk = _Hits("memory"), _Hits(f"{tmp}/store")
        for hits in (memory, disk):
            await hits.warm()
        t = await interleaved({
            "bare": bare,
            "memory sync": memory.sync_hit, "disk sync": disk.sync_hit,
            "memory async": memory.async_hit, "disk async": disk.async_hit,
        }, rounds, block)
        for hits in (memory, disk):
            assert hits.pipeline.stats.model_calls == 1, "every timed call must have been a hit"
            await hits.pipeline.aclose()
        bare_cache.close()
    b = t["bare"]
    table(
        f"Full hit (median us per call, {rounds} interleaved rounds of {block} calls)",
        ["path", "median us", "x bare diskcache get + JSON decode", "target"],
        [
            ["bare diskcache get + orjson.loads", f"{b:.1f}", "1.0", ""],
            ["try_now (sync, what adapters use), MemoryStore", f"{t['memory sync']:.1f}",
             f"{t['memory sync'] / b:.2f}", "<= 2x"],
            ["try_now (sync, what adapters use), DiskStore", f"{t['disk sync']:.1f}",
             f"{t['disk sync'] / b:.2f}", "<= 3x"],
            ["await OnlineAPI.request, MemoryStore", f"{t['memory async']:.1f}", f"{t['memory async'] / b:.2f}", ""],
            ["await OnlineAPI.request, DiskStore", f"{t['disk async']:.1f}", f"{t['disk async'] / b:.2f}", ""],
        ],
    )


async def bench_append(sizes: list[int]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = DiskStore(f"{tmp}/append")
        key = "a" * 64
        record = encode_sample("x" * 200, 10, 50, 1e-5)
        have = 0
        for size in sizes:
            # grow the list to `size` in bulk (one transaction per 1000), then time single appends
            while have < size - 1:
                chunk = min(1000, size - 1 - have)
                await store.append(key, [record] * chunk)
                have += chunk
            timings = []
            for _ in range(200):
                t0 = time.perf_counter()
                await store.append(key, [record])
                timings.append(time.perf_counter() - t0)
            have += 200
            rows.append([f"{size:,}", f"{median_us(timings):.0f}"])
        store.close()
    table("Append one sample to a key already holding N samples (DiskStore)", ["N", "median us"], rows)


async def bench_scale(n_requests: int, namespaces: int, keys: int) -> None:
    gc.collect()
    tracemalloc.start()
    model = FakeModel()
    reqs = [
        Request(prompt=f"prompt {(i // namespaces) % keys}", n=1, namespace=f"ns{i % namespaces}", request_id=f"{i:06d}")
        for i in range(n_requests)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        async with OnlineAPI(model=model, cache=f"{tmp}/scale", batch_size=512, timeout=0.005) as p:
            t0 = time.perf_counter()
            await asyncio.gather(*(p.request(r) for r in reqs))
            elapsed = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            entries = len(p.ledger)
            # ledger bytes: the dict, its tuple keys and int values (strings are shared)
            ledger_bytes = sys.getsizeof(p.ledger._positions) + sum(
                sys.getsizeof(k) + sys.getsizeof(v) for k, v in p.ledger._positions.items()
            )
    tracemalloc.stop()
    table(
        f"{n_requests:,} concurrent requests over {namespaces} namespaces and {keys} keys (DiskStore)",
        ["total s", "requests/s", "peak traced MB", "ledger entries", "ledger bytes per (namespace, key)", "model calls"],
        [[f"{elapsed:.2f}", f"{n_requests / elapsed:,.0f}", f"{peak / 1e6:.1f}", entries, f"{ledger_bytes / max(entries, 1):.0f}", len(model.calls)]],
    )


def _import_ms(statement: str, module: str, runs: int = 5) -> float:
    """Best of ``runs`` cumulative import times of ``module`` (the machine is noisy)."""
    best = float("inf")
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, check=True)
        for line in out.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == module:
                best = min(best, int(parts[1]) / 1000)
    return best


def bench_import() -> None:
    leaked = subprocess.run(
        [sys.executable, "-c", "import sys, cachesaver, cachesaver.pipelines; print(sorted(m for m in ('litellm', 'langchain_core') if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    table(
        "Import time (python -X importtime, best of 5, cumulative ms)",
        ["statement", "ms", "note"],
        [
            ["import cachesaver", f"{_import_ms('import cachesaver', 'cachesaver'):.1f}", "target <= 50 ms"],
            ["import cachesaver.pipelines", f"{_import_ms('import cachesaver.pipelines', 'cachesaver.pipelines'):.1f}", "the whole engine, asyncio and diskcache included"],
            ["import asyncio (reference)", f"{_import_ms('import asyncio', 'asyncio'):.1f}", "stdlib alone, on this machine"],
            ["litellm / langchain_core in sys.modules", leaked, "must be []"],
        ],
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
    await bench_hits(7 if args.quick else 15, 300 if args.quick else 2000)
    await bench_append([1, 1000, 10000] if args.quick else [1, 1000, 100_000])
    await bench_scale(2000 if args.quick else 10000, 100, 50)
    bench_import()


if __name__ == "__main__":
    asyncio.run(main())
