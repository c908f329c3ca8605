"""Where explicit request ids took their samples: what makes a replay by id exact (G4).

Inside a namespace, identical requests take the namespace's next samples in the order they are
served. Without ids, that order is the issue order the pipeline sees; with ids it must not
depend on timing at all: request "9" arriving before or after request "10" in a later run must
get the samples it got the first time. So the first time a request with an explicit id takes
samples of a key in a namespace, the pipeline records which positions it took (in the store,
beside the samples); a later run gives that id the same positions when they are all stored and
still free in that run (:meth:`cachesaver.ledger.Ledger.claim_at`), and otherwise the next free
ones, as any request. A different program sharing the namespace, with other ids or none, still
reuses every stored sample.

Records are read once per key and pipeline, and written only for ids not recorded
yet, gathered and written in one store transaction per engine tick (and at close, and every
:data:`FLUSH_EVERY` records), never one per request: a miss costs one store write, as before.
A record is a hint, not a sample: a process that dies before writing it loses nothing but the
exact order of that request in a later replay. Shared runs (``run_id=``) take an id's
positions atomically in the store (:meth:`cachesaver.stores.base.Store.claim_at`).
"""
from __future__ import annotations

from typing import Optional, Sequence

from .stores.base import Store

__all__ = ["IdPositions"]

Record = tuple[int, int]  # (first position, count)

#: Records gathered before they are written without waiting for the next engine tick.
FLUSH_EVERY = 256

#: What a key without records maps to (shared: ``_known`` is only ever read).
_NONE: dict[tuple[str, str], Record] = {}


class IdPositions:
    """The records of one pipeline's store: read once per key when a request with
    an id looks for its positions; new ones gathered and written together."""

    def __init__(self, store: Store) -> None:
        self._store = store
        #: Records read from the store, per key (loaded on the first lookup of a key).
        self._known: dict[str, dict[tuple[str, str], Record]] = {}
        #: Records this pipeline made, written or not (the store keeps an id's first record).
        self._made: dict[tuple[str, str, str], Record] = {}
        self._unwritten: list[tuple[str, str, str, int, int]] = []

    def lookup_now(self, namespace: str, key: str, request_id: str) -> Optional[Record]:
        """The positions ``request_id`` took in an earlier run (or earlier in this one)."""
        if key not in self._known:
            self._known[key] = self._store.id_positions_now(key) or _NONE
        return self.lookup_loaded(namespace, key, request_id)

    def loaded(self, key: str) -> bool:
        """Whether ``key``'s records have been read (then :meth:`lookup_loaded` answers)."""
        return key in self._known

    async def load(self, keys: Sequence[str]) -> None:
        """Read the records of every key not read yet, with one store call (one round trip on
        Redis): a tick's requests with ids look them up together. A key whose records cannot be
        read stays unread (its :meth:`lookup` reads it again, and fails its request then)."""
        unread = [key for key in dict.fromkeys(keys) if key not in self._known]
        if not unread:
            return
        for key, found in zip(unread, await self._store.id_positions_many(unread)):
            if not isinstance(found, Exception):
                self._known[key] = found or _NONE

    def lookup_loaded(self, namespace: str, key: str, request_id: str) -> Optional[Record]:
        """:meth:`lookup` of a key whose records are :meth:`loaded` (nothing to await)."""
        found = self._known[key].get((namespace, request_id))
        return found if found is not None else self._made.get((namespace, key, request_id))

    async def lookup(self, namespace: str, key: str, request_id: str) -> Optional[Record]:
        if key not in self._known:
            self._known[key] = await self._store.id_positions(key) or _NONE
        return self.lookup_loaded(namespace, key, request_id)

    def note(self, namespace: str, key: str, request_id: str, pos: int, count: int) -> None:
        """Remember where ``request_id`` took its samples, if it had no record; the record is
        written with the next :meth:`flush_now` (the caller holds the pipeline's lock). No
        store read: a record the store already has for the id stays, the store ignores this one."""
        slot = (namespace, key, request_id)
        if slot in self._made:
            return
        known = self._known.get(key)
        if known is not None and (namespace, request_id) in known:
            return
        self._made[slot] = (pos, count)
        self._unwritten.append((namespace, key, request_id, pos, count))
        if len(self._unwritten) >= FLUSH_EVERY and self._store.inline_io:
            self.flush_now()

    def take_unwritten(self) -> list[tuple[str, str, str, int, int]]:
        """The records not written yet (the caller writes them; call under the pipeline's lock)."""
        unwritten, self._unwritten = self._unwritten, []
        return unwritten

    def flush_now(self) -> None:
        """Write the gathered records in one store transaction (stores with ``inline_io``; the
        pipeline writes the others' on its loop)."""
        unwritten = self.take_unwritten()
        if unwritten:
            self._store.record_id_positions_now(unwritten)
