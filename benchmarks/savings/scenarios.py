"""The scenarios of the published results, and running one under every strategy.

Namespaces follow the paper's practice: one namespace per (method configuration, puzzle) inside
a run, so samples stay i.i.d. inside a method's work on a puzzle and are reused across puzzles,
methods, configurations and ablation arms. A repeated run is a new pipeline (a new run) on the
same store. Arms of one scenario run one after another, as separate experiments would; the
puzzles of an arm run concurrently.
"""
from __future__ import annotations

import asyncio
import os
import random
import tempfile
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from cachesaver_demo import game24 as g
from .backends import Backend, CacheSaverBackend, NoCache, PlainCache, Tally
from .methods import FoA, GoT, SC, Ask, Method, ToT

__all__ = ["Scenario", "ScenarioResult", "default_scenarios", "run_workload", "measure",
           "STRATEGIES"]

STRATEGIES = ("no cache", "plain cache", "CacheSaver", "minimum")

TOT = ToT(n_generate=3, n_evaluate=3, n_select=3)
SC_DEFAULT = SC(k=5)
FOA = FoA(n_agents=5, n_steps=4, n_evaluate=2)
GOT = GoT(n_generate=3, n_evaluate=1, n_keep=3)


@dataclass(frozen=True)
class Scenario:
    key: str                       # short id (file names, CLI)
    title: str                     # table row
    runs: tuple[tuple[Method, ...], ...]   # per run, the methods (arms) run one after another
    group: str                     # which published figure it compares with
    note: str = ""


def default_scenarios() -> list[Scenario]:
    grid = tuple(ToT(n_generate=3, n_evaluate=e, n_select=b) for e in (1, 2, 3) for b in (1, 3, 5))
    ablation = (FOA, FoA(n_agents=5, n_steps=4, n_evaluate=2, backtrack=False),
                FoA(n_agents=5, n_steps=4, n_evaluate=2, resample=False),
                FoA(n_agents=5, n_steps=4, n_evaluate=1))
    return [
        Scenario("single-tot", "single run: ToT", ((TOT,),), "single"),
        Scenario("single-sc", "single run: SC (k=5)", ((SC_DEFAULT,),), "single"),
        Scenario("single-foa", "single run: FoA", ((FOA,),), "single"),
        Scenario("single-got", "single run: GoT", ((GOT,),), "single"),
        Scenario("repeated", "repeated run: ToT + SC, twice", ((TOT, SC_DEFAULT), (TOT, SC_DEFAULT)),
                 "repeated", "the same script again: a new pipeline (a new run) on the same store"),
        Scenario("hyper", "hyperparameter search: ToT 3x3", (grid,), "hyper",
                 "n_evaluate in {1,2,3} x n_select in {1,3,5}"),
        Scenario("ablation", "ablation: FoA, 4 arms", (ablation,), "ablation",
                 "full / no backtracking / no resampling / 1 evaluation sample"),
        Scenario("benchmark", "benchmarking: ToT, GoT, FoA", ((TOT, GOT, FOA),), "benchmark"),
    ]


@dataclass
class ScenarioResult:
    scenario: Scenario
    tallies: dict[str, Tally]
    engine: dict[str, Any] = field(default_factory=dict)     # CacheSaver's own stats, calls per run
    billed_flags: int = 0                                     # CacheSaver's cached=False flags

    def saved(self, strategy: str = "CacheSaver") -> float:
        """Fraction of the no-cache dollars this strategy saved."""
        base = self.tallies["no cache"].cost
        return 1.0 - self.tallies[strategy].cost / base if base else 0.0

    @property
    def exact(self) -> bool:
        """CacheSaver generated exactly the minimum and handed no sample out twice."""
        cs, low = self.tallies["CacheSaver"], self.tallies["minimum"]
        return cs.samples == low.samples and cs.duplicates == 0


def namespace(method: Method, puzzle: g.State) -> str:
    return f"{method.label}|{g.state_text(puzzle)}"


async def run_workload(scenario: Scenario, backend: Backend, puzzles: Sequence[g.State],
                       seed: int = 0) -> tuple[int, int]:
    """Run every arm of every run on every puzzle through ``backend``; (solved, attempts)."""
    solved = attempts = 0
    for run_index, methods in enumerate(scenario.runs):
        if run_index:
            await backend.new_run()
        for method in methods:
            jobs = []
            for puzzle in puzzles:
                ns = namespace(method, puzzle)
                # Seeded by namespace only: re-running the script makes the same random choices.
                rng = random.Random(f"{seed}|{ns}")
                jobs.append(method.solve(Ask(backend, ns), puzzle, rng))
            results = await asyncio.gather(*jobs)
            solved += sum(results)
            attempts += len(results)
    return solved, attempts


async def measure(scenario: Scenario, puzzles: Sequence[g.State], seed: int = 0,
                  store: Optional[Any] = None, batch_size: int = 64,
                  timeout: float = 0.01) -> ScenarioResult:
    """Run ``scenario`` with no cache, a plain cache and CacheSaver; compute the minimum.

    ``store``: what CacheSaver stores samples in (a fresh directory per scenario by default).
    """
    tallies: dict[str, Tally] = {}
    for backend in (NoCache(seed), PlainCache(seed)):
        solved, attempts = await run_workload(scenario, backend, puzzles, seed)
        tallies[backend.name] = _finish(backend, solved, attempts)
    tmp = None
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"cachesaver-savings-{scenario.key}-")
        store = os.path.join(tmp.name, "store")
    cs = CacheSaverBackend(seed, store, batch_size=batch_size, timeout=timeout)
    try:
        solved, attempts = await run_workload(scenario, cs, puzzles, seed)
    finally:
        await cs.aclose()
        if tmp is not None:
            tmp.cleanup()
    tallies[cs.name] = _finish(cs, solved, attempts)
    tallies["minimum"] = cs.trace.minimum(cs.model)
    engine = {**cs.engine_totals(), "calls_by_run": cs.calls_by_run()}
    return ScenarioResult(scenario, tallies, engine, cs.billed_flags)


def _finish(backend: Backend, solved: int, attempts: int) -> Tally:
    tally = backend.tally()
    tally.solved, tally.attempts = solved, attempts
    return tally
