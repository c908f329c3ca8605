"""Does a cache change what the experiment reports? Solve rates over many seeds.

One seed's solve counts differ between no cache and CacheSaver by sampling noise alone (CacheSaver
gives different namespaces the same samples, so their outcomes are correlated, not biased). Summed
over seeds the two agree; a plain cache, which repeats "fresh" samples, shifts them systematically.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Sequence

from cachesaver_demo import game24 as g
from .backends import CacheSaverBackend, NoCache, PlainCache
from .scenarios import default_scenarios, run_workload

__all__ = ["SolveRates", "solve_rates", "accuracy_table", "run", "ACCURACY_SCENARIOS", "ACCURACY_PUZZLES"]

ACCURACY_SCENARIOS = ("single-foa", "repeated", "ablation", "benchmark")
ACCURACY_PUZZLES = 20


@dataclass
class SolveRates:
    scenario: str
    seeds: int
    attempts: int                  # per strategy, over all seeds
    solved: dict[str, int]         # strategy -> puzzles solved over all seeds


async def solve_rates(seeds: int, puzzles: int, keys: Sequence[str] = ACCURACY_SCENARIOS,
                      first_seed: int = 1) -> list[SolveRates]:
    """Run each scenario under every strategy for ``seeds`` seeds (memory stores)."""
    by_key = {s.key: s for s in default_scenarios()}
    out = []
    for key in keys:
        rates = SolveRates(key, seeds, 0, {"no cache": 0, "plain cache": 0, "CacheSaver": 0})
        for seed in range(first_seed, first_seed + seeds):
            problems = g.puzzles(puzzles, seed)
            for backend in (NoCache(seed), PlainCache(seed), CacheSaverBackend(seed, "memory")):
                solved, attempts = await run_workload(by_key[key], backend, problems, seed)
                await backend.aclose()
                rates.solved[backend.name] += solved
            rates.attempts += attempts
        out.append(rates)
    return out


def accuracy_table(rates: Sequence[SolveRates], puzzles: int) -> str:
    titles = {s.key: s.title for s in default_scenarios()}
    lines = ["| scenario | seeds x puzzles | no cache solved | plain cache solved | CacheSaver solved |",
             "|---|---|---|---|---|"]
    for r in rates:
        cells = " | ".join(f"{r.solved[n]:,} / {r.attempts:,} ({r.solved[n] / r.attempts:.1%})"
                           for n in ("no cache", "plain cache", "CacheSaver"))
        lines.append(f"| {titles[r.scenario]} | {r.seeds} x {puzzles} | {cells} |")
    return "\n".join(lines)


def run(seeds: int, puzzles: int) -> list[SolveRates]:
    return asyncio.run(solve_rates(seeds, puzzles))
