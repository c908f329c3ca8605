"""Miss throughput: N concurrent distinct-key misses through OnlineAPI. Prints a Markdown table.

    python benchmarks/bench_misses.py                 # 10,000 misses, 5 rounds per store
    python benchmarks/bench_misses.py --quick         # 2,000 misses, 3 rounds
    python benchmarks/bench_misses.py --json          # also print the medians as one JSON line
    python benchmarks/bench_misses.py --against DIR   # interleave with the engine in DIR (before/after)
    python benchmarks/bench_misses.py --bursts 1000,10000 [--against DIR]   # disk CPU per miss by burst size

``--against DIR`` runs each round in a fresh process, alternating between the engine of another
source tree (``DIR`` holds ``core/cachesaver``, e.g. ``git archive main | tar -x -C DIR``) and
this one, and prints both medians side by side.

Every request has its own prompt (its own key), n=1, so each one is a miss: one model call
(``cachesaver.testing.FakeModel``, no latency) and one append to the store. Rounds alternate
memory and disk (interleaved, after one warm-up round each) and each round uses a fresh store
directory; the median over rounds is reported. Each round asserts it measured what it claims:
N model calls, N samples stored, every response ``cached == [False]``.

Two rates per store: requests per wall-clock second, and requests per CPU second of this process
(``time.process_time``). On a machine shared with other work the second is the steadier one:
the loop is CPU-bound, and it does not count time spent waiting for a CPU.

``--bursts``: disk only, CPU per miss at each burst size (one process per round and tree with
``--against``, bursts interleaved) and the garbage collector's share of that CPU (its
collections timed with ``time.process_time`` from ``gc.callbacks``). A miss whose cost does not
depend on how many others are in flight gives the same CPU per miss at every size.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from cachesaver.pipelines import OnlineAPI
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request


class GCClock:
    """CPU seconds spent in the garbage collector (``gc.callbacks``), and collections per generation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started
            self.collections[info["generation"]] += 1


GC_CLOCK = GCClock()


async def one_round(kind: str, n_requests: int, tmp: str, tag: str) -> tuple[float, float]:
    model = FakeModel()
    cache = "memory" if kind == "memory" else f"{tmp}/{tag}"
    reqs = [Request(prompt=f"{tag} distinct prompt {i}", n=1, request_id=f"{i:06d}", namespace="ns")
            for i in range(n_requests)]
    async with OnlineAPI(model=model, cache=cache, batch_size=512, timeout=0.005) as p:
        GC_CLOCK.seconds, GC_CLOCK.collections = 0.0, [0, 0, 0]
        t0, c0 = time.perf_counter(), time.process_time()
        responses = await asyncio.gather(*(p.request(r) for r in reqs))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        # A miss is a miss: one model call and one stored sample per request, none cached.
        assert model.call_count == n_requests, (kind, model.call_count)
        assert p.stats.model_calls == n_requests
        assert all(r.cached == [False] for r in responses)
        stored = 0
        async for key in p.store.iter_keys():
            stored += await p.store.length(key)
        assert stored == n_requests, (kind, stored)
    LAST_GC[:] = [GC_CLOCK.seconds / cpu]
    return n_requests / elapsed, n_requests / cpu


LAST_GC = [0.0]


