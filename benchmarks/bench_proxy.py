"""Hits through the real LiteLLM Proxy: CacheSaver vs litellm's own in-memory cache vs no cache.

One proxy process (``litellm --config ... --port N``) serves three variants side by side:

- ``cachesaver``: model ``cachesaver/openai/gpt-4o-mini`` (``cachesaver_litellm.proxy.handler``);
  every request names a fresh namespace (``x-cachesaver-namespace``), so each one is a genuine
  full hit of stored sample 0 (checked: ``x-cachesaver-cache-hit: true`` on every response);
- ``litellm cache``: model ``openai/gpt-4o-mini`` with the proxy's in-memory response cache
  (``cache_params: {type: local, mode: default_off}``, opted in per request with
  ``"cache": {"use-cache": true}``);
- ``no cache``: the same model without the opt-in: every request goes to the upstream.

The upstream is the project's fake OpenAI server in this process, answering at once, so the
``no cache`` row is the proxy's own overhead plus one local HTTP hop (a real model adds its
latency on top). Hits are asserted to be hits: the upstream's request count must not move
during a cached burst, and must grow by exactly the burst size during a ``no cache`` burst.

For each round, each concurrency (1, 8, 64 clients) and each variant (in a shuffled order), a
burst of requests is timed after a warm-up round; the table shows medians over rounds:
latency at 1 client (ms per request) and requests/s at 1, 8 and 64 clients.

Run: ``python benchmarks/bench_proxy.py [--rounds 5] [--requests 100]`` (needs the proxy
extra: ``pip install -e ".[proxy]"``).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx  # noqa: E402

from cachesaver.testing.server import FakeOpenAIServer  # noqa: E402

MASTER_KEY = "sk-bench-master"
CONFIG = """\
model_list:
  - model_name: cachesaver
    litellm_params: {model: cachesaver/openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY,
                     api_base: os.environ/OPENAI_API_BASE}
  - model_name: plain
    litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY,
                     api_base: os.environ/OPENAI_API_BASE}
