"""Engine benchmarks: hit overhead, append cost, scale, import time. Prints Markdown tables.

    python benchmarks/bench_engine.py            # full run (~1 min)
    python benchmarks/bench_engine.py --quick    # smaller sizes

Targets (issue 2): a full hit through OnlineAPI <= 20 us (memory) and <= 80 us (disk) median,
disk ratio to a bare diskcache get + JSON decode <= 8; append cost flat from 1 to 100,000
samples; `import cachesaver` <= 50 ms without litellm or langchain.
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


async def hit_latency(cache, rounds: int) -> float:
    """Median latency of a full hit: namespace i asks for the sample namespace 0 generated."""
    async with OnlineAPI(model=FakeModel(), cache=cache, batch_size=1, timeout=0) as p:
        await p.request(Request(prompt="What is the meaning of life?", n=1, request_id="warm", namespace="warm"))
        timings = []
        for i in range(rounds):
            r = Request(prompt="What is the meaning of life?", n=1, request_id="r", namespace=f"ns{i}")
            t0 = time.perf_counter()
            await p.request(r)
            timings.append(time.perf_counter() - t0)
        assert p.stats.model_calls == 1
    return median_us(timings)


def bare_diskcache_get(directory: str, rounds: int) -> float:
    cache = diskcache.Cache(directory)
    cache.set("k", encode_sample("The answer is 42 #0", 8, 6, 1e-5))
    timings = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        orjson.loads(cache.get("k"))
        timings.append(time.perf_counter() - t0)
    cache.close()
    return median_us(timings)


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


async def bench_hits(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bare = bare_diskcache_get(f"{tmp}/bare", rounds)
        memory = await hit_latency("memory", rounds)
        disk = await hit_latency(f"{tmp}/store", rounds)
    table(
        f"Full hit through OnlineAPI (median of {rounds})",
        ["path", "median us", "ratio to bare diskcache get + JSON decode", "target"],
        [
            ["bare diskcache get + orjson.loads", f"{bare:.1f}", "1.0", ""],
            ["OnlineAPI, MemoryStore", f"{memory:.1f}", f"{memory / bare:.1f}", "<= 20 us"],
            ["OnlineAPI, DiskStore", f"{disk:.1f}", f"{disk / bare:.1f}", "<= 80 us, ratio <= 8"],
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
    await bench_hits(2000 if args.quick else 20000)
    await bench_append([1, 1000, 10000] if args.quick else [1, 1000, 100_000])
    await bench_scale(2000 if args.quick else 10000, 100, 50)
    bench_import()


if __name__ == "__main__":
    asyncio.run(main())
