"""Two reasoning methods on Game of 24, written against a plain ``llm(prompt, n, namespace)``.

- :func:`tot_bfs`: Tree-of-Thoughts breadth-first search. Each state proposes ``proposals`` next
  steps; the best ``breadth`` states (an exact solvability check stands in for the value prompt)
  go on to the next depth. States recur across puzzles' branches and across breadth settings.
- :func:`self_consistency`: ``k`` chain-of-thought samples, majority vote over the final values.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from fractions import Fraction
from typing import Awaitable, Callable

from .game24 import cot_prompt, parse_answer, parse_step, propose_prompt, solvable

__all__ = ["LLM", "tot_bfs", "self_consistency"]

LLM = Callable[[str, int, str], Awaitable[list[str]]]


async def tot_bfs(llm: LLM, puzzle: str, namespace: str, *, breadth: int = 3, proposals: int = 3) -> dict:
    frontier = [puzzle]
    for _depth in range(3):
        answers = await asyncio.gather(*(llm(propose_prompt(state), proposals, namespace) for state in frontier))
        candidates: list[str] = []
        for texts in answers:
            for text in texts:
                state = parse_step(text)
                if state and state not in candidates:
                    candidates.append(state)
        scored = sorted(candidates, key=lambda s: not solvable([Fraction(x) for x in s.split()]))
        frontier = scored[:breadth] or frontier
    solved = any(state == "24" for state in frontier)
    return {"method": "tot", "puzzle": puzzle, "solved": solved, "final": frontier}


async def self_consistency(llm: LLM, puzzle: str, namespace: str, *, k: int = 10) -> dict:
    texts = await llm(cot_prompt(puzzle), k, namespace)
    votes = Counter(a for a in (parse_answer(t) for t in texts) if a is not None)
    answer = votes.most_common(1)[0][0] if votes else None
    return {"method": "sc", "puzzle": puzzle, "solved": answer == "24", "final": answer, "votes": dict(votes)}
