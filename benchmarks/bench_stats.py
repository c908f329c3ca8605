"""`cachesaver stats` on a large disk cache: wall time and peak memory.

    python benchmarks/bench_stats.py                       # 100,000 keys
    python benchmarks/bench_stats.py --keys 1000000        # 1M keys (building it takes a while)
    python benchmarks/bench_stats.py --against DIR         # also the CLI of the tree in DIR
    python benchmarks/bench_stats.py --keep DIR            # build the cache in DIR once, reuse it
    python benchmarks/bench_stats.py --redis redis://127.0.0.1:6379/0   # a Redis cache instead

With ``--redis URL``: writes N keys under a fresh prefix (``bench-stats-<random>``, deleted
after), then times ``RedisStore.key_totals`` as this tree computes it (a pipelined round trip
per SCAN batch) against the default it replaces (three reads per key), in this process,
alternating, counting the round trips redis-py sends; asserts both report N keys and 2N samples.

Builds a disk cache of N keys with 2 samples each (written through ``DiskStore.append_many``, as
the engine writes them, with each key's canonical request), then runs ``python -m cachesaver
stats --cache DIR`` (and ``--detail``) in a fresh process per tree, alternating trees, and
reports the median wall time, the CPU time (user + system) and the peak RSS of the child
(``VmHWM``, its own address space since ``exec``; ``ru_maxrss`` on Linux starts from the parent's
peak, which building the cache raises), and the load average while it ran: on a machine shared with other work the CPU
time is the steadier figure (wall time counts the time spent waiting for a CPU). Asserts the
command reports N keys and 2N samples (it measured what it claims).

The cache is written by this tree's ``DiskStore`` (with ``--keep``, by whichever tree built it).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import orjson


async def build(directory: str, keys: int) -> None:
    from cachesaver.codec import encode_sample
    from cachesaver.stores import DiskStore

    store = DiskStore(directory)
    try:
        chunk = 20_000
        for start in range(0, keys, chunk):
            items = []
            for i in range(start, min(keys, start + chunk)):
                meta = orjson.dumps({"cachesaver_model": "openai/gpt-4o-mini", "messages": [
                    {"role": "user", "content": f"question number {i}: what is {i} + {i}?"}], "temperature": 0.7})
                key = f"{i:064x}"
                items.append((key, [encode_sample(f"answer {i}.{j}: {2 * i}", 20, 8, 1e-6) for j in range(2)], meta))
            await store.append_many(items)
    finally:
        store.close()


def run_stats(tree: str, directory: str, extra: list[str]) -> tuple[float, float, int, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, os.path.join(tree, "core")]))
    code = ("import resource, runpy, sys; sys.argv = ['cachesaver'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('cachesaver', run_name='__main__')\n"
            "finally:\n    u = resource.getrusage(resource.RUSAGE_SELF)\n    peak = u.ru_maxrss\n"
            "    try:\n        peak = int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
            "    except OSError:\n        pass\n"
            "    print('MAXRSS', peak, u.ru_utime + u.ru_stime, file=sys.stderr)\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, "stats", "--cache", directory, *extra], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    line = next(line.split() for line in proc.stderr.splitlines() if line.startswith("MAXRSS"))
    return wall, float(line[2]), int(line[1]), proc.stdout


async def redis_table(url: str, keys: int, repeats: int) -> None:
    """Old (key by key) vs new (a batch per round trip) ``key_totals`` on a Redis cache."""
    import uuid

    from redis.asyncio.connection import AbstractConnection

    from cachesaver.codec import encode_sample
    from cachesaver.stores.base import Store
    from cachesaver.stores.redis import RedisStore
    from cachesaver.stores.totals import stream_key_totals

    store = RedisStore(url, prefix=f"bench-stats-{uuid.uuid4().hex[:12]}")
    sent = [0]
    original = AbstractConnection.send_packed_command

    async def counting(conn: Any, *a: Any, **kw: Any) -> Any:
        sent[0] += 1
        return await original(conn, *a, **kw)

    class KeyByKey:  # the default Store.iter_key_sizes: LLEN, LRANGE, GET per key
        def iter_key_sizes(self) -> Any:
            return Store.iter_key_sizes(store)

    variants = {"before: key by key (default)": lambda: stream_key_totals(KeyByKey(), 10),  # type: ignore[arg-type]
                "after: a pipeline per SCAN batch": lambda: store.key_totals(10)}
    try:
        began = time.perf_counter()
        for start in range(0, keys, 5000):
            await store.append_many([
                (f"{i:064x}", [encode_sample(f"answer {i}.{j}: {2 * i}", 20, 8, 1e-6) for j in range(2)],
                 orjson.dumps({"cachesaver_model": "openai/gpt-4o-mini", "messages": [
                     {"role": "user", "content": f"question number {i}"}]}))
                for i in range(start, min(keys, start + 5000))])
        print(f"built {keys:,} keys in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        results: dict[str, list[tuple[float, int]]] = {}
        answers = {}
        for repeat in range(repeats + 1):  # the first round warms up
            for label, run in (list(variants.items()) if repeat % 2 else list(variants.items())[::-1]):
                sent[0] = 0
                t0 = time.perf_counter()
                got = await run()
                wall = time.perf_counter() - t0
                assert (got.keys, got.samples) == (keys, 2 * keys), (label, got.keys, got.samples)
                answers[label] = (got.by_model, got.largest)
                if repeat:
                    results.setdefault(label, []).append((wall, sent[0]))
        assert len({repr(a) for a in answers.values()}) == 1, "the two paths disagree"
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
        await store.clear()
        await store.aclose()
    print(f"\n`RedisStore.key_totals` on a Redis cache of {keys:,} keys x 2 samples "
          f"(median of {repeats}, after a warm-up round; same answer from both)\n")
    print("| path | wall s | round trips |")
    print("|---|---:|---:|")
    for label, got in results.items():
        print(f"| {label} | {statistics.median(g[0] for g in got):.2f} | "
              f"{statistics.median(g[1] for g in got):,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against", help="another source tree to run too")
    parser.add_argument("--keep", help="a directory for the cache: built there if absent, reused if present")
    parser.add_argument("--redis", metavar="URL", help="a Redis cache (a fresh prefix, deleted after)")
    args = parser.parse_args()
    if args.redis:
        asyncio.run(redis_table(args.redis, args.keys, args.repeats))
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = [("this tree", here)] + ([("--against", os.path.abspath(args.against))] if args.against else [])
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.abspath(args.keep) if args.keep else os.path.join(tmp, "cache")
        if not os.path.exists(os.path.join(directory, "cache.db")):
            began = time.perf_counter()
            asyncio.run(build(directory, args.keys))
            print(f"built {args.keys:,} keys in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        results: dict[tuple[str, str], list[tuple[float, float, int, float]]] = {}
        for repeat in range(args.repeats):
            for label, tree in (trees if repeat % 2 == 0 else trees[::-1]):
                for variant, extra in (("stats", []), ("stats --detail", ["--detail"])):
                    wall, cpu, rss, out = run_stats(tree, directory, extra)
                    assert f"{args.keys} keys, {2 * args.keys} samples" in out, out[:500]
                    results.setdefault((label, variant), []).append((wall, cpu, rss, os.getloadavg()[0]))
    print(f"\n`cachesaver stats` on a disk cache of {args.keys:,} keys x 2 samples "
          f"(median of {args.repeats}, fresh process each)\n")
    print("| tree | command | wall s | CPU s | peak RSS MB | load average (1 min) |")
    print("|---|---|---:|---:|---:|---:|")
    for (label, variant), got in sorted(results.items()):
        wall = statistics.median(g[0] for g in got)
        cpu = statistics.median(g[1] for g in got)
        rss = statistics.median(g[2] for g in got) / 1024
        load = statistics.median(g[3] for g in got)
        print(f"| {label} | `{variant}` | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {load:.1f} |")


if __name__ == "__main__":
    main()
