"""Reorderer: put a batch in (tick, ``request_id``) order.

Requests that reach the pipeline in one event-loop tick arrived "at once": their order among
themselves depends on scheduling, their ``request_id`` order does not. A batch of misses can
span several ticks (its window stays open), while a replay serves the same requests as hits,
each in its own tick: so a batch hands out samples tick by tick, and in ``request_id`` order
inside a tick, which is the order the hit path gives them too (G4).
"""
from __future__ import annotations

from typing import Any, Sequence, TypeVar

__all__ = ["reorder"]

T = TypeVar("T")


def reorder(items: Sequence[T]) -> list[T]:
    """Items sorted by their tick, then ``request.request_id`` (stable for equal ones)."""
    return sorted(items, key=_order)


def _order(item: Any) -> tuple[int, str]:
    return item.tick, item.request.request_id
