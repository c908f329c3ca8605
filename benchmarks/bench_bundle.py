"""Bundle benchmark: size and build time of a bundle, and replay from it vs from the disk store.

    python benchmarks/bench_bundle.py            # the savings benchmark's largest scenario, 100 puzzles
    python benchmarks/bench_bundle.py --quick    # 20 puzzles

The workload is the savings benchmark's largest scenario ("benchmarking: ToT, GoT, FoA", the
most samples), recorded once on a disk store. Then:

- build: ``write_bundle`` of what the run consumed (median of several builds; every build
  must give the same bytes), the bundle's size beside the store directory's and a JSONL.gz export;
- replay: the whole workload again with ``offline=True``, from the disk store and from the bundle
  (opening it, which verifies every digest, is timed separately), interleaved, after a warm-up,
  medians. Every replay is asserted to make zero model calls and to hand out exactly the
  samples the recording handed out.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.savings import default_scenarios, game24, run_workload  # noqa: E402
from benchmarks.savings.backends import CacheSaverBackend  # noqa: E402
from cachesaver.bundle import BundleStore, write_bundle  # noqa: E402
from cachesaver.pipelines import OnlineAPI  # noqa: E402
from cachesaver.stores import DiskStore  # noqa: E402
from cachesaver.transfer import export_jsonl  # noqa: E402


class Recording(CacheSaverBackend):
    """CacheSaver on a store, noting a digest of every (namespace, prompt, samples) handed out."""

    def __init__(self, seed, store, offline=False):
        self._offline = offline
        super().__init__(seed, store)
        self.handed: list[bytes] = []

    def _pipeline(self) -> OnlineAPI:
        return OnlineAPI(model=self.model, cache=self.store, offline=self._offline, **self._options)

    async def _samples(self, prompt, n, namespace, request_id):
        data = await super()._samples(prompt, n, namespace, request_id)
        self.handed.append(hashlib.sha256(repr((namespace, prompt, [s["sid"] for s in data])).encode()).digest())
        return data

    def fingerprint(self) -> str:
        return hashlib.sha256(b"".join(sorted(self.handed))).hexdigest()


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


async def record(scenario, puzzles, seed, store_dir):
    backend = Recording(seed, store_dir)
    await run_workload(scenario, backend, puzzles, seed)
    consumption = await backend.pipelines[-1].consumption()
    await backend.aclose()
    return consumption, backend.fingerprint(), backend.model.calls


async def replay(scenario, puzzles, seed, store):
    backend = Recording(seed, store, offline=True)
    t0 = time.perf_counter()
    await run_workload(scenario, backend, puzzles, seed)
    elapsed = time.perf_counter() - t0
    await backend.pipelines[-1].aclose()
    assert backend.model.calls == 0, f"a replay made {backend.model.calls} model calls"
    assert backend.pipelines[-1].stats.model_calls == 0
    return elapsed, backend.fingerprint()


async def main_async(puzzle_count: int, rounds: int, seed: int) -> None:
    scenario = next(s for s in default_scenarios() if s.key == "benchmark")
    puzzles = game24.puzzles(puzzle_count, seed)
    with tempfile.TemporaryDirectory(prefix="cachesaver-bench-bundle-") as tmp:
        store_dir = os.path.join(tmp, "store")
        t0 = time.perf_counter()
        consumption, recorded, calls = await record(scenario, puzzles, seed, store_dir)
        record_s = time.perf_counter() - t0

        builds, digests = [], set()
        store = DiskStore(store_dir)
        for i in range(rounds):
            path = os.path.join(tmp, f"b{i}.csbundle")
            t0 = time.perf_counter()
            contents = await write_bundle(store, consumption, path)
            builds.append(time.perf_counter() - t0)
            digests.add(contents.sha256)
        assert len(digests) == 1, "the same consumption gave different bundles"
        await export_jsonl(store, os.path.join(tmp, "export.jsonl.gz"))
        export_bytes = os.path.getsize(os.path.join(tmp, "export.jsonl.gz"))
        store_bytes = dir_size(store_dir)
        store.close()
        bundle = os.path.join(tmp, "b0.csbundle")
        bundle_bytes = os.path.getsize(bundle)

        opens, from_disk, from_bundle = [], [], []
        for i in range(rounds + 1):  # round 0 is the warm-up
            t0 = time.perf_counter()
            bstore = BundleStore(bundle)
            open_s = time.perf_counter() - t0
            dstore = DiskStore(store_dir)
            order = [("disk", dstore), ("bundle", bstore)] if i % 2 else [("bundle", bstore), ("disk", dstore)]
            for name, s in order:
                elapsed, fingerprint = await replay(scenario, puzzles, seed, s)
                assert fingerprint == recorded, f"the {name} replay handed out other samples"
                if i:
                    (from_disk if name == "disk" else from_bundle).append(elapsed)
            dstore.close()
            if i:
                opens.append(open_s)

    med = statistics.median
    summary = contents.summary
    print(f"## Bundle of the savings benchmark's largest scenario ({scenario.title}, {puzzle_count} puzzles)\n")
    print(f"Recorded in {record_s:.1f} s with {calls:,} model calls; medians of {rounds} rounds.\n")
    print("| what | value |")
    print("|---|---|")
    print(f"| keys / samples in the bundle | {summary['keys']:,} / {summary['samples']:,} |")
    print(f"| samples the run consumed (namespaces) | {summary['consumed_samples']:,} ({len(summary['namespaces']):,}) |")
    print(f"| bundle size | {bundle_bytes / 1024:,.0f} kB ({bundle_bytes / summary['samples']:.0f} B/sample) |")
    print(f"| store directory (diskcache) | {store_bytes / 1024:,.0f} kB |")
    print(f"| JSONL.gz export of the store | {export_bytes / 1024:,.0f} kB |")
    print(f"| build time (`write_bundle`) | {med(builds) * 1e3:,.0f} ms |")
    print(f"| open + verify the bundle (`BundleStore`) | {med(opens) * 1e3:,.0f} ms |")
    print(f"| replay from the disk store (offline) | {med(from_disk) * 1e3:,.0f} ms |")
    print(f"| replay from the bundle (offline) | {med(from_bundle) * 1e3:,.0f} ms |")
    print("\nEvery replay: 0 model calls, exactly the recorded samples.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 puzzles, 3 rounds")
    parser.add_argument("--puzzles", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    puzzles = args.puzzles or (20 if args.quick else 100)
    rounds = args.rounds or (3 if args.quick else 5)
    asyncio.run(main_async(puzzles, rounds, args.seed))


if __name__ == "__main__":
    main()
