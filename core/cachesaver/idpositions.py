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

Records are read once per (namespace, key) and pipeline, and written only for ids not recorded
yet. Shared runs (``run_id=``) and stores that keep no records serve by arrival order.
"""
from __future__ import annotations

from typing import Optional

from .stores.base import Store

__all__ = ["IdPositions"]

Record = tuple[int, int]  # (first position, count)


class IdPositions:
    """The records of one pipeline's store, read once per (namespace, key)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.enabled = store.keeps_id_positions
        self._known: dict[tuple[str, str], dict[str, Record]] = {}

    def _records_now(self, namespace: str, key: str) -> dict[str, Record]:
        known = self._known.get((namespace, key))
        if known is None:
            known = self._known[(namespace, key)] = self._store.id_positions_now(namespace, key)
        return known

    async def _records(self, namespace: str, key: str) -> dict[str, Record]:
        known = self._known.get((namespace, key))
        if known is None:
            known = self._known[(namespace, key)] = await self._store.id_positions(namespace, key)
        return known

    def lookup_now(self, namespace: str, key: str, request_id: str) -> Optional[Record]:
        """The positions ``request_id`` took in an earlier run (synchronous stores)."""
        return self._records_now(namespace, key).get(request_id)

    async def lookup(self, namespace: str, key: str, request_id: str) -> Optional[Record]:
        return (await self._records(namespace, key)).get(request_id)

    def note_now(self, namespace: str, key: str, request_id: str, pos: int, count: int) -> None:
        """Record where ``request_id`` took its samples, if it had no record (synchronous)."""
        known = self._records_now(namespace, key)
        if request_id not in known:
            known[request_id] = (pos, count)
            self._store.record_id_positions_now(namespace, key, [(request_id, pos, count)])

    async def note(self, namespace: str, key: str, request_id: str, pos: int, count: int) -> None:
        known = await self._records(namespace, key)
        if request_id not in known:
            known[request_id] = (pos, count)
            await self._store.record_id_positions(namespace, key, [(request_id, pos, count)])
