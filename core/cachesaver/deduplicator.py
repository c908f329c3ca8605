"""Deduplicator: merge requests of one key and one namespace into one demand with ``n`` = sum.

Requests of one key in *different* namespaces are not merged here (they must not share samples);
the cacher still serves them from one model call (G3).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .pending import Pending

__all__ = ["Demand", "deduplicate"]


@dataclass
class Demand:
    """All requests of one (key, namespace) in a batch, in ``request_id`` order."""

    key: str
    namespace: str
    items: list[Pending] = field(default_factory=list)

    @property
    def n(self) -> int:
        return sum(item.request.n for item in self.items if not item.future.done())

    def live_items(self) -> list[Pending]:
        """Items whose caller still waits (a cancelled caller gets no samples, consumes none)."""
        return [item for item in self.items if not item.future.done()]


def deduplicate(items: Iterable[Pending]) -> list[Demand]:
    """Group ordered items into demands, keeping the order of each demand's first item."""
    demands: dict[tuple[str, str], Demand] = {}
    for item in items:
        slot = (item.key, item.request.namespace)
        demand = demands.get(slot)
        if demand is None:
            demand = demands[slot] = Demand(item.key, item.request.namespace)
        demand.items.append(item)
    return list(demands.values())
