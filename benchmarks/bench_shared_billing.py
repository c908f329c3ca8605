"""G8 in one shared run over several processes: are the samples generated all billed once?

    python benchmarks/bench_shared_billing.py                      # 8 workers, disk and Redis
    python benchmarks/bench_shared_billing.py --workers 4 --rounds 4
    python benchmarks/bench_shared_billing.py --against DIR        # also the engine in DIR

Each worker is a process running ``OnlineAPI(run_id=...)`` on one store (a fresh disk directory,
or a fresh prefix on the Redis at ``--redis``), with a ``FakeModel`` of its own seed. All start
on one signal; each round every worker asks every namespace (A, B, C) for every prompt with
n=2, concurrently. Reported per store: samples generated (all models), samples flagged
``cached=False`` (all responses), the difference (paid and billed nowhere), and G1's check (no
sample handed out twice in a namespace; the run raises if one was).

``--against DIR`` runs the same with the engine of another source tree (``DIR`` holds
``core/cachesaver``, e.g. ``git archive <rev> | tar -x -C DIR``), alternating trees per repeat.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid

WORKER = textwrap.dedent("""
    import asyncio, json, sys
    from cachesaver.pipelines import OnlineAPI
    from cachesaver.testing import FakeModel
    from cachesaver.typedefs import Request

    store, worker, rounds, prompts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

    class TaggedModel(FakeModel):  # every sample traceable to its worker (texts are unique)
        def sample_text(self, prompt, k):
            return f"w{worker}|{super().sample_text(prompt, k)}"

    async def main():
        model = TaggedModel(seed=worker, latency=0.005)
        got = {}
        false_flags = 0
        async with OnlineAPI(model=model, cache=store, batch_size=64, timeout=0.01, run_id="bench-run") as pipe:
            await pipe.store.length("warm-up")
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            for r in range(rounds):
                jobs = [(ns, i) for ns in "ABC" for i in range(prompts)]
                out = await asyncio.gather(*(
                    pipe.request(Request(prompt=f"p{i}", n=2, request_id=f"w{worker}-{r}-{ns}-{i}", namespace=ns))
                    for ns, i in jobs))
                for (ns, i), resp in zip(jobs, out):
                    got.setdefault(f"{ns}|{i}", []).extend(resp.data)
                    false_flags += sum(not c for c in resp.cached)
        print(json.dumps({"generated": model.samples_generated, "false_flags": false_flags, "got": got}), flush=True)

    asyncio.run(main())
""")


def run(store: str, workers: int, rounds: int, prompts: int, pythonpath: str) -> dict:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, store, str(w), str(rounds), str(prompts)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for w in range(workers)]
    for proc in procs:
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"worker failed to start: {proc.stderr.read()[-2000:]}")
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"worker failed: {err[-2000:]}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    merged: dict[str, list[str]] = {}
    for report in reports:
        for slot, samples in report["got"].items():
            merged.setdefault(slot, []).extend(samples)
    for slot, samples in merged.items():
        if len(samples) != len(set(samples)):
            raise SystemExit(f"G1 broken in {store} with {pythonpath}: a sample was handed out twice in {slot}")
    generated = sum(r["generated"] for r in reports)
    billed = sum(r["false_flags"] for r in reports)
    return {"generated": generated, "billed": billed}


async def _clear(url: str) -> None:
    from cachesaver.stores.redis import RedisStore

    store = RedisStore(url)
    await store.clear()
    await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--against", help="another source tree to run too (before/after)")
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = [("this tree", here)] + ([("--against", os.path.abspath(args.against))] if args.against else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for label, tree in (trees if repeat % 2 == 0 else trees[::-1]):
                path = os.pathsep.join([tree, os.path.join(tree, "core")])
                for kind in ("disk", "redis"):
                    store = (os.path.join(tmp, f"{kind}-{uuid.uuid4().hex}") if kind == "disk"
                             else f"{args.redis}?prefix=bench-billing-{uuid.uuid4().hex[:12]}")
                    got = run(store, args.workers, args.rounds, args.prompts, path)
                    if kind == "redis":
                        asyncio.run(_clear(store))
                    rows.append((label, kind, repeat, got["generated"], got["billed"]))
    print(f"\n{args.workers} workers, one shared run, {args.rounds} rounds x 3 namespaces x {args.prompts} prompts, n=2\n")
    print("| tree | store | repeat | generated | flagged cached=False | billed nowhere |")
    print("|---|---|---|---:|---:|---:|")
    for label, kind, repeat, generated, billed in sorted(rows):
        print(f"| {label} | {kind} | {repeat} | {generated} | {billed} | {generated - billed} |")


if __name__ == "__main__":
    main()
