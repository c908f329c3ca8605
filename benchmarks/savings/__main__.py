"""``python -m benchmarks.savings [--puzzles N] [--quick] [--seed S] [--out DIR] [--through-litellm]``

Prints the Markdown summary and detail tables. A full run (no ``--quick``) also writes
``results/savings.md`` and the PNG charts beside this file; ``--out DIR`` writes them elsewhere
(also for ``--quick``). ``--through-litellm`` runs the smaller litellm workload against the local
OpenAI-compatible server instead and writes ``savings_litellm.md``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from . import run_all
from .report import detail_table, markdown, summary_table, write_charts

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.savings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puzzles", type=int, default=None,
                        help="Game-of-24 puzzles per scenario (default 100; 20 with --quick; "
                             "4 with --through-litellm)")
    parser.add_argument("--quick", action="store_true", help="a small run that writes no files")
    parser.add_argument("--seed", type=int, default=0, help="model and puzzle seed (default 0)")
    parser.add_argument("--out", default=None, help=f"where to write results (default {RESULTS})")
    parser.add_argument("--accuracy-seeds", type=int, default=0, metavar="N",
                        help="also sum solve rates over N seeds (20 puzzles each) for the "
                             "scenarios where caching could bias them")
    parser.add_argument("--through-litellm", action="store_true",
                        help="run the workload through litellm.acompletion against the local server")
    args = parser.parse_args(argv)
    if args.puzzles is not None and args.puzzles < 1:
        parser.error(f"--puzzles must be >= 1, got {args.puzzles}")
    if args.accuracy_seeds < 0:
        parser.error(f"--accuracy-seeds must be >= 0, got {args.accuracy_seeds}")
    out = args.out or (None if args.quick else RESULTS)

    if args.through_litellm:
        from .through_litellm import litellm_markdown, run_through_litellm

        puzzles = args.puzzles or (2 if args.quick else 4)
        started = time.perf_counter()
        results = run_through_litellm(puzzles=puzzles, seed=args.seed)
        text = litellm_markdown(results, puzzles, args.seed, _command(sys.argv))
        print(text)
        print(f"\n({time.perf_counter() - started:.1f} s)")
        if out:
            _write(os.path.join(out, "savings_litellm.md"), text)
        return 0 if all(r.exact for r in results) else 1

    puzzles = args.puzzles or (20 if args.quick else 100)
    started = time.perf_counter()
    results = asyncio.run(run_all(puzzles=puzzles, seed=args.seed))
    print(summary_table(results))
    print()
    print(detail_table(results))
    accuracy, rates = "", None
    if args.accuracy_seeds:
        from .accuracy import ACCURACY_PUZZLES, accuracy_table, run

        rates = run(args.accuracy_seeds, ACCURACY_PUZZLES)
        accuracy = accuracy_table(rates, ACCURACY_PUZZLES)
        print()
        print(accuracy)
    print(f"\n({time.perf_counter() - started:.1f} s)")
    if out:
        page = markdown(results, puzzles, args.seed, _command(sys.argv), accuracy)
        _write(os.path.join(out, "savings.md"), page)
        for path in write_charts(results, out, rates):
            print(f"wrote {path}")
    return 0 if all(r.exact for r in results) else 1


def _command(argv: list[str]) -> str:
    return " ".join(["python -m benchmarks.savings", *argv[1:]])


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
