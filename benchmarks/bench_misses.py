"""Miss throughput: N concurrent distinct-key misses through OnlineAPI. Prints a Markdown table.

    python benchmarks/bench_misses.py                 # 10,000 misses, 5 rounds per store
    python benchmarks/bench_misses.py --quick         # 2,000 misses, 3 rounds
    python benchmarks/bench_misses.py --json          # also print the medians as one JSON line

Every request has its own prompt (its own key), n=1, so each one is a miss: one model call
(``cachesaver.testing.FakeModel``, no latency) and one append to the store. Rounds alternate
memory and disk (interleaved, after one warm-up round each) and each round uses a fresh store
directory; the median over rounds is reported. Each round asserts it measured what it claims:
N model calls, N samples stored, every response ``cached == [False]``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time

from cachesaver.pipelines import OnlineAPI
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request


async def one_round(kind: str, n_requests: int, tmp: str, tag: str) -> float:
    model = FakeModel()
    cache = "memory" if kind == "memory" else f"{tmp}/{tag}"
    reqs = [Request(prompt=f"{tag} distinct prompt {i}", n=1, request_id=f"{i:06d}", namespace="ns")
            for i in range(n_requests)]
    async with OnlineAPI(model=model, cache=cache, batch_size=512, timeout=0.005) as p:
        t0 = time.perf_counter()
        responses = await asyncio.gather(*(p.request(r) for r in reqs))
        elapsed = time.perf_counter() - t0
        # A miss is a miss: one model call and one stored sample per request, none cached.
        assert model.call_count == n_requests, (kind, model.call_count)
        assert p.stats.model_calls == n_requests
        assert all(r.cached == [False] for r in responses)
        stored = 0
        async for key in p.store.iter_keys():
            stored += await p.store.length(key)
        assert stored == n_requests, (kind, stored)
    return n_requests / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.requests or (2000 if args.quick else 10000)
    rounds = args.rounds or (3 if args.quick else 5)
    rates: dict[str, list[float]] = {"memory": [], "disk": []}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in rates:  # warm-up
            await one_round(kind, min(n, 1000), tmp, f"warm-{kind}")
        for r in range(rounds):
            for kind in rates:
                rates[kind].append(await one_round(kind, n, tmp, f"{kind}-{r}"))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
    print(f"\n### {n:,} concurrent distinct-key misses through OnlineAPI (FakeModel, n=1; median of {rounds})\n")
    print("| store | requests/s (median) | min | max | disk / memory |")
    print("|---|---|---|---|---|")
    for kind, values in rates.items():
        print(f"| {kind} | {med[kind]:,.0f} | {min(values):,.0f} | {max(values):,.0f} | "
              f"{med[kind] / med['memory']:.2f} |")
    if args.json:
        print(json.dumps({k: round(v) for k, v in med.items()}))


if __name__ == "__main__":
    asyncio.run(main())
