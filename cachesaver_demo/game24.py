"""Game of 24: states, legal moves, solvability, puzzles, the prompts methods send, and parsers.

Why prompts recur (which is what a sample cache can exploit): as in the Tree-of-Thoughts
Game-of-24 prompts, every prompt shows only the numbers *left*, not the path that led there. Many
paths reach the same numbers (``4 + 6`` and ``2 * 5`` both leave a 10), states reached from
different puzzles coincide near the end (two or three numbers), and different methods or
configurations ask the same "propose a step" and "evaluate these numbers" prompts. Nothing here
forces a recurrence: it follows from the task, as it does with a real model.

Numbers are exact fractions. Moves are the ones a model typically proposes: ``+``, ``*``,
larger minus smaller, and division only when it is exact, so the move space (and the set of
solvable puzzles) is a little smaller than the full game.
"""
from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Optional, Sequence

__all__ = [
    "State", "Move", "fmt", "state_text", "make_state", "expression", "moves", "solvable", "puzzles",
    "step_prompt", "value_prompt", "cot_prompt", "merge_prompt",
    "prompt_kind", "prompt_payload",
    "parse_step", "parse_value", "parse_cot", "parse_merge", "strip_tag",
    "LABEL_VALUE", "TARGET",
]

State = tuple  # a sorted tuple of Fractions
TARGET = Fraction(24)

#: Value labels and the scores Tree-of-Thoughts gives them.
LABEL_VALUE = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}


def fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def state_text(state: Sequence[Fraction]) -> str:
    return " ".join(fmt(x) for x in state)


def make_state(values: Iterable) -> State:
    return tuple(sorted(Fraction(v) for v in values))


@dataclass(frozen=True)
class Move:
    a: Fraction
    op: str
    b: Fraction
    result: Fraction
    left: State

    @property
    def text(self) -> str:
        """``"10 - 4 = 6 (left: 5 6 6)"``: the line a model writes for this step."""
        return f"{fmt(self.a)} {self.op} {fmt(self.b)} = {fmt(self.result)} (left: {state_text(self.left)})"


@functools.lru_cache(maxsize=None)
def moves(state: State) -> tuple[Move, ...]:
    """Every legal step from ``state``, in a fixed order (identical numbers are one choice)."""
    out: list[Move] = []
    seen_pairs = set()
    for i in range(len(state)):
        for j in range(i + 1, len(state)):
            small, big = state[i], state[j]
            if (small, big) in seen_pairs:
                continue
            seen_pairs.add((small, big))
            rest = state[:i] + state[i + 1:j] + state[j + 1:]
            results = [("+", big + small), ("*", big * small), ("-", big - small)]
            if small != 0 and (big / small).denominator == 1:
                results.append(("/", big / small))
            for op, value in results:
                out.append(Move(big, op, small, value, tuple(sorted(rest + (value,)))))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def solvable(state: State) -> bool:
    """Whether ``state`` can still reach 24 with the moves above."""
    if len(state) == 1:
        return state[0] == TARGET
    return any(solvable(m.left) for m in moves(state))


def puzzles(count: int, seed: int = 0) -> list[State]:
    """``count`` distinct solvable four-number puzzles (numbers 1..13), the same for a seed."""
    if count < 1:
        raise ValueError(f"puzzles: count must be >= 1, got {count}")
    rng = random.Random(f"game24-puzzles|{seed}")
    found: list[State] = []
    seen = set()
    attempts = 0
    while len(found) < count:
        attempts += 1
        if attempts > 100_000:
            raise ValueError(f"puzzles: could not find {count} distinct solvable puzzles")
        state = make_state(rng.randint(1, 13) for _ in range(4))
        if state in seen or not solvable(state):
            continue
        seen.add(state)
        found.append(state)
    return found


# -- prompts ------------------------------------------------------------------------------------
# Few-shot prefixes are built from fixed example states by the solver, so they are realistic in
# length (what drives input tokens) without being copied from any paper's prompt file.

