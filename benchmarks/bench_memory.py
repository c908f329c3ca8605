"""Memory held per sample and per key by the in-process store, measured with tracemalloc.

    python benchmarks/bench_memory.py                  # 5,000 keys x 4 samples
    python benchmarks/bench_memory.py --keys 20000 --samples 2
    python benchmarks/bench_memory.py --against DIR    # also the engine in DIR (before/after)

A pipeline on a ``MemoryStore`` answers N distinct prompts with n=k through ``FakeModel`` (its
samples are ~100-byte strings, like short answers), so the store holds N keys x k samples. The
store's retained memory is what tracemalloc counts freed when the store itself is dropped, once
the pipeline is closed and everything else is collected; it asserts that the store
holds exactly N x k samples (what is measured is what it claims). Prints bytes per sample and per
key, and the same for a raw ``orjson`` record of the same sample for scale.
"""
from __future__ import annotations

import argparse

from _trees import run_child, trees

CHILD = r"""
import asyncio, gc, json, sys, tracemalloc
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import MemoryStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

keys, k = int(sys.argv[1]), int(sys.argv[2])

async def main():
    store = MemoryStore()
    model = FakeModel(seed=1)
    async with OnlineAPI(model=model, cache=store, batch_size=256, timeout=0.001) as pipe:
        for start in range(0, keys, 1000):
            await asyncio.gather(*(pipe.request(Request(prompt=f"question {i}", n=k))
                                   for i in range(start, min(keys, start + 1000))))
    return store, model

tracemalloc.start()
store, model = asyncio.run(main())
samples = sum(len(v) for v in store._samples.values())
assert samples == keys * k == model.samples_generated, (samples, keys * k)
sample_bytes = sum(len(raw) for v in store._samples.values() for raw in v) / samples
del model
gc.collect()
with_store = tracemalloc.get_traced_memory()[0]
del store
gc.collect()
held = with_store - tracemalloc.get_traced_memory()[0]  # what the store alone keeps
print(json.dumps({"held": held, "samples": samples, "keys": keys, "record_bytes": sample_bytes}))
"""


def measure(tree: str, keys: int, samples: int) -> dict:
    return run_child(tree, CHILD, keys, samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--against", help="another source tree to measure too")
    args = parser.parse_args()
    measured = trees(args.against)
    print(f"\nMemoryStore, {args.keys:,} keys x {args.samples} samples (tracemalloc, retained after the run)\n")
    print("| tree | retained bytes | per sample | per key | record size |")
    print("|---|---:|---:|---:|---:|")
    for label, tree in measured:
        got = measure(tree, args.keys, args.samples)
        per_sample = got["held"] / got["samples"]
        per_key = got["held"] / got["keys"]
        print(f"| {label} | {got['held']:,} | {per_sample:,.0f} | {per_key:,.0f} | {got['record_bytes']:.0f} |")


if __name__ == "__main__":
    main()
