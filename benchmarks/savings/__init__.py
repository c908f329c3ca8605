"""Savings benchmark: what CacheSaver saves on reasoning workloads, and that it stays correct.

A stochastic Game-of-24 "LLM" (:mod:`.model`) answers from a small, prompt-dependent space, so
states and prompts recur within and across methods as they do with real models. Four methods
(:mod:`.methods`: ToT, SC, FoA-like, GoT-like) run the scenarios of the published results
(:mod:`.scenarios`) three ways (:mod:`.backends`: no cache, a plain key-value cache, CacheSaver),
and the minimum any correct cache must generate is computed from the request trace. ::

    python -m benchmarks.savings [--puzzles N] [--quick] [--through-litellm]

    results = asyncio.run(run_all(puzzles=10))
    assert all(r.exact for r in results)   # CacheSaver generated exactly the minimum, no repeats
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from cachesaver_demo import game24
from .backends import CacheSaverBackend, NoCache, PlainCache, Tally, Trace
from .methods import FoA, GoT, SC, ToT
from .model import SimModel
from .scenarios import Scenario, ScenarioResult, default_scenarios, measure, run_workload

__all__ = [
    "run_all", "measure", "run_workload", "default_scenarios", "Scenario", "ScenarioResult",
    "Tally", "Trace", "NoCache", "PlainCache", "CacheSaverBackend", "SimModel",
    "ToT", "SC", "FoA", "GoT", "game24",
]


async def run_all(puzzles: int = 100, seed: int = 0, scenarios: Optional[Sequence[Scenario]] = None,
                  store_dir: Optional[str] = None, **options: Any) -> list[ScenarioResult]:
    """Measure every scenario on ``puzzles`` Game-of-24 puzzles.

    ``store_dir``: a directory for CacheSaver's disk stores (one sub-directory per scenario);
    by default each scenario uses a temporary directory. ``options`` go to :func:`measure`
    (``batch_size``, ``timeout``).
    """
    import os

    chosen = list(scenarios) if scenarios is not None else default_scenarios()
    problems = game24.puzzles(puzzles, seed)
    results = []
    for scenario in chosen:
        store = os.path.join(store_dir, scenario.key) if store_dir else None
        results.append(await measure(scenario, problems, seed, store=store, **options))
    return results