async def bursts_here(sizes: list[int], rounds: int) -> dict[str, list[float]]:
    """CPU per miss (us) and the collector's share of it, per burst size: medians of ``rounds``."""
    cpu: dict[int, list[float]] = {n: [] for n in sizes}
    share: dict[int, list[float]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        await one_round("disk", 1000, tmp, "warm")
        for r in range(rounds):
            for n in sizes:
                _wall, per_cpu = await one_round("disk", n, tmp, f"burst-{n}-{r}")
                cpu[n].append(1e6 / per_cpu)
                share[n].append(LAST_GC[0])
    return {str(n): [statistics.median(cpu[n]), statistics.median(share[n])] for n in sizes}


def bursts(sizes: list[int], rounds: int, other: "str | None") -> None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = ({"before": os.path.abspath(other)} if other else {}) | {"this tree": here}
    got: dict[str, dict[int, list[list[float]]]] = {t: {n: [] for n in sizes} for t in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{os.path.join(tree, 'core')}"}
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--bursts", ",".join(map(str, sizes)),
                                  "--rounds", "1", "--json", "--one-process"], env=env, capture_output=True,
                                 text=True, check=True)
            medians = json.loads(out.stdout.strip().splitlines()[-1])
            for n in sizes:
                got[name][n].append(medians[str(n)])
    print(f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}, load average {os.getloadavg()[0]:.1f}")
    print(f"\n### Disk misses: CPU per miss by burst size ({rounds} rounds, one process per round and tree, "
          "medians; FakeModel, n=1, distinct keys)\n")
    print("| tree | burst | CPU per miss (us) | collector's share of CPU | / smallest burst |")
    print("|---|---:|---:|---:|---:|")
    for name in trees:
        base = statistics.median(c for c, _ in got[name][sizes[0]])
        for n in sizes:
            c = statistics.median(c for c, _ in got[name][n])
            g = statistics.median(s for _, s in got[name][n])
            print(f"| {name} | {n:,} | {c:.0f} | {g:.0%} | {c / base:.2f}x |")


def compare(other: str, n: int, rounds: int) -> None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"before": os.path.abspath(other), "after": here}
    rates: dict[str, dict[str, dict[str, list[float]]]] = {
        t: {m: {"memory": [], "disk": []} for m in ("wall", "cpu")} for t in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{os.path.join(tree, 'core')}"}
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--requests", str(n),
                                  "--rounds", "1", "--json"], env=env, capture_output=True, text=True, check=True)
            medians = json.loads(out.stdout.strip().splitlines()[-1])
            for measure in ("wall", "cpu"):
                for kind in ("memory", "disk"):
                    rates[name][measure][kind].append(medians[measure][kind])
    print(f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
    print(f"\n### {n:,} concurrent distinct-key misses, before ({other}) vs after (this tree); "
          f"{rounds} interleaved rounds, one process each, medians\n")
    print("| store | measure | before | after | after / before |")
    print("|---|---|---|---|---|")
    for kind in ("memory", "disk"):
        for measure, label in (("wall", "requests/s (wall)"), ("cpu", "requests per CPU second")):
            b = statistics.median(rates["before"][measure][kind])
            a = statistics.median(rates["after"][measure][kind])
            print(f"| {kind} | {label} | {b:,.0f} | {a:,.0f} | {a / b:.2f}x |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--against", default=None, metavar="DIR")
    parser.add_argument("--bursts", default=None, help="comma-separated burst sizes (disk CPU per miss)")
    parser.add_argument("--one-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bursts:
        sizes = [int(x) for x in args.bursts.split(",")]
        if args.one_process:
            print(json.dumps(await bursts_here(sizes, args.rounds or 1)))
        else:
            bursts(sizes, args.rounds or 5, args.against)
        return
    n = args.requests or (2000 if args.quick else 10000)
    rounds = args.rounds or (3 if args.quick else 5)
    if args.against:
        compare(args.against, n, rounds)
        return
    rates: dict[str, list[tuple[float, float]]] = {"memory": [], "disk": []}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in rates:  # warm-up
            await one_round(kind, min(n, 1000), tmp, f"warm-{kind}")
        for r in range(rounds):
            for kind in rates:
                rates[kind].append(await one_round(kind, n, tmp, f"{kind}-{r}"))
    wall = {k: statistics.median(w for w, _ in v) for k, v in rates.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in rates.items()}
    print(f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
    print(f"\n### {n:,} concurrent distinct-key misses through OnlineAPI (FakeModel, n=1; median of {rounds})\n")
    print("| store | requests/s (wall) | min-max | requests per CPU second | disk / memory (CPU) |")
    print("|---|---|---|---|---|")
    for kind, values in rates.items():
        walls = [w for w, _ in values]
        print(f"| {kind} | {wall[kind]:,.0f} | {min(walls):,.0f}-{max(walls):,.0f} | {cpu[kind]:,.0f} | "
              f"{cpu[kind] / cpu['memory']:.2f} |")
    if args.json:
        print(json.dumps({"wall": {k: round(v) for k, v in wall.items()}, "cpu": {k: round(v) for k, v in cpu.items()}}))


if __name__ == "__main__":
    asyncio.run(main())
