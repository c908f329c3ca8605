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

        self.count = 0
        self.original = original = AbstractConnection.send_packed_command

        async def counting(conn, *args, **kwargs):
            self.count += 1
            return await original(conn, *args, **kwargs)

        AbstractConnection.send_packed_command = counting
        return self

    def __exit__(self, *exc):
        from redis.asyncio.connection import AbstractConnection

        AbstractConnection.send_packed_command = self.original


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="use this Redis (default: start a private redis-server)")
    parser.add_argument("--procs", default="1,4,16", help="client process counts (default 1,4,16)")
    parser.add_argument("--concurrency", type=int, default=8, help="asyncio tasks per process (default 8)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured time per cell (default 2)")
    parser.add_argument("--ops", default=",".join(OPS), help="subset of: " + ", ".join(OPS))
    args = parser.parse_args()

    server, url = (None, args.url) if args.url else start_private_server()
    url = url or "redis://127.0.0.1:6379/0"
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
