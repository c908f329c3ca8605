"""Misses through litellm: ``cachesaver/`` provider vs no cache vs litellm's own cache (req/s, CPU).

    python benchmarks/bench_litellm_misses.py                # 1,000 misses per round, 5 rounds
    python benchmarks/bench_litellm_misses.py --requests 400 --rounds 3

Each round sends ``--requests`` distinct prompts (every call a miss), ``--inflight`` at a time,
through ``litellm.acompletion`` to ``cachesaver serve-fake`` running in its own process (so the
CPU measured is the client's alone), once per variant, the variants in a shuffled order per round:

- no cache: ``openai/gpt-4o-mini`` straight to the server;
- litellm's cache: the same with ``litellm.cache = Cache()`` (a lookup and a store per call);
- the ``cachesaver/`` provider, disk store (its own pipeline pass, then the real call inside it).

Two figures per variant: requests per wall-clock second of the burst, and CPU microseconds per
request (``time.process_time`` of this process, including litellm's background logging: the
CPU count stops when a counting callback has seen every call's success event). Medians over rounds, ratios to no cache. Each round
asserts what it measured: one HTTP request per call at the server, and for the provider every
response ``cached == [False]``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402

import cachesaver_litellm  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_litellm import SuccessCount  # noqa: E402  (counts litellm's success events)


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "cachesaver", "serve-fake", "-q", "--seed", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    url = next((w for w in line.split() if w.startswith("http")), line)
    return proc, url.rstrip("/")


def server_requests(url: str) -> int:
    root = url[: -len("/v1")] if url.endswith("/v1") else url
    with urllib.request.urlopen(f"{root}/stats", timeout=10) as answer:
        return int(json.load(answer)["requests"])


async def burst(kw: dict, n: int, inflight: int, tag: str, extra: dict,
                counter: SuccessCount) -> tuple[float, float, list]:
    gate = asyncio.Semaphore(inflight)

    async def one(i: int):
        async with gate:
            return await litellm.acompletion(messages=[{"role": "user", "content": f"{tag} prompt {i}"}],
                                             **kw, **extra)

    target = counter.seen + n
    c0, t0 = time.process_time(), time.perf_counter()
    responses = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    deadline = time.perf_counter() + 60
    while counter.seen < target:  # litellm's background logging of the burst, counted in its CPU
        if time.perf_counter() > deadline:
            raise SystemExit(f"{tag}: {target - counter.seen} success events never came")
        await asyncio.sleep(0.001)
    return n / wall, (time.process_time() - c0) / n * 1e6, responses


async def run(n: int, rounds: int, inflight: int) -> None:
    litellm.suppress_debug_info = True
    proc, url = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cachesaver_litellm.register(store=os.path.join(tmp, "provider"), timeout=0.005)
            counter = SuccessCount()
            litellm.callbacks.append(counter)
            base = dict(api_base=url, api_key="sk-bench", max_retries=0)
            own_cache = litellm.Cache()
            variants = {
                "no cache": (dict(model="openai/gpt-4o-mini", **base), {}),
                "litellm cache": (dict(model="openai/gpt-4o-mini", caching=True, **base), {}),
                "cachesaver/ provider": (dict(model="cachesaver/openai/gpt-4o-mini", **base),
                                         {"metadata": {"cachesaver_namespace": "misses"}}),
            }
            out: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
            rng = random.Random(3)
            names = list(variants)
            for r in range(-1, rounds):  # round -1 warms every path up
                rng.shuffle(names)
                for name in names:
                    kw, extra = variants[name]
                    litellm.cache = own_cache if name == "litellm cache" else None
                    before = server_requests(url)
                    rate, cpu, responses = await burst(kw, n if r >= 0 else min(n, 200), inflight,
                                                       f"{name} {r}", extra, counter)
                    litellm.cache = None
                    assert server_requests(url) - before == len(responses), (name, "one request per miss")
                    if name == "cachesaver/ provider":
                        assert all(x._hidden_params["cachesaver"]["cached"] == [False] for x in responses)
                    if r >= 0:
                        out[name].append((rate, cpu))
            litellm.callbacks.remove(counter)
            cachesaver_litellm.unregister()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    load = os.getloadavg()[0]
    print(f"\nMisses through litellm.acompletion to serve-fake (own process): {n:,} distinct prompts per round, "
          f"{inflight} in flight, {rounds} interleaved rounds, medians (load average {load:.2f})\n")
    print("| variant | requests/s (wall) | CPU us per request | req/s vs no cache | CPU vs no cache |")
    print("|---|---|---|---|---|")
    base_rate = statistics.median(x for x, _ in out["no cache"])
    base_cpu = statistics.median(c for _, c in out["no cache"])
    for name, values in out.items():
        rate = statistics.median(x for x, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"| {name} | {rate:,.0f} | {cpu:,.0f} | {rate / base_rate:.2f}x | {cpu / base_cpu:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inflight", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.rounds, args.inflight))


if __name__ == "__main__":
    main()
