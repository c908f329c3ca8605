"""Several worker processes x several namespaces sharing one Redis store and one ``run_id``.

Each worker is this file run as a script (see ``worker`` at the bottom): an ``OnlineAPI`` on
``cache="redis://...?prefix=..."`` with a FakeModel whose samples carry the worker's tag, so
every sample is traceable. Checked by identity, per (namespace, key):

- G1: no sample handed out twice, across all workers;
- none lost: the namespace received exactly samples 0..C-1 of the list (C = its demand) and
  its ledger position is C; every generated sample is stored (list length = samples generated);
- G8: the ``cached=False`` flags of all workers' responses add up to exactly the samples
  generated (the store keeps the run's billing records, so a sample one worker generated and
  another claimed first is billed once, to that claim; before, 9% of them were billed nowhere);
- generation vs the minimum (max over namespaces of C): with the store's generation lease
  (which the engine's cacher takes around each generation), exactly the minimum; with the
  lease hidden from the cacher, over-generation is reported and bounded by (workers - 1) x
  minimum (each worker appends at most the minimum: it never asks beyond max(position + n)).

Scenarios: "mixed" (every worker serves every namespace: their demands add up in the shared
ledger) and "arms" (one namespace per worker, like ablation arms on several hosts: without
coordination each worker pays for the same samples).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROMPTS = [f"question {i}" for i in range(4)]
N = 2
ROUNDS = 3
WORKERS = 4


def _namespaces(scenario: str, worker: int) -> list[str]:
    return ["A", "B", "C"] if scenario == "mixed" else [f"arm{worker}"]


@pytest.mark.parametrize("scenario", ["mixed", "arms"])
@pytest.mark.parametrize("lease", [False, True], ids=["no-lease", "lease"])
async def test_workers_share_one_run_without_losing_or_repeating_samples(
    redis_store_factory, redis_prefix, scenario, lease
):
    from cachesaver.codec import decode_sample
    from cachesaver.keys import request_key
    from cachesaver.typedefs import Request

    url = f"{redis_store_factory.url}?prefix={redis_prefix}"
    run_id = f"run-{scenario}-{lease}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, json.dumps({
                "url": url, "run_id": run_id, "worker": w, "lease": lease,
                "namespaces": _namespaces(scenario, w)})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for w in range(WORKERS)
    ]
    for proc in procs:  # all imported and connected: start together to make cold misses race
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        reports.append(json.loads(out.strip().splitlines()[-1]))

    store = redis_store_factory()
    ledger = {(ns, key): pos async for run, ns, key, pos in store.iter_ledger() if run == run_id}
    generated_total = minimum_total = 0
    for prompt in PROMPTS:
        key = request_key(Request(prompt=prompt))
        stored = [decode_sample(raw, key=key, index=i).data
                  for i, raw in enumerate(await store.read(key, 0, 10_000))]
        generated = sum(r["generated"][prompt] for r in reports)
        assert len(stored) == generated  # every generated sample is stored (G6)
        demand: dict[str, list[str]] = {}
        for r in reports:
            for ns, by_prompt in r["delivered"].items():
                demand.setdefault(ns, []).extend(by_prompt[prompt])
        for ns, got in demand.items():
            assert len(got) == len(set(got)), f"{ns}: a sample was handed out twice (G1)"
            assert sorted(got) == sorted(stored[: len(got)]), f"{ns}: samples skipped or foreign"
            assert ledger[(ns, key)] == len(got)
        minimum = max(len(got) for got in demand.values())
        assert minimum <= len(stored) <= WORKERS * minimum
        if lease:
            assert len(stored) == minimum  # the lease removes over-generation entirely
        generated_total += len(stored)
        minimum_total += minimum
    if lease:  # (without it, samples generated beyond every namespace's need are never delivered)
        assert sum(r["false_flags"] for r in reports) == generated_total  # G8
    print(f"\n[{scenario}, lease={lease}] workers={WORKERS} keys={len(PROMPTS)} generated="
          f"{generated_total} minimum={minimum_total} over-generation="
          f"{generated_total - minimum_total} ({(generated_total / minimum_total - 1):.0%})")
    await store.aclose()


# -- the worker process ---------------------------------------------------------------------------
def worker(config: dict) -> None:
    import asyncio
    from dataclasses import dataclass

    from cachesaver.pipelines import OnlineAPI
    from cachesaver.stores.base import NO_LEASE
    from cachesaver.testing import FakeModel
    from cachesaver.typedefs import Request

    @dataclass
    class TaggedModel(FakeModel):
        tag: str = ""

        def sample_text(self, prompt, k):
            return f"{self.tag}|{super().sample_text(prompt, k)}"

    async def main() -> dict:
        w = config["worker"]
        model = TaggedModel(seed=w, latency=0.03, tag=f"w{w}")
        async with OnlineAPI(model=model, cache=config["url"], batch_size=64, timeout=0.01,
                             run_id=config["run_id"]) as pipe:
            if not config["lease"]:
                pipe.store.generation_lease = lambda key, **_: NO_LEASE  # generate without the lease
            await pipe.store.length("warm-up")  # connect before the start signal
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            delivered = {ns: {p: [] for p in PROMPTS} for ns in config["namespaces"]}
            false_flags = 0
            for r in range(ROUNDS):
                jobs = [(ns, p) for ns in config["namespaces"] for p in PROMPTS]
                responses = await asyncio.gather(*(
                    pipe.request(Request(prompt=p, n=N, request_id=f"w{w}-{r}-{ns}-{p}", namespace=ns))
                    for ns, p in jobs))
                for (ns, p), resp in zip(jobs, responses):
                    delivered[ns][p].extend(resp.data)
                    false_flags += sum(not c for c in resp.cached)
        generated = {p: sum(c.returned for c in model.calls if c.prompt == p) for p in PROMPTS}
        return {"delivered": delivered, "generated": generated, "false_flags": false_flags}

    print(json.dumps(asyncio.run(main())), flush=True)


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]))
