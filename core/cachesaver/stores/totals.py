"""What ``cachesaver stats`` shows of a store, computed in bounded memory.

:class:`KeyTotals` holds the totals per model (keys, samples, bytes of the samples) and the
``top`` keys with the most samples. :meth:`Store.key_totals` returns it; the default
(:func:`stream_key_totals`) reads one key at a time through :meth:`Store.iter_key_sizes` and
keeps only the totals and a heap of ``top`` entries, so its memory does not grow with the
number of keys. The disk store computes the same figures with SQL aggregates instead (one
pass in SQLite, see ``DiskStore.key_totals``); the Redis store streams the default from a
``RedisStore.iter_key_sizes`` that reads a SCAN batch of keys per round trip.

A key's model is the one :func:`cachesaver.display.request_model` reads from its stored
request (``-`` when there is none, or it is not JSON).
"""
from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import orjson

if TYPE_CHECKING:
    from .base import Store

__all__ = ["KeyTotals", "model_of", "stream_key_totals"]

#: (key, samples, bytes of its samples, stored request JSON or None)
KeySize = tuple[str, int, int, Optional[bytes]]


@dataclass
class KeyTotals:
    """Totals per model, and the largest keys.

    ``by_model``: model -> ``[keys, samples, bytes]``. ``largest``: at most ``top`` entries
    ``(key, samples, bytes, meta)``, most samples first, then by key."""

    by_model: dict[str, list[int]] = field(default_factory=dict)
    largest: list[KeySize] = field(default_factory=list)

    @property
    def keys(self) -> int:
        return sum(t[0] for t in self.by_model.values())

    @property
    def samples(self) -> int:
        return sum(t[1] for t in self.by_model.values())

    @property
    def bytes(self) -> int:
        return sum(t[2] for t in self.by_model.values())


def model_of(raw_meta: Optional[bytes]) -> str:
    """The model a stored request names (``-`` if none, or the request is not JSON)."""
    from ..display import request_model

    if raw_meta is None:
        return "-"
    try:
        return request_model(orjson.loads(raw_meta))
    except orjson.JSONDecodeError:
        return "-"


async def stream_key_totals(store: "Store", top: int) -> KeyTotals:
    """:class:`KeyTotals` from ``store.iter_key_sizes()``, one key at a time."""
    out = KeyTotals()
    heap: list[tuple[int, _Reversed, str, int, Optional[bytes]]] = []  # a min-heap by (samples, key)
    async for key, n, size, raw_meta in store.iter_key_sizes():
        totals = out.by_model.setdefault(model_of(raw_meta), [0, 0, 0])
        totals[0] += 1
        totals[1] += n
        totals[2] += size
        if top > 0:
            entry = (n, _Reversed(key), key, size, raw_meta)
            if len(heap) < top:
                heapq.heappush(heap, entry)
            elif entry[:2] > heap[0][:2]:
                heapq.heapreplace(heap, entry)
    out.largest = [(key, n, size, raw) for n, _k, key, size, raw in sorted(heap, key=lambda e: (-e[0], e[2]))]
    return out


@functools.total_ordering
class _Reversed:
    """A key that sorts backwards: in the heap, equal sample counts keep the keys that come
    first (the largest keys are listed by samples, then key)."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __lt__(self, other: "_Reversed") -> bool:
        return self.key > other.key

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _Reversed) and self.key == other.key