STEP_HEAD = "Game of 24, propose one next step."
VALUE_HEAD = "Game of 24, evaluate the numbers left."
COT_HEAD = "Game of 24, solve step by step."
MERGE_HEAD = "Game of 24, merge partial solutions."

_EXAMPLES = [make_state(s) for s in ((2, 8, 8, 14), (1, 4, 6, 8), (4, 5, 6, 10), (3, 3, 7, 12),
                                     (1, 2, 3, 12), (5, 5, 6, 13), (2, 3, 4, 11), (6, 8, 9, 10))]


def _solution(state: State) -> list[Move]:
    if len(state) == 1:
        return []
    for m in moves(state):
        if solvable(m.left):
            return [m] + _solution(m.left)
    return []


def _step_examples() -> str:
    lines = []
    for s in _EXAMPLES:
        m = (_solution(s) or list(moves(s)))[0]
        lines.append(f"Input: {state_text(s)}\nPossible next step: {m.text}")
    return "\n".join(lines)


def _value_examples() -> str:
    blocks = []
    for s in _EXAMPLES:
        for depth_state in (s, *(m.left for m in _solution(s)[:2])):
            tries = [m for m in moves(depth_state)][:3]
            verdict = "sure" if solvable(depth_state) else "impossible"
            body = "\n".join(f"{fmt(m.a)} {m.op} {fmt(m.b)} = {fmt(m.result)}" for m in tries)
            blocks.append(f"{state_text(depth_state)}\n{body}\n{verdict}")
    return "\n".join(blocks)


def _cot_examples() -> str:
    blocks = []
    for s in _EXAMPLES[:5]:
        sol = _solution(s)
        steps = "\n".join(m.text for m in sol)
        blocks.append(f"Input: {state_text(s)}\nSteps:\n{steps}\nAnswer: {expression(s, sol)} = 24")
    return "\n".join(blocks)


def _merge_examples() -> str:
    blocks = []
    for s in _EXAMPLES[:4]:
        options = sorted({m.left for m in moves(s)})[:3]
        best = next((o for o in options if solvable(o)), options[0])
        listed = " | ".join(state_text(o) for o in options)
        blocks.append(f"Candidates: {listed}\nBest: {state_text(best)}")
    return "\n".join(blocks)


@functools.lru_cache(maxsize=None)
def _prefix(kind: str) -> str:
    if kind == "step":
        return (f"{STEP_HEAD}\nUse the numbers and basic arithmetic operations (+ - * /) to obtain "
                "24. Choose two of the numbers, combine them, and write the step and the numbers "
                f"left.\n{_step_examples()}\n")
    if kind == "value":
        return (f"{VALUE_HEAD}\nEvaluate if the given numbers can reach 24 "
                f"(sure/likely/impossible). Try a few combinations first.\n{_value_examples()}\n")
    if kind == "cot":
        return (f"{COT_HEAD}\nUse numbers and basic arithmetic operations (+ - * /) to obtain 24. "
                "Each step, you are only allowed to choose two of the remaining numbers to obtain "
                f"a new number.\n{_cot_examples()}\n")
    if kind == "merge":
        return (f"{MERGE_HEAD}\nSeveral partial solutions are given as the numbers each has left. "
                "Merge what they show into the single most promising state to continue from.\n"
                f"{_merge_examples()}\n")
    raise ValueError(kind)


def step_prompt(state: State) -> str:
    return f"{_prefix('step')}Input: {state_text(state)}\nPossible next step:"


def value_prompt(state: State) -> str:
    return f"{_prefix('value')}{state_text(state)}\n"


def cot_prompt(state: State) -> str:
    return f"{_prefix('cot')}Input: {state_text(state)}\nSteps:"


def merge_prompt(states: Sequence[State]) -> str:
    listed = " | ".join(state_text(s) for s in sorted(states))
    return f"{_prefix('merge')}Candidates: {listed}\nBest:"