litellm_settings:
  custom_provider_map:
    - {provider: cachesaver, custom_handler: cachesaver_litellm.proxy.handler}
  cache: true
  cache_params: {type: local, mode: default_off}
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
router_settings: {num_retries: 0}
"""
MESSAGES = [{"role": "user", "content": "Benchmark prompt: name a colour."}]
VARIANTS = ("cachesaver", "litellm cache", "no cache")
CONCURRENCY = (1, 8, 64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(workdir: Path, upstream: str) -> tuple[subprocess.Popen, str]:
    import cachesaver
    import cachesaver_litellm

    config = workdir / "config.yaml"
    config.write_text(CONFIG)
    port = free_port()
    script = Path(sys.executable).parent / "litellm"
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(Path(cachesaver_litellm.__file__).resolve().parents[1]),
                                       str(Path(cachesaver.__file__).resolve().parents[1]),
                                       env.get("PYTHONPATH", "")]),
        "LITELLM_MASTER_KEY": MASTER_KEY, "OPENAI_API_KEY": "sk-fake", "OPENAI_API_BASE": upstream,
        "CACHESAVER_STORE": str(workdir / "store"), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
    })
    log = open(workdir / "proxy.log", "wb")
    proc = subprocess.Popen([str(script) if script.exists() else "litellm", "--config", str(config),
                             "--port", str(port), "--host", "127.0.0.1"],
                            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the proxy exited:\n{(workdir / 'proxy.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/health/liveliness", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the proxy did not start within 180 s")


class Bench:
    def __init__(self, client: httpx.AsyncClient, upstream: FakeOpenAIServer) -> None:
        self.client = client
        self.upstream = upstream
        self.counter = 0
        self.resent = 0

    def request(self, variant: str) -> tuple[dict, dict]:
        body: dict = {"model": "plain", "messages": MESSAGES, "temperature": 0.7}
        headers: dict = {}
        if variant == "cachesaver":
            self.counter += 1
            body["model"] = "cachesaver"
            headers["x-cachesaver-namespace"] = f"bench-{self.counter}"
        elif variant == "litellm cache":
            body["cache"] = {"use-cache": True}
        return body, headers

    async def one(self, variant: str) -> float:
        body, headers = self.request(variant)
        start = time.perf_counter()
        try:
            response = await self.client.post("/v1/chat/completions", json=body, headers=headers)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # a keep-alive connection the server closed as it was reused: counted, sent again
            self.resent += 1
            response = await self.client.post("/v1/chat/completions", json=body, headers=headers)
        elapsed = time.perf_counter() - start
        assert response.status_code == 200, response.text[:300]
        if variant == "cachesaver":
            assert response.headers["x-cachesaver-cache-hit"] == "true", dict(response.headers)
            assert float(response.headers["x-litellm-response-cost"]) == 0.0
        return elapsed

    async def burst(self, variant: str, concurrency: int, requests: int) -> tuple[float, list[float]]:
        """``requests`` calls by ``concurrency`` workers: (requests/s, per-request latencies)."""
        before = self.upstream.request_count
        queue = iter(range(requests))
        latencies: list[float] = []

        async def worker() -> None:
            for _ in queue:
                latencies.append(await self.one(variant))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        sent = self.upstream.request_count - before
        expected = requests if variant == "no cache" else 0
        assert sent == expected, f"{variant}: the upstream got {sent} requests, expected {expected}"
        return requests / elapsed, latencies


async def run(base: str, upstream: FakeOpenAIServer, rounds: int, requests: int) -> dict:
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits,
                                 headers={"Authorization": f"Bearer {MASTER_KEY}"}) as client:
        bench = Bench(client, upstream)
        # store the CacheSaver sample and the litellm cache entry
        await bench.client.post("/v1/chat/completions", json={"model": "cachesaver", "messages": MESSAGES,
                                                              "temperature": 0.7},
                                headers={"x-cachesaver-namespace": "warm"})
        await bench.client.post("/v1/chat/completions", json={"model": "plain", "messages": MESSAGES,
                                                              "temperature": 0.7, "cache": {"use-cache": True}})
        await asyncio.sleep(1.0)  # litellm writes its cache entry after answering
        rng = random.Random(3)
        rps = {(v, c): [] for v in VARIANTS for c in CONCURRENCY}
        latency = {v: [] for v in VARIANTS}
        for r in range(-1, rounds):  # round -1 warms up connections and code paths
            for concurrency in CONCURRENCY:
                order = list(VARIANTS)
                rng.shuffle(order)
                for variant in order:
                    n = requests * 2 if concurrency > 8 else requests
                    throughput, latencies = await bench.burst(variant, concurrency, n)
                    if r >= 0:
                        rps[(variant, concurrency)].append(throughput)
                        if concurrency == 1:
                            latency[variant].extend(latencies)
            print(f"  round {r + 1}/{rounds} done" if r >= 0 else "  warm-up done", file=sys.stderr)
        resent = bench.resent
    return {"resent": resent, "rps": {k: statistics.median(v) for k, v in rps.items()},
            "latency": {v: statistics.median(x) * 1e3 for v, x in latency.items()},
            "p99": {v: statistics.quantiles(x, n=100)[-1] * 1e3 for v, x in latency.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100, help="requests per burst at 1 client")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(seed=5) as upstream:
        started = time.perf_counter()
        proc, base = start_proxy(Path(tmp), upstream.base_url)
        print(f"proxy ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        try:
            result = asyncio.run(run(base, upstream, args.rounds, args.requests))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    rps, lat, p99 = result["rps"], result["latency"], result["p99"]
    print(f"\nLiteLLM Proxy, one worker; fake upstream answering at once; medians of {args.rounds} rounds")
    print(f"{'variant':<15} {'p50 ms':>10} {'p99 ms':>8} " + " ".join(f"{f'req/s @{c}':>10}" for c in CONCURRENCY))
    for variant in VARIANTS:
        print(f"{variant:<15} {lat[variant]:>10.2f} {p99[variant]:>8.2f} "
              + " ".join(f"{rps[(variant, c)]:>10.0f}" for c in CONCURRENCY))
    print(f"(requests sent twice after a closed keep-alive connection: {result['resent']})")
    print("\nratios (cachesaver / other; throughput: higher is better, latency: lower is better)")
    for other in ("litellm cache", "no cache"):
        parts = [f"latency {lat['cachesaver'] / lat[other]:.2f}x"]
        parts += [f"req/s @{c} {rps[('cachesaver', c)] / rps[(other, c)]:.2f}x" for c in CONCURRENCY]
        print(f"  vs {other:<14} " + ", ".join(parts))


if __name__ == "__main__":
    main()
