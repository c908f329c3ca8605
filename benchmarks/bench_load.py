"""Load benchmark (issue 4): 50,000 requests over 1,000 namespaces. Prints Markdown tables.

    python benchmarks/bench_load.py                  # 50,000 requests, disk store (~1 min)
    python benchmarks/bench_load.py --quick          # 5,000 requests
    python benchmarks/bench_load.py --store redis://127.0.0.1:6379/0?prefix=bench-load

Workload: every namespace is one run of an experiment (1,000 arms of a sweep) asking prompts
from a shared pool of 500 with a Zipf-like skew, n = 1..3, 200 requests in flight at a time
(agents waiting on each other). The first namespace to ask a prompt pays for its samples; the
others reuse them. Three passes over one store:

1. a private run (the default): generation, merging, then mostly hits;
2. a replay in a new private run: all hits, zero model calls;
3. the same requests in a shared run (``run_id``): all hits, ledger kept in the store.

Reported: requests/s per 10% slice of each pass (no slowdown from start to end), ledger bytes per
(namespace, key) in memory (private run) and in the store (shared run), RSS after each pass and
peak RSS, and the per-request state left in the pipeline at the end (must be all zero).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from typing import Any, Optional

from cachesaver.pipelines import OnlineAPI
from cachesaver.opening import open_store
from cachesaver.stores import DiskStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

SLICES = 10


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux


def workload(requests: int, namespaces: int, prompts: int, seed: int = 2024) -> list[Request]:
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 0.8 for rank in range(prompts)]
    chosen = rng.choices(range(prompts), weights=weights, k=requests)
    return [
        Request(prompt=f"Solve puzzle {p}: think step by step.", n=rng.randint(1, 3),
                namespace=f"arm-{i % namespaces:04d}", request_id=f"{i:07d}")
        for i, p in enumerate(chosen)
    ]


def deep_bytes(obj: Any, seen: Optional[set[int]] = None) -> int:
    """Bytes held by a dict of tuples of str/int (each object counted once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_bytes(k, seen) + deep_bytes(v, seen) for k, v in obj.items())
    elif isinstance(obj, tuple):
        size += sum(deep_bytes(x, seen) for x in obj)
    return size


def leftovers(p: OnlineAPI) -> int:
    return (len(p._inflight_ids) + len(p._tick) + len(p._queued) + len(p._batcher) + len(p.cacher._turns)
            + sum(map(len, p.cacher._unbilled.values())) + sum(not t.done() for t in p._tasks))


async def run_pass(store: Any, reqs: list[Request], in_flight: int, run_id: Optional[str]) -> dict:
    model = FakeModel(seed=1)
    done_at: list[float] = []
    async with OnlineAPI(model=model, cache=store, batch_size=256, timeout=0.002, run_id=run_id) as p:
        todo = iter(reqs)

        async def agent() -> None:  # ``in_flight`` agents, each waiting for its answer
            for r in todo:
                await p.request(r)
                done_at.append(time.perf_counter())

        t0 = time.perf_counter()
        await asyncio.gather(*(agent() for _ in range(in_flight)))
        elapsed = time.perf_counter() - t0
        ledger = getattr(p.ledger, "_positions", None)
        result = {
            "elapsed": elapsed,
            "slices": slice_rates(t0, done_at),
            "model_calls": len(model.calls),
            "generated": model.samples_generated,
            "entries": len(ledger) if ledger is not None else None,
            "ledger_bytes": deep_bytes(ledger) if ledger is not None else None,
            "ledger_struct_bytes": (sys.getsizeof(ledger) + sum(sys.getsizeof(k) for k in ledger))
            if ledger is not None else None,
            "leftovers": leftovers(p),
            "namespaces": len(p.stats.namespaces),
        }
    del p, ledger
    gc.collect()
    result["rss"] = rss_mb()
    result["objects"] = len(gc.get_objects())
    return result


def slice_rates(t0: float, done_at: list[float]) -> list[float]:
    done_at = sorted(done_at)
    n = len(done_at)
    rates, start = [], t0
    for s in range(SLICES):
        end_index = (s + 1) * n // SLICES
        first_index = s * n // SLICES
        end = done_at[end_index - 1]
        rates.append((end_index - first_index) / max(end - start, 1e-9))
        start = end
    return rates


