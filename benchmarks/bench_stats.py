"""`cachesaver stats` on a large disk cache: wall time and peak memory.

    python benchmarks/bench_stats.py                       # 100,000 keys
    python benchmarks/bench_stats.py --keys 1000000        # 1M keys (building it takes a while)
    python benchmarks/bench_stats.py --against DIR         # also the CLI of the tree in DIR

Builds a disk cache of N keys with 2 samples each (written through ``DiskStore.append_many``, as
the engine writes them, with each key's canonical request), then runs ``python -m cachesaver
stats --cache DIR`` (and ``--detail``) in a fresh process per tree, alternating trees, and
reports the median wall time and the peak RSS of the child (``ru_maxrss``). Asserts the command
reports N keys (it measured what it claims).
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


def run_stats(tree: str, directory: str, extra: list[str]) -> tuple[float, int, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, os.path.join(tree, "core")]))
    code = ("import resource, runpy, sys; sys.argv = ['cachesaver'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('cachesaver', run_name='__main__')\n"
            "finally:\n    print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, "stats", "--cache", directory, *extra], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    rss = int(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("MAXRSS")))
    return wall, rss, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against", help="another source tree to run too")
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = [("this tree", here)] + ([("--against", os.path.abspath(args.against))] if args.against else [])
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "cache")
        began = time.perf_counter()
        asyncio.run(build(directory, args.keys))
        print(f"built {args.keys:,} keys in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        results: dict[tuple[str, str], list[tuple[float, int]]] = {}
        for repeat in range(args.repeats):
            for label, tree in (trees if repeat % 2 == 0 else trees[::-1]):
                for variant, extra in (("stats", []), ("stats --detail", ["--detail"])):
                    wall, rss, out = run_stats(tree, directory, extra)
                    assert f"{args.keys} keys" in out, out[:500]
                    results.setdefault((label, variant), []).append((wall, rss))
    print(f"\n`cachesaver stats` on a disk cache of {args.keys:,} keys x 2 samples "
          f"(median of {args.repeats}, fresh process each)\n")
    print("| tree | command | wall s | peak RSS MB |")
    print("|---|---|---:|---:|")
    for (label, variant), got in sorted(results.items()):
        wall = statistics.median(w for w, _ in got)
        rss = statistics.median(r for _, r in got) / 1024
        print(f"| {label} | `{variant}` | {wall:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
