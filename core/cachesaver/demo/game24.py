"""Game of 24: puzzles, an exact solver, prompts, and a fake "LLM" that answers them.

The fake answers like a weak reasoning model would: a proposed next step is a valid arithmetic
step, chosen among those that keep the puzzle solvable with probability ``skill`` and at random
otherwise; a chain-of-thought answer is three such steps. Because answers come from the small
space of valid steps, the same states (and so the same prompts) recur within and across methods,
which is exactly where a sample cache saves money.
"""
from __future__ import annotations

import itertools
import random
import re
from fractions import Fraction
from functools import lru_cache
from typing import Optional

__all__ = ["PUZZLES", "propose_prompt", "cot_prompt", "parse_step", "parse_answer", "respond", "solvable", "fmt"]

#: Puzzles from the Tree-of-Thoughts Game of 24 benchmark range (all solvable).
PUZZLES = [
    "4 9 10 13", "1 4 8 8", "2 3 5 12", "3 3 8 8", "1 2 7 10",
    "4 4 6 8", "2 5 5 10", "1 3 4 6", "5 5 5 1", "3 8 8 10",
]

_OPS = ("+", "-", "*", "/")
_INPUT = re.compile(r"Input:\s*([-\d./ ]+)")


def fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _parse_numbers(text: str) -> list[Fraction]:
    return [Fraction(t) for t in text.split()]


@lru_cache(maxsize=None)
def _solvable(state: tuple[Fraction, ...]) -> bool:
    if len(state) == 1:
        return state[0] == 24
    return any(_solvable(rest) for _, rest in _moves(state))


def solvable(numbers: list[Fraction]) -> bool:
    return _solvable(tuple(sorted(numbers)))


def _moves(state: tuple[Fraction, ...]):
    """Every (step text, resulting sorted state) from ``state``."""
    out = []
    for i, j in itertools.permutations(range(len(state)), 2):
        a, b = state[i], state[j]
        rest = [state[k] for k in range(len(state)) if k not in (i, j)]
        for op in _OPS:
            if op in "+*" and i > j:
                continue  # commutative: one order is enough
            if op == "/" and b == 0:
                continue
            value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]
            if op == "-" and value < 0:
                continue
            new = tuple(sorted(rest + [value]))
            out.append((f"{fmt(a)} {op} {fmt(b)} = {fmt(value)} (left: {' '.join(fmt(x) for x in new)})", new))
    return out


def propose_prompt(numbers: str) -> str:
    return (
        "Use the numbers and basic arithmetic operations (+ - * /) to obtain 24. "
        "Propose one possible next step, as 'a op b = c (left: ...)'.\n"
        f"Input: {numbers}\nNext step:"
    )


def cot_prompt(numbers: str) -> str:
    return (
        "Use the numbers and basic arithmetic operations (+ - * /) to obtain 24, one step per line, "
        "then the final value as 'Answer: <value>'.\n"
        f"Input: {numbers}\nSteps:"
    )


def parse_step(text: str) -> Optional[str]:
    """The state left after a proposed step (``"4 4 10"``), or None if unparseable."""
    m = re.search(r"\(left:\s*([-\d/ ]+)\)", text)
    return " ".join(m.group(1).split()) if m else None


def parse_answer(text: str) -> Optional[str]:
    m = re.search(r"Answer:\s*([-\d/]+)", text)
    return m.group(1) if m else None


def _step(state: tuple[Fraction, ...], rng: random.Random, skill: float):
    moves = _moves(state)
    good = [m for m in moves if _solvable(m[1])]
    pool = good if good and rng.random() < skill else moves
    return rng.choice(pool)


def respond(prompt: str, rng: random.Random, skill: float = 0.5) -> str:
    """What the fake model answers to a Game of 24 prompt (any other prompt: a plain sentence)."""
    m = _INPUT.search(prompt)
    if not m:
        return "I can only play the Game of 24."
    state = tuple(sorted(_parse_numbers(m.group(1))))
    if "Next step:" in prompt:
        if len(state) < 2:
            return f"No step left: {fmt(state[0])}."
        return _step(state, rng, skill)[0]
    lines = []
    while len(state) > 1:
        text, state = _step(state, rng, skill)
        lines.append(text)
    return "\n".join(lines + [f"Answer: {fmt(state[0])}"])
