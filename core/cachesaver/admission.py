"""Admission: the one place that decides the order in which requests of a (namespace, key) take
their samples (G1, G4).

A request is validated and keyed once (:meth:`Pipeline._admit`, :meth:`OnlineAPI.try_now`) and is
then either a full hit, served at once, or a *place* in its (namespace, key) queue: a
:class:`Reservation`, held from the miss until the request is done. While it is held, later
requests of that (namespace, key) do not take samples before it (a replay gives them in that
order), on the caller's thread or on the engine's loop alike.

The queue owns the pipeline's only lock (:attr:`Queues.lock`), which also guards what a
synchronous hit touches elsewhere (ledger positions, billing flags, counters). It is held only
around code that never suspends: it is a ``threading.RLock`` for pipelines that serve hits on
callers' threads (private runs on memory and disk stores) and nothing for the others, whose hits
are all served on the engine's loop.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, ContextManager, Optional

__all__ = ["Queues", "Reservation"]

Slot = tuple[str, str]  # (namespace, key)


class Reservation:
    """A request's place in its (namespace, key) queue, from its miss until it is done.

    Released once, by whoever finishes last (its request, as it ends, or a stream nobody read
    being collected); releasing twice is harmless.
    """

    __slots__ = ("_queues", "slot", "meta", "released")

    def __init__(self, queues: "Queues", slot: Slot, meta: Optional[bytes] = None) -> None:
        self._queues = queues
        self.slot = slot
        #: The canonical JSON the key was hashed from, when the miss computed it: the request
        #: it reserves for is admitted with it instead of walking the request again.
        self.meta = meta
        self.released = False

    def release(self) -> None:
        self._queues.release(self)


class Queues:
    """Per (namespace, key), how many admitted requests hold a place (see the module docstring)."""

    def __init__(self, threaded: bool) -> None:
        #: The pipeline's only lock (None when every hit is served on the engine's loop).
        self.lock: Optional[threading.RLock] = threading.RLock() if threaded else None
        self._held: dict[Slot, int] = {}

    def guard(self) -> ContextManager[Any]:
        """The lock, or nothing, as a context manager."""
        return self.lock if self.lock is not None else contextlib.nullcontext()

    def held(self) -> dict[Slot, int]:
        """A copy of every held place count (for leak checks and debugging)."""
        with self.guard():
            return dict(self._held)

    def ahead(self, slot: Slot) -> int:
        """Places held in ``slot`` (call with the lock held)."""
        return self._held.get(slot, 0)

    def reserve(self, slot: Slot, meta: Optional[bytes] = None) -> Reservation:
        """Take the next place in ``slot`` (call with the lock held)."""
        self._held[slot] = self._held.get(slot, 0) + 1
        return Reservation(self, slot, meta)

    def release(self, reservation: Reservation) -> None:
        """Give ``reservation``'s place back (once; any thread)."""
        with self.guard():
            if reservation.released:
                return
            reservation.released = True
            slot = reservation.slot
            left = self._held[slot] - 1
            if left:
                self._held[slot] = left
            else:
                del self._held[slot]
