"""Inspect AI benchmark (issue 23): an eval of 50 samples x 4 epochs at temperature 0.7 against
the local fake server (``latency`` seconds per request), three ways:

- CacheSaver, first run: ``cachesaver/openai/gpt-4o-mini`` on a fresh disk store;
- CacheSaver, rerun: the same eval again (a new eval, the same store);
- Inspect's own cache: ``openai/gpt-4o-mini`` with ``generate(cache=True)``, first run and rerun
  (Inspect's cache directory pointed at a temporary folder).

Per row: wall time (median and range over ``--rounds`` rounds, each round the four evals in turn
on a fresh store and a fresh Inspect cache, after one warm-up eval), HTTP requests and samples
the server generated, and how many distinct outputs each sample got over its 4 epochs (4 = every
epoch a fresh sample); the counts are the same in every round (checked). The load average is
printed before and after: compare figures taken at similar loads only.

Then, counted (not timed): a solver making 3 ``generate`` calls on one input in each sample
(pass@k inside one sample and epoch), CacheSaver vs Inspect's cache: requests and distinct
outputs per sample.

    python benchmarks/bench_inspect.py                 # 50 samples, 4 epochs, 0.05 s per request, 3 rounds
    python benchmarks/bench_inspect.py --samples 10 --rounds 1    # quicker
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-inspect-")
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-secret")

    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.scorer import includes
    from inspect_ai.model import get_model
    from inspect_ai.solver import generate, solver

    import cachesaver_inspect  # noqa: F401
    from cachesaver.testing.server import FakeOpenAIServer

    def task(cache: bool) -> Task:
        samples = [Sample(input=f"Question {i}?", target="sample 1", id=i) for i in range(args.samples)]
        return Task(dataset=MemoryDataset(samples), solver=[generate(cache=cache)], scorer=includes(), name="bench")

    labels = ["CacheSaver, first run", "CacheSaver, rerun", "Inspect cache, first run", "Inspect cache, rerun"]
    walls: dict[str, list[float]] = {label: [] for label in labels}
    counts: dict[str, set] = {label: set() for label in labels}
    load_before = os.getloadavg()
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
            if label in walls:
                walls[label].append(wall)
                counts[label].add((server.request_count, server.samples_generated,
                                   tuple(sorted({len(v) for v in per_sample.values()}))))

        # A warm-up eval (Inspect's first eval in a process pays its own start-up).
        measure("warm-up", "cachesaver/openai/gpt-4o-mini", {"store": os.path.join(tmp, "warm")}, False)
        for r in range(args.rounds):
            store = {"store": os.path.join(tmp, f"store-{r}")}
            os.environ["INSPECT_CACHE_DIR"] = os.path.join(tmp, f"inspect-cache-{r}")
            measure(labels[0], "cachesaver/openai/gpt-4o-mini", store, False)
            measure(labels[1], "cachesaver/openai/gpt-4o-mini", store, False)
            measure(labels[2], "openai/gpt-4o-mini", {}, True)
            measure(labels[3], "openai/gpt-4o-mini", {}, True)

        # Repeated generate calls on one input inside one sample and epoch (pass@k in a solver):
        # not timed, counted. Inspect's cache keys on the epoch, not on the call.
        repeated: list[tuple[str, int, list[int]]] = []
        os.environ["INSPECT_CACHE_DIR"] = os.path.join(tmp, "inspect-cache-repeated")

        @solver
        def three_calls(cache: bool):
            async def solve(state, generate_fn):
                model = get_model()
                outs = [await model.generate(state.input, cache=cache) for _ in range(3)]
                state.metadata["outs"] = [o.completion for o in outs]
                state.output = outs[0]
                return state
            return solve

        for label, model, model_args, cache in [
                ("CacheSaver", "cachesaver/openai/gpt-4o-mini", {"store": os.path.join(tmp, "store-repeated")}, False),
                ("Inspect cache", "openai/gpt-4o-mini", {}, True)]:
            server.reset_counters()
            samples = [Sample(input=f"Question {i}?", target="sample 1", id=i) for i in range(10)]
            [log] = inspect_eval(Task(dataset=MemoryDataset(samples), solver=[three_calls(cache)], scorer=includes(),
                                      name="bench-repeated"), model=model, model_base_url=server.base_url,
                                 model_args=model_args, temperature=0.7, display="none",
                                 log_dir=os.path.join(tmp, "logs"))
            assert log.status == "success", log.error
            repeated.append((label, server.request_count, sorted({len(set(s.metadata["outs"])) for s in log.samples})))
    load_after = os.getloadavg()
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"{args.samples} samples x {args.epochs} epochs, temperature 0.7, {args.latency:.3f} s per request, "
          f"{args.rounds} rounds; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'run':26} {'wall s (median, range)':>24} {'requests':>9} {'samples':>8}  distinct outputs per sample")
    for label in labels:
        assert len(counts[label]) == 1, (label, counts[label])  # every round the same counts
        [(requests, generated, distinct)] = counts[label]
        w = sorted(walls[label])
        spread = f"{statistics.median(w):.2f} ({w[0]:.2f}-{w[-1]:.2f})"
        print(f"{label:26} {spread:>24} {requests:9d} {generated:8d}  {list(distinct)}")
    print("\n3 generate calls on one input in each sample (10 samples, 1 epoch): requests, distinct outputs per sample")
    for label, requests, distinct_calls in repeated:
        print(f"{label:26} {requests:9d}  {distinct_calls}")


if __name__ == "__main__":
    main()
