"""Redis store throughput: hits and claims per second with 1, 4 and 16 client processes, plus
latency and round trips per operation (target: one round trip per hit).

    python benchmarks/bench_redis.py                      # private redis-server on a free port
    python benchmarks/bench_redis.py --url redis://127.0.0.1:6379/0 --procs 1,4 --seconds 3

Without ``--url`` it starts its own ``redis-server`` (nothing else competes for it); with
``--url`` it uses a random key prefix and deletes those keys afterwards.

Operations (each client process runs ``--concurrency`` asyncio tasks in a closed loop, all
processes start together; the table sums operations over processes):
  store.read       a private-run hit at store level: LRANGE of one sample
  store.claim      a shared-run claim of one sample: the claim Lua script (EVALSHA)
  engine hit       OnlineAPI.request(n=1) served entirely from Redis, private run (default)
  engine hit run   the same with run_id= (the ledger lives in Redis)
"round trips" counts request writes on redis-py connections over 2,000 sequential operations
of one client; "latency" is the mean time of those sequential operations.

Misses, Redis beside disk (``--misses``; target: a Redis miss <= 3 round trips and <= 2x the
CPU of a disk miss):

    python benchmarks/bench_redis.py --misses                  # this tree
    python benchmarks/bench_redis.py --misses --against DIR    # interleaved with the tree in DIR

Each round runs one process per tree (alternating, with ``--against``); in it, blocks of
distinct-key misses through ``OnlineAPI`` (``FakeModel``, no latency, n=1) alternate between a
fresh disk store and a fresh Redis prefix: ``--miss-count`` misses one after another (round
trips counted at redis-py's connections), then the same count all at once. Per miss it reports
this process's CPU (``time.process_time``), the Redis server's CPU (its ``INFO cpu`` counters;
only this benchmark's when the server is private) and wall time; medians over blocks and rounds.
Every block asserts that each request was a miss: one model call and one stored sample each.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Optional

KEYS = 64
SAMPLES_PER_KEY = 4_000
OPS = ("store.read", "store.claim", "engine hit", "engine hit run")


def prompt(i: int) -> str:
    return f"benchmark prompt {i}"


class _Client:
    """One benchmark client: a store, maybe a pipeline, and ``op`` as a coroutine function."""

    def __init__(self, url: str, prefix: str, op: str, tag: str) -> None:
        from cachesaver.keys import request_key
        from cachesaver.pipelines import OnlineAPI
        from cachesaver.stores.redis import RedisStore
        from cachesaver.typedefs import Request, Response, SingleRequestModel

        class NeverCalled(SingleRequestModel):
            async def request(self, request) -> Response:
                raise AssertionError("benchmark hits must never reach the model")

        self.Request = Request
        self.op = op
        self.tag = tag
        self.store = RedisStore(url, prefix=prefix)
        self.keys = [request_key(Request(prompt=prompt(i))) for i in range(KEYS)]
        self.run_id = f"bench-{tag}" if op in ("store.claim", "engine hit run") else None
        self.pipe = (OnlineAPI(model=NeverCalled(), cache=self.store, batch_size=64, timeout=0.01,
                               run_id=self.run_id) if op.startswith("engine") else None)

    async def warm_up(self) -> None:
        """Connect, run the first-use server check and load the claim script, off the clock."""
        await self.store.claim(f"warm-{self.tag}", "warm", self.keys[0], 1, partial=False)

    async def run(self, task: int, i: int) -> None:
        k = i % KEYS
        ns = f"ns-{self.tag}-{task}"
        if self.op == "store.read":
            assert await self.store.read(self.keys[k], (i // KEYS) % SAMPLES_PER_KEY, 1)
        elif self.op == "store.claim":
            assert (await self.store.claim(self.run_id, ns, self.keys[k], 1, partial=False))[1]
        else:
            request = self.Request(prompt=prompt(k), n=1, request_id=f"{task}-{i}", namespace=ns)
            assert (await self.pipe.request(request)).cached == [True]

    async def close(self) -> None:
        if self.pipe is not None:
            await self.pipe.aclose()
        await self.store.aclose()


# -- throughput: client processes ------------------------------------------------------------
def client_process(url, prefix, op, concurrency, seconds, barrier, results):
    async def main():
        client = _Client(url, prefix, op, uuid.uuid4().hex[:8])
        await client.warm_up()
        counts = [0] * concurrency
        stop = False

        async def task(t):
            i = 0
            while not stop:
                await client.run(t, i)
                i += 1
            counts[t] = i

        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)  # start together
        began = time.perf_counter()
        tasks = [asyncio.ensure_future(task(t)) for t in range(concurrency)]
        await asyncio.sleep(seconds)
        stop = True
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
        await client.close()
        return sum(counts), elapsed

    results.put(asyncio.run(main()))


def throughput(url, prefix, op, procs, concurrency, seconds) -> float:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(procs + 1), ctx.Queue()
    workers = [ctx.Process(target=client_process, args=(url, prefix, op, concurrency, seconds, barrier, results))
               for _ in range(procs)]
    for w in workers:
        w.start()
    barrier.wait(timeout=120)
    outs = [results.get(timeout=120 + seconds) for _ in workers]
    for w in workers:
        w.join()
    return sum(n for n, _ in outs) / max(elapsed for _, elapsed in outs)


# -- round trips and latency: one client, sequential ------------------------------------------
class RoundTripCounter:
    """Counts request writes on redis-py connections (one per command, one per pipeline)."""

    def __enter__(self):
        from redis.asyncio.connection import AbstractConnection
        from redis.connection import AbstractConnection as SyncConnection

        self.count = 0
        self.original = original = AbstractConnection.send_packed_command
        # The synchronous client too (a private run's hit check reads through it).
        self.sync_original = sync_original = SyncConnection.send_packed_command

        async def counting(conn, *args, **kwargs):
            self.count += 1
            return await original(conn, *args, **kwargs)

        def sync_counting(conn, *args, **kwargs):
            self.count += 1
            return sync_original(conn, *args, **kwargs)

        AbstractConnection.send_packed_command = counting
        SyncConnection.send_packed_command = sync_counting
        return self

    def __exit__(self, *exc):
        from redis.asyncio.connection import AbstractConnection
        from redis.connection import AbstractConnection as SyncConnection

        AbstractConnection.send_packed_command = self.original
        SyncConnection.send_packed_command = self.sync_original


def sequential(url, prefix, op, n=2_000) -> tuple[float, float]:
    """(round trips per operation, mean latency in microseconds)."""

    async def measure():
        client = _Client(url, prefix, op, uuid.uuid4().hex[:8])
        await client.warm_up()
        with RoundTripCounter() as counter:
            began = time.perf_counter()
            for i in range(n):
                await client.run(0, i)
            elapsed = time.perf_counter() - began
        await client.close()
        return counter.count / n, elapsed / n * 1e6

    return asyncio.run(measure())


# -- setup -----------------------------------------------------------------------------------
async def populate(url: str, prefix: str) -> None:
    from cachesaver.codec import encode_sample
    from cachesaver.keys import canonical_json, request_key
    from cachesaver.stores.redis import RedisStore
    from cachesaver.typedefs import Request, request_fields

    store = RedisStore(url, prefix=prefix)
    for i in range(KEYS):
        request = Request(prompt=prompt(i))
        samples = [encode_sample(f"answer {j} to prompt {i}", 12, 30, 0.0001) for j in range(SAMPLES_PER_KEY)]
        await store.append(request_key(request), samples, canonical_json(request_fields(request)))
    await store.aclose()


def start_private_server():
    if not shutil.which("redis-server"):
        return None, None
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", tempfile.mkdtemp(prefix="bench-redis-")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            with redis.Redis(port=port) as r:
                r.ping()
            break
        except redis.RedisError:
            time.sleep(0.025)
    return proc, f"redis://127.0.0.1:{port}/0"


# -- misses: Redis beside disk ----------------------------------------------------------------
def _server_cpu(url: str) -> float:
    import redis

    with redis.Redis.from_url(url) as r:
        info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def miss_block(kind: str, url: str, tmp: str, tag: str, count: int, concurrent: bool) -> dict:
    """``count`` distinct-key misses on a fresh store; figures per miss."""
    from cachesaver.pipelines import OnlineAPI
    from cachesaver.stores.redis import RedisStore
    from cachesaver.testing import FakeModel
    from cachesaver.typedefs import Request

    model = FakeModel(seed=7)
    store = RedisStore(url, prefix=f"bench-miss-{tag}") if kind == "redis" else os.path.join(tmp, tag)
    # Off the clock: scripts loaded, a pipeline's first-use checks, and (all at once) the
    # connections a burst opens.
    warm = count if concurrent else 20
    requests = [Request(prompt=f"{tag} miss {i}", n=1, namespace="ns") for i in range(warm + count)]
    async with OnlineAPI(model=model, cache=store, batch_size=512, timeout=0 if not concurrent else 0.005) as pipe:
        for r in requests[:20]:
            await pipe.request(r)
        await asyncio.gather(*(pipe.request(r) for r in requests[20:warm]))
        timed = requests[warm:]
        server0 = _server_cpu(url) if kind == "redis" else 0.0
        with RoundTripCounter() as counter:
            t0, c0 = time.perf_counter(), time.process_time()
            if concurrent:
                responses = await asyncio.gather(*(pipe.request(r) for r in timed))
            else:
                responses = [await pipe.request(r) for r in timed]
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        server = _server_cpu(url) - server0 if kind == "redis" else 0.0
        # A miss is a miss: one model call and one stored sample per request, none cached.
        assert model.call_count == warm + count and model.samples_generated == warm + count
        assert all(r.cached == [False] for r in responses)
        assert sum([await pipe.store.length(r.key) for r in responses]) == count
        if kind == "redis":
            await pipe.store.clear()
    return {"trips": counter.count / count, "cpu": cpu / count * 1e6, "server": server / count * 1e6,
            "wall": wall / count * 1e6}


def miss_rounds(url: str, rounds: int, count: int) -> dict:
    """Medians per (mode, store, figure) over ``rounds`` interleaved disk/Redis blocks."""
    import statistics

    figures: dict = {}

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(rounds + 1):  # round 0 warms up, off the record
                for mode, concurrent in (("sequential", False), ("concurrent", True)):
                    order = ("disk", "redis") if r % 2 else ("redis", "disk")
                    for kind in order:
                        got = await miss_block(kind, url, tmp, f"{uuid.uuid4().hex[:8]}", count, concurrent)
                        if r:
                            for name, value in got.items():
                                figures.setdefault(mode, {}).setdefault(kind, {}).setdefault(name, []).append(value)

    asyncio.run(run())
    return {mode: {kind: {name: statistics.median(v) for name, v in names.items()}
                   for kind, names in kinds.items()} for mode, kinds in figures.items()}


def print_misses(results: dict, count: int, title: str) -> None:
    trees = list(results)
    print(f"### {count:,} distinct-key misses per block, Redis beside disk ({title}); medians, per miss\n")
    head = "| misses | figure | " + " | ".join(trees) + " |"
    print(head + "\n|---|---|" + "---|" * len(trees))
    for mode in ("sequential", "concurrent"):
        rows = [
            ("Redis round trips", lambda f: f"{f['redis']['trips']:.2f}"),
            ("disk: CPU (us)", lambda f: f"{f['disk']['cpu']:.0f}"),
            ("Redis: CPU of this process (us)", lambda f: f"{f['redis']['cpu']:.0f}"),
            ("Redis: CPU of redis-server (us)", lambda f: f"{f['redis']['server']:.0f}"),
            ("Redis / disk CPU, this process", lambda f: f"{f['redis']['cpu'] / f['disk']['cpu']:.2f}x"),
            ("Redis / disk CPU, with the server", lambda f: f"{(f['redis']['cpu'] + f['redis']['server']) / f['disk']['cpu']:.2f}x"),
            ("disk / Redis: wall (us)", lambda f: f"{f['disk']['wall']:.0f} / {f['redis']['wall']:.0f}"),
        ]
        label = "one at a time" if mode == "sequential" else "all at once"
        for name, cell in rows:
            print(f"| {label} | {name} | " + " | ".join(cell(results[t][mode]) for t in trees) + " |")


def misses_against(url: str, other: Optional[str], rounds: int, count: int) -> None:
    """One process per tree and round, alternating; each prints its medians as JSON."""
    import json
    import statistics

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"before": os.path.abspath(other), "after": here} if other else {"this tree": here}
    per_tree: dict = {name: [] for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{os.path.join(tree, 'core')}"}
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--url", url, "--misses-json",
                                  "--miss-count", str(count)], env=env, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(out.stderr)
            per_tree[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = {
        name: {mode: {kind: {fig: statistics.median(run[mode][kind][fig] for run in runs)
                             for fig in runs[0][mode][kind]} for kind in runs[0][mode]} for mode in runs[0]}
        for name, runs in per_tree.items()}
    title = f"{rounds} rounds, one process per tree and round" + (f"; before = {other}" if other else "")
    print_misses(results, count, title)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="use this Redis (default: start a private redis-server)")
    parser.add_argument("--procs", default="1,4,16", help="client process counts (default 1,4,16)")
    parser.add_argument("--concurrency", type=int, default=8, help="asyncio tasks per process (default 8)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured time per cell (default 2)")
    parser.add_argument("--ops", default=",".join(OPS), help="subset of: " + ", ".join(OPS))
    parser.add_argument("--misses", action="store_true", help="misses on Redis beside disk instead")
    parser.add_argument("--against", metavar="DIR", help="with --misses: also the tree in DIR, interleaved")
    parser.add_argument("--miss-count", type=int, default=300, help="misses per block (default 300)")
    parser.add_argument("--rounds", type=int, default=5, help="with --misses: rounds (default 5)")
    parser.add_argument("--misses-json", action="store_true", help=argparse.SUPPRESS)  # one round, JSON
    args = parser.parse_args()

    if args.misses_json:
        import json

        print(json.dumps(miss_rounds(args.url, 1, args.miss_count)))
        return 0
    server, url = (None, args.url) if args.url else start_private_server()
    url = url or "redis://127.0.0.1:6379/0"
    if args.misses:
        try:
            print(f"Redis at {url} ({'private server' if server else 'given server'}); "
                  f"{os.cpu_count()} CPUs shared by clients and server\n")
            misses_against(url, args.against, args.rounds, args.miss_count)
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
        return 0
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    counts = [int(p) for p in args.procs.split(",")]
    try:
        asyncio.run(populate(url, prefix))
        print(f"Redis at {url} ({'private server' if server else 'given server'}); {KEYS} keys x "
              f"{SAMPLES_PER_KEY} samples; {args.concurrency} tasks per process; {args.seconds:g}s per "
              f"cell; {os.cpu_count()} CPUs shared by clients and server\n")
        header = (f"{'operation':<16}" + "".join(f"{f'{p} proc':>13}" for p in counts)
                  + f"{'latency':>11}{'round trips':>13}")
        print(header + "\n" + "-" * len(header))
        for op in ops:
            cells = [f"{throughput(url, prefix, op, p, args.concurrency, args.seconds):>9,.0f}/s" for p in counts]
            trips, latency = sequential(url, prefix, op)
            print(f"{op:<16}" + "".join(f"{c:>13}" for c in cells) + f"{latency:>8.0f} us{trips:>13.2f}",
                  flush=True)
    finally:
        import redis

        with redis.Redis.from_url(url) as r:
            names = list(r.scan_iter(match=prefix + ":*", count=1000))
            for i in range(0, len(names), 500):
                r.unlink(*names[i:i + 500])
        if server is not None:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
