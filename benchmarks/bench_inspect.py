"""Inspect AI benchmark (issue 23): an eval of 50 samples x 4 epochs at temperature 0.7 against
the local fake server (``latency`` seconds per request), three ways:

- CacheSaver, first run: ``cachesaver/openai/gpt-4o-mini`` on a fresh disk store;
- CacheSaver, rerun: the same eval again (a new eval, the same store);
- Inspect's own cache: ``openai/gpt-4o-mini`` with ``generate(cache=True)``, first run and rerun
  (Inspect's cache directory pointed at a temporary folder).

Per row: wall time, HTTP requests and samples the server generated, and how many distinct
outputs each sample got over its 4 epochs (4 = every epoch a fresh sample).

    python benchmarks/bench_inspect.py                 # 50 samples, 4 epochs, 0.05 s per request
    python benchmarks/bench_inspect.py --samples 10    # quicker
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "core")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-inspect-")
    os.environ["INSPECT_CACHE_DIR"] = os.path.join(tmp, "inspect-cache")
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-secret")

    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.scorer import includes
    from inspect_ai.solver import generate

    import cachesaver_inspect  # noqa: F401
    from cachesaver.testing.server import FakeOpenAIServer

    def task(cache: bool) -> Task:
        samples = [Sample(input=f"Question {i}?", target="sample 1", id=i) for i in range(args.samples)]
        return Task(dataset=MemoryDataset(samples), solver=[generate(cache=cache)], scorer=includes(), name="bench")

    rows = []
    with FakeOpenAIServer(seed=3, latency=args.latency) as server:
        def measure(label: str, model: str, model_args: dict, cache: bool) -> None:
            server.reset_counters()
            start = time.perf_counter()
            [log] = inspect_eval(task(cache), model=model, model_base_url=server.base_url, model_args=model_args,
                                 epochs=args.epochs, temperature=0.7, display="none",
                                 log_dir=os.path.join(tmp, "logs"))
            wall = time.perf_counter() - start
            assert log.status == "success", log.error
            per_sample: dict = {}
            for s in log.samples:
                per_sample.setdefault(s.id, set()).add(s.output.completion)
            distinct = sorted({len(v) for v in per_sample.values()})
            rows.append((label, wall, server.request_count, server.samples_generated, distinct))

        # A warm-up eval (Inspect's first eval in a process pays its own start-up).
        measure("warm-up (not compared)", "cachesaver/openai/gpt-4o-mini",
                {"store": os.path.join(tmp, "warm")}, False)
        store = {"store": os.path.join(tmp, "store")}
        measure("CacheSaver, first run", "cachesaver/openai/gpt-4o-mini", store, False)
        measure("CacheSaver, rerun", "cachesaver/openai/gpt-4o-mini", store, False)
        measure("Inspect cache, first run", "openai/gpt-4o-mini", {}, True)
        measure("Inspect cache, rerun", "openai/gpt-4o-mini", {}, True)

    print(f"{args.samples} samples x {args.epochs} epochs, temperature 0.7, {args.latency:.3f} s per request")
    print(f"{'run':26} {'wall s':>7} {'requests':>9} {'samples':>8}  distinct outputs per sample")
    for label, wall, requests, generated, distinct in rows:
        print(f"{label:26} {wall:7.2f} {requests:9d} {generated:8d}  {distinct}")


if __name__ == "__main__":
    main()
