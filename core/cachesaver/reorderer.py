"""Reorderer: put a batch in ``request_id`` order.

Arrival order inside a batch depends on scheduling; ``request_id`` order does not. Handing out
samples in that order is what lets a concurrent run replay sample-for-sample (G4).
"""
from __future__ import annotations

from typing import Sequence, TypeVar

__all__ = ["reorder"]

T = TypeVar("T")


def reorder(items: Sequence[T]) -> list[T]:
    """Items sorted by their ``request.request_id`` (stable for equal ids)."""
    return sorted(items, key=lambda item: item.request.request_id)  # type: ignore[attr-defined]