def halves(rates: list[float]) -> float:
    """Requests/s over the second half of a pass divided by the first half's (1.0: no slowdown)."""
    half = len(rates) // 2
    first = half / sum(1 / r for r in rates[:half])  # equal request counts: harmonic mean
    second = (len(rates) - half) / sum(1 / r for r in rates[half:])
    return second / first


def db_bytes(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(directory) for f in fs)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--namespaces", type=int, default=1_000)
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--store", default="disk", help="'disk' (a temp directory), 'memory' or a redis:// URL")
    parser.add_argument("--quick", action="store_true", help="5,000 requests")
    args = parser.parse_args()
    if args.quick:
        args.requests = 5_000
    reqs = workload(args.requests, args.namespaces, args.prompts)
    pairs = len({(r.namespace, r.prompt) for r in reqs})
    print(f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs; "
          f"{len(reqs):,} requests, {args.namespaces:,} namespaces, {args.prompts} prompts, "
          f"{pairs:,} distinct (namespace, key) pairs, {args.in_flight} in flight, store: {args.store}")
    tmp = tempfile.mkdtemp(prefix="bench-load-")
    rss0 = rss_mb()
    try:
        if args.store == "disk":
            spec = os.path.join(tmp, "store")
            store = DiskStore(spec)
        else:
            store = open_store(args.store)
            if [k async for k in store.iter_keys()]:
                await store.aclose()
                sys.exit(f"{args.store} already holds samples: give the benchmark an empty prefix")
        passes = [("1. private run (cold)", None), ("2. replay, new private run", None),
                  ("3. shared run_id", "bench-exp"), ("4. replay again, new private run", None)]
        results = []
        try:
            for name, run_id in passes:
                before = db_bytes(spec) if args.store == "disk" else None
                result = await run_pass(store, reqs, args.in_flight, run_id)
                result["db_growth"] = db_bytes(spec) - before if before is not None else None
                results.append((name, result))
        finally:
            if args.store != "disk":
                await store.clear()  # what this run wrote (the prefix was empty)
            await store.aclose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    table("Requests/s per 10% slice of each pass (completion order)",
          ["pass"] + [f"{10 * (s + 1)}%" for s in range(SLICES)] + ["2nd half / 1st half"],
          [[name] + [f"{r:,.0f}" for r in res["slices"]] + [f"{halves(res['slices']):.2f}"] for name, res in results])
    table("Totals", ["pass", "seconds", "requests/s", "model calls", "samples generated", "RSS after (MB)",
                     "Python objects alive after", "per-request state left"],
          [[name, f"{res['elapsed']:.2f}", f"{len(reqs) / res['elapsed']:,.0f}", res["model_calls"],
            res["generated"], f"{res['rss']:.0f}", f"{res['objects']:,}", res["leftovers"]] for name, res in results])
    private = results[0][1]
    shared = results[2][1]
    rows = [
        ["private run, in memory (dict + tuple + int + key/namespace strings)", f"{private['entries']:,}",
         f"{private['ledger_bytes'] / private['entries']:.0f}"],
        ["private run, in memory (dict slot + tuple only; strings shared with requests)", f"{private['entries']:,}",
         f"{private['ledger_struct_bytes'] / private['entries']:.0f}"],
    ]
    if shared["db_growth"] is not None:
        rows.append(["shared run, on disk (SQLite growth / entries)", f"{pairs:,}",
                     f"{shared['db_growth'] / pairs:.0f}"])
    table("Ledger bytes per (namespace, key)", ["ledger", "entries", "bytes per entry"], rows)
    consumed: dict[str, dict[str, int]] = {}
    for r in reqs:
        by_ns = consumed.setdefault(r.prompt, {})
        by_ns[r.namespace] = by_ns.get(r.namespace, 0) + r.n
    minimum = sum(max(by_ns.values()) for by_ns in consumed.values())
    table("Memory and minimal generation",
          ["RSS at start (MB)", "peak RSS (MB)", "namespaces in stats", "ledger entries == distinct pairs",
           "samples generated == G2 minimum"],
          [[f"{rss0:.0f}", f"{peak_rss_mb():.0f}", private["namespaces"], private["entries"] == pairs,
            f"{private['generated'] == minimum} ({minimum:,})"]])


if __name__ == "__main__":
    asyncio.run(main())