_KIND_BY_HEAD = {STEP_HEAD: "step", VALUE_HEAD: "value", COT_HEAD: "cot", MERGE_HEAD: "merge"}


def prompt_kind(prompt: str) -> str:
    """What a prompt asks for, read from its first line (as a model reads the instruction)."""
    kind = _KIND_BY_HEAD.get(prompt.split("\n", 1)[0])
    if kind is None:
        raise ValueError(f"prompt: not a Game-of-24 prompt of this simulator: {prompt[:60]!r}")
    return kind


def prompt_payload(prompt: str) -> list[State]:
    """The state(s) a prompt is about, read from its last lines."""
    kind = prompt_kind(prompt)
    lines = prompt.rstrip("\n").split("\n")
    if kind == "value":
        return [_parse_state(lines[-1])]
    if kind in ("step", "cot"):
        return [_parse_state(lines[-2].removeprefix("Input: "))]
    return [_parse_state(part) for part in lines[-2].removeprefix("Candidates: ").split(" | ")]


def _parse_state(text: str) -> State:
    return tuple(sorted(Fraction(tok) for tok in text.split()))


# -- parsing model output -------------------------------------------------------------------------
# The parsers read what the simulator model writes. The local OpenAI-compatible server, serving
# the same answers through its ``responder`` hook, appends a ``[sample k of <model>]`` tag
# (its sample identity); the parsers ignore it.

_STEP_RE = re.compile(r"(\S+) ([-+*/]) (\S+) = (\S+) \(left: ([^)]*)\)")
_ANSWER_RE = re.compile(r"Answer: (.+) = (\S+)\s*$")
_SERVER_TAG = re.compile(r"\s*\[sample \d+ of [^\]]*\]\s*$")


def strip_tag(text: str) -> str:
    """``text`` without the fake server's trailing ``[sample k of <model>]`` tag."""
    return _SERVER_TAG.sub("", text)


def parse_step(text: str, state: State) -> Optional[Move]:
    """The legal move ``text`` proposes from ``state``, or None for an unusable answer."""
    match = _STEP_RE.search(text)
    if match:
        for m in moves(state):
            if m.text == match.group(0):
                return m
    return None


def parse_value(text: str) -> str:
    """The verdict on the last line (``impossible`` when there is none)."""
    words = strip_tag(text).split()
    return words[-1] if words and words[-1] in LABEL_VALUE else "impossible"


def parse_cot(text: str, state: State) -> Optional[tuple[str, Fraction]]:
    """``(expression, value)`` of the chain's final answer, or None."""
    match = _ANSWER_RE.search(strip_tag(text).strip())
    if not match:
        return None
    try:
        return match.group(1), Fraction(match.group(2))
    except (ValueError, ZeroDivisionError):
        return None


def parse_merge(text: str, candidates: Sequence[State]) -> State:
    """The candidate the answer picks (the first candidate when it names none)."""
    ordered = sorted(candidates)
    for line in strip_tag(text).split("\n"):
        if line.startswith("Best: "):
            try:
                picked = _parse_state(line.removeprefix("Best: "))
            except (ValueError, ZeroDivisionError):
                break
            if picked in ordered:
                return picked
            break
    return ordered[0]


def expression(state: State, chain: Sequence[Move]) -> str:
    """The arithmetic expression a chain of moves builds, e.g. ``(10 - 4) * (5 - 1)``."""
    pool = [(x, fmt(x)) for x in state]
    for m in chain:
        ia = next(i for i, (v, _) in enumerate(pool) if v == m.a)
        ea = pool.pop(ia)[1]
        ib = next(i for i, (v, _) in enumerate(pool) if v == m.b)
        eb = pool.pop(ib)[1]
        pool.append((m.result, f"({ea} {m.op} {eb})"))
    if len(pool) == 1:
        text = pool[0][1]
        return text[1:-1] if chain else text  # drop the outermost parentheses only
    return " , ".join(e for _, e in pool)
