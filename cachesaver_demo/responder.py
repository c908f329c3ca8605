"""The demo's fake LLM: how a model at temperature 0.7 answers Game of 24 prompts.

Answers come from a *small* space that depends on the prompt: a legal next step (favouring a few
"obvious" moves and moves that keep 24 reachable, as real models do), a sure/likely/impossible
verdict that is right more often than not, a chain of steps ending in an answer, or one of the
candidates offered to merge. Shared by ``cachesaver demo`` (as the local server's ``responder``)
and the savings benchmark's simulated model.
"""
from __future__ import annotations

import hashlib
import random

from . import game24 as g

__all__ = ["respond"]


def respond(prompt: str, rng: random.Random) -> str:
    """One answer to ``prompt`` drawn with ``rng`` (also the fake server's ``responder``)."""
    return _SAMPLERS[g.prompt_kind(prompt)](g.prompt_payload(prompt), rng)


def _taste(move: g.Move) -> int:
    """A fixed preference order over moves: the model's habits, the same in every run."""
    return int.from_bytes(hashlib.sha256(f"taste|{move.text}".encode()).digest()[:4], "big")


def _pick_move(state: g.State, rng: random.Random) -> g.Move:
    legal = g.moves(state)
    ranked = sorted(legal, key=_taste)
    weights = [0.7 ** rank * (3.0 if g.solvable(m.left) else 1.0) for rank, m in enumerate(ranked)]
    return rng.choices(ranked, weights=weights, k=1)[0]


def _step(states: list[g.State], rng: random.Random) -> str:
    return _pick_move(states[0], rng).text


def _value(states: list[g.State], rng: random.Random) -> str:
    state = states[0]
    if len(state) == 1:
        reached = state[0] == g.TARGET
        label = rng.choices(["sure", "impossible"], weights=[95, 5] if reached else [3, 97])[0]
        return f"{g.fmt(state[0])} {'=' if reached else '!='} 24\n{label}"
    weights = [45, 45, 10] if g.solvable(state) else [5, 35, 60]
    label = rng.choices(["sure", "likely", "impossible"], weights=weights)[0]
    legal = list(g.moves(state))
    tries = rng.sample(legal, k=min(2, len(legal)))
    lines = [f"{g.fmt(m.a)} {m.op} {g.fmt(m.b)} = {g.fmt(m.result)}" for m in tries]
    return "\n".join(lines + [label])


def _cot(states: list[g.State], rng: random.Random) -> str:
    state, chain = states[0], []
    while len(state) > 1:
        move = _pick_move(state, rng)
        chain.append(move)
        state = move.left
    steps = "\n".join(m.text for m in chain)
    return f"{steps}\nAnswer: {g.expression(states[0], chain)} = {g.fmt(state[0])}"


def _merge(states: list[g.State], rng: random.Random) -> str:
    ordered = sorted(states)
    weights = [3.0 if g.solvable(s) else 1.0 for s in ordered]
    best = rng.choices(ordered, weights=weights)[0]
    return f"Best: {g.state_text(best)}\nIt keeps the most ways to reach 24 open."


_SAMPLERS = {"step": _step, "value": _value, "cot": _cot, "merge": _merge}
