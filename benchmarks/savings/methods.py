"""Reasoning methods on Game of 24, written against one async ``llm`` function.

``llm(prompt, n, namespace, request_id) -> list[str]`` is all a method sees, so the same method
code runs with no cache, a plain key-value cache, CacheSaver, or litellm in front of a server.
Each method works on one puzzle in one namespace; :class:`Ask` numbers its requests so request
ids are unique and ordered (the engine hands out samples inside a batch in request-id order).

The methods issue their independent requests concurrently (``asyncio.gather``), as the original
implementations do, which is what lets identical requests meet in one batch:

- ``ToT``: Tree-of-Thoughts BFS (propose ``n_generate`` steps per frontier state, evaluate each new
  state with ``n_evaluate`` samples, keep the best ``n_select``; duplicates evaluated once).
- ``SC``: self-consistency; ``k`` chains asked as ``k`` separate ``n=1`` calls (what frameworks do,
  and what providers without ``n`` force), majority vote over the chains' final values.
- ``FoA``: a Fleet-of-Agents-like search; agents step with ``n=1`` each, are evaluated and
  resampled in proportion to their value, optionally backtracking to earlier states.
- ``GoT``: a Graph-of-Thoughts-like search; generate, score, keep, then a merge step asks the model
  to combine the kept thoughts into the one to continue from.
"""
from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from cachesaver_demo import game24 as g

__all__ = ["LLM", "Ask", "Method", "ToT", "SC", "FoA", "GoT"]

LLM = Callable[[str, int, str, str], Awaitable[list[str]]]


class Ask:
    """``await ask(prompt, n)`` for one namespace, with unique, ordered request ids."""

    def __init__(self, llm: LLM, namespace: str) -> None:
        self.llm = llm
        self.namespace = namespace
        self._count = 0

    async def __call__(self, prompt: str, n: int) -> list[str]:
        self._count += 1
        return await self.llm(prompt, n, self.namespace, f"{self.namespace}#{self._count:06d}")


class Method(Protocol):
    label: str

    async def solve(self, ask: Ask, puzzle: g.State, rng: random.Random) -> bool: ...


def _score(texts: list[str]) -> float:
    return sum(g.LABEL_VALUE[g.parse_value(t)] for t in texts)


async def _evaluate(ask: Ask, states: list[g.State], n: int) -> dict[g.State, float]:
    unique = list(dict.fromkeys(states))
    outs = await asyncio.gather(*(ask(g.value_prompt(s), n) for s in unique))
    return {s: _score(texts) for s, texts in zip(unique, outs)}


async def _expand(ask: Ask, frontier: list[g.State], n: int) -> list[g.State]:
    """Ask for ``n`` next steps from every frontier state; the distinct states they lead to."""
    outs = await asyncio.gather(*(ask(g.step_prompt(s), n) for s in frontier))
    found: list[g.State] = []
    for state, texts in zip(frontier, outs):
        for text in texts:
            move = g.parse_step(text, state)
            if move is not None:
                found.append(move.left)
    return list(dict.fromkeys(found))


def _best(values: dict[g.State, float], k: int) -> list[g.State]:
    return sorted(values, key=lambda s: -values[s])[:k]  # stable: ties keep proposal order

async def _breadth_first(ask: Ask, puzzle: g.State, n_generate: int, n_evaluate: int, keep: int,
                         *, merge: bool = False) -> bool:
    """Expand, evaluate, keep the best: ToT's search, and GoT's with its merge (aggregation) step."""
    frontier = [puzzle]
    for _ in range(len(puzzle) - 1):
        candidates = await _expand(ask, frontier, n_generate)
        if not candidates:
            return False
        kept = _best(await _evaluate(ask, candidates, n_evaluate), keep)
        if merge and len(kept) >= 2:
            (text,) = await ask(g.merge_prompt(kept), 1)
            best = g.parse_merge(text, kept)
            kept = [best] + [s for s in kept if s != best]
        frontier = kept
    return frontier[0] == (g.TARGET,)


@dataclass(frozen=True)
class ToT:
    n_generate: int = 3
    n_evaluate: int = 3
    n_select: int = 3

    @property
    def label(self) -> str:
        return f"tot-g{self.n_generate}-e{self.n_evaluate}-b{self.n_select}"

    async def solve(self, ask: Ask, puzzle: g.State, rng: random.Random) -> bool:
        return await _breadth_first(ask, puzzle, self.n_generate, self.n_evaluate, self.n_select)


@dataclass(frozen=True)
class SC:
    k: int = 5

    @property
    def label(self) -> str:
        return f"sc-k{self.k}"

    async def solve(self, ask: Ask, puzzle: g.State, rng: random.Random) -> bool:
        texts = await asyncio.gather(*(ask(g.cot_prompt(puzzle), 1) for _ in range(self.k)))
        answers = [g.parse_cot(t[0], puzzle) for t in texts]
        votes = Counter(value for a in answers if a is not None for _, value in [a])
        if not votes:
            return False
        (winner, _), = votes.most_common(1)  # ties: the answer seen first
        return winner == g.TARGET


@dataclass(frozen=True)
class FoA:
    n_agents: int = 5
    n_steps: int = 4
    n_evaluate: int = 2
    resample: bool = True
    backtrack: bool = True
    discount: float = 0.5

    @property
    def label(self) -> str:
        parts = [f"foa-a{self.n_agents}-e{self.n_evaluate}"]
        if not self.resample:
            parts.append("noresample")
        elif not self.backtrack:
            parts.append("nobacktrack")
        return "-".join(parts)

    async def solve(self, ask: Ask, puzzle: g.State, rng: random.Random) -> bool:
        agents = [puzzle] * self.n_agents
        archive: dict[g.State, float] = {}
        for _ in range(self.n_steps):
            live = [i for i, a in enumerate(agents) if len(a) > 1]
            outs = await asyncio.gather(*(ask(g.step_prompt(agents[i]), 1) for i in live))
            for i, texts in zip(live, outs):
                move = g.parse_step(texts[0], agents[i])
                if move is not None:
                    agents[i] = move.left
            if any(a == (g.TARGET,) for a in agents):
                return True
            if not self.resample:  # independent agents; a dead end starts over
                agents = [puzzle if len(a) == 1 else a for a in agents]
                continue
            values = await _evaluate(ask, [a for a in agents if len(a) > 1], self.n_evaluate)
            pool = [(a, values.get(a, 0.0)) for a in agents]
            if self.backtrack:
                pool += [(s, v * self.discount) for s, v in archive.items() if s not in values]
                archive = {s: v * self.discount for s, v in archive.items()}
                archive.update(values)
            weights = [v for _, v in pool]
            if sum(weights) <= 0:
                agents = [puzzle] * self.n_agents
            else:
                agents = rng.choices([s for s, _ in pool], weights=weights, k=self.n_agents)
        return False


@dataclass(frozen=True)
class GoT:
    n_generate: int = 3
    n_evaluate: int = 1
    n_keep: int = 3

    @property
    def label(self) -> str:
        return f"got-g{self.n_generate}-e{self.n_evaluate}-k{self.n_keep}"

    async def solve(self, ask: Ask, puzzle: g.State, rng: random.Random) -> bool:
        return await _breadth_first(ask, puzzle, self.n_generate, self.n_evaluate, self.n_keep, merge=True)
