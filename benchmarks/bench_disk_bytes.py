"""Disk bytes per sample of the disk store, per table, measured with SQLite's ``dbstat``.

    python benchmarks/bench_disk_bytes.py                  # n=1 and n=4, 4,000 samples each
    python benchmarks/bench_disk_bytes.py --samples 20000
    python benchmarks/bench_disk_bytes.py --against DIR    # also the engine in DIR (before/after)

A pipeline on a fresh directory answers distinct prompts (each with a request id, as the
adapters send) through ``FakeModel`` (samples of ~65 bytes encoded, like short answers), so the
store holds exactly ``--samples`` samples, which the child asserts. Bytes are deterministic for a
given SQLite version: the file is measured as written (what a user's disk holds) and, after
``VACUUM``, per table and index (what each byte is for).
"""
from __future__ import annotations

import argparse

from _trees import run_child, trees

CHILD = r"""
import asyncio, json, os, sqlite3, sys, tempfile
from cachesaver.pipelines import OnlineAPI
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

total, k = int(sys.argv[1]), int(sys.argv[2])
keys = total // k

async def main(directory):
    model = FakeModel(seed=1)
    async with OnlineAPI(model=model, cache=directory, batch_size=256, timeout=0.001,
                         model_id="fake") as pipe:
        for start in range(0, keys, 1000):
            await asyncio.gather(*(pipe.request(Request(prompt=f"Question number {i}: what is {i}*{i}?", n=k,
                                                        request_id=f"r{i}", namespace="ns"))
                                   for i in range(start, min(keys, start + 1000))))
    return model

with tempfile.TemporaryDirectory() as directory:
    model = asyncio.run(main(directory))
    path = os.path.join(directory, "cache.db")
    written = os.path.getsize(path)
    con = sqlite3.connect(path)
    (samples, value_bytes) = con.execute("SELECT COUNT(*), SUM(length(value)) FROM cachesaver_samples").fetchone()
    assert samples == keys * k == model.samples_generated, (samples, keys * k)
    con.execute("VACUUM")
    tables = dict(con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    con.close()
print(json.dumps({"samples": samples, "written": written, "values": value_bytes, "tables": tables}))
"""


def measure(tree: str, samples: int, k: int) -> dict:
    return run_child(tree, CHILD, samples, k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4000, help="samples written per case (default 4000)")
    parser.add_argument("--against", help="another source tree to measure too")
    args = parser.parse_args()
    measured = trees(args.against)
    for k in (1, 4):
        results = [(label, measure(tree, args.samples, k)) for label, tree in measured]
        names = sorted({name for _, got in results for name in got["tables"]},
                       key=lambda name: -results[0][1]["tables"].get(name, 0))
        print(f"\nDisk store, {args.samples:,} samples as n={k} requests with request ids: bytes per sample\n")
        print("| table or index | " + " | ".join(label for label, _ in results) + " |")
        print("|---|" + "---:|" * len(results))
        for name in names:
            cells = [got["tables"].get(name, 0) / got["samples"] for _, got in results]
            if max(cells) >= 1:
                print(f"| {name} | " + " | ".join(f"{c:,.1f}" for c in cells) + " |")
        print("| **file after VACUUM** | " + " | ".join(
            f"**{sum(got['tables'].values()) / got['samples']:,.1f}**" for _, got in results) + " |")
        print("| file as written | " + " | ".join(
            f"{got['written'] / got['samples']:,.1f}" for _, got in results) + " |")
        print("| encoded sample (the value itself) | " + " | ".join(
            f"{got['values'] / got['samples']:,.1f}" for _, got in results) + " |")


if __name__ == "__main__":
    main()
