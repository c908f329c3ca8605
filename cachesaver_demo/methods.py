"""Two reasoning methods on Game of 24, written against a plain ``llm(prompt, n, namespace)``.

- :func:`tot_bfs`: Tree-of-Thoughts breadth-first search. Each state proposes ``proposals`` next
  steps; the best ``breadth`` new states (an exact solvability check stands in for the value
  prompt) go on to the next depth. Prompts show only the numbers left, so states recur across
  branches, puzzles and breadth settings.
- :func:`self_consistency`: ``k`` chain-of-thought samples, majority vote over the final values.

(The savings benchmark has fuller versions, with value prompts, FoA and GoT.)
"""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Awaitable, Callable

from . import game24 as g

__all__ = ["LLM", "tot_bfs", "self_consistency"]

LLM = Callable[[str, int, str], Awaitable[list[str]]]


async def tot_bfs(llm: LLM, puzzle: str, namespace: str, *, breadth: int = 3, proposals: int = 3) -> dict:
    frontier = [g.make_state(puzzle.split())]
    for _depth in range(3):
        answers = await asyncio.gather(*(llm(g.step_prompt(state), proposals, namespace) for state in frontier))
        candidates: list[g.State] = []
        for state, texts in zip(frontier, answers):
            for text in texts:
                move = g.parse_step(text, state)
                if move is not None and move.left not in candidates:
                    candidates.append(move.left)
        ranked = sorted(candidates, key=lambda s: not g.solvable(s))  # stable: keeps the model's order
        frontier = ranked[:breadth] or frontier
    final = [g.state_text(s) for s in frontier]
    return {"method": "tot", "puzzle": puzzle, "solved": "24" in final, "final": final}


async def self_consistency(llm: LLM, puzzle: str, namespace: str, *, k: int = 10) -> dict:
    state = g.make_state(puzzle.split())
    texts = await llm(g.cot_prompt(state), k, namespace)
    votes = Counter(g.fmt(parsed[1]) for parsed in (g.parse_cot(t, state) for t in texts) if parsed)
    answer = votes.most_common(1)[0][0] if votes else None
    return {"method": "sc", "puzzle": puzzle, "solved": answer == "24", "final": answer, "votes": dict(votes)}
