"""In-process store: dicts of byte lists. For tests, notebooks and throwaway runs."""
from __future__ import annotations

from typing import Any, AsyncIterator, Optional, Sequence

from ..codec import exact_bytes
from .base import LedgerEntry, Store

__all__ = ["MemoryStore", "claim_in_memory", "positions_free", "take_positions"]


class MemoryStore(Store):
    """Keeps everything in this process; lost when it exits. Atomic because asyncio is."""

    location = "memory"
    inline_io = True

    def __init__(self) -> None:
        self._samples: dict[str, list[bytes]] = {}
        self._meta: dict[str, bytes] = {}
        self._ledger: dict[tuple[str, str, str], int] = {}
        self._ids: dict[str, dict[tuple[str, str], tuple[int, int]]] = {}
        self._holes: dict[tuple[str, str, str], set[int]] = {}
        #: Shared runs' generated samples no claim has billed yet: {(run_id, key): indices}.
        self._unbilled: dict[tuple[str, str], set[int]] = {}
        self._journal: Any = None  # see batch_journal

    keeps_id_positions = True
    keeps_billing = True

    def batch_journal(self) -> Any:
        """This store's batch journal, made on first use (it lives as long as the store)."""
        if self._journal is None:
            from ..batchapi.journal import MemoryJournal

            self._journal = MemoryJournal()
        return self._journal

    async def id_positions(self, key: str) -> dict[tuple[str, str], tuple[int, int]]:
        return self.id_positions_now(key)

    def id_positions_now(self, key: str) -> dict[tuple[str, str], tuple[int, int]]:
        records = self._ids.get(key)
        return dict(records) if records else {}

    async def record_id_positions(self, taken: Sequence[tuple[str, str, str, int, int]]) -> None:
        self.record_id_positions_now(taken)

    def record_id_positions_now(self, taken: Sequence[tuple[str, str, str, int, int]]) -> None:
        for namespace, key, request_id, pos, count in taken:
            self._ids.setdefault(key, {}).setdefault((namespace, request_id), (pos, count))

    async def read(self, key: str, start: int, count: int) -> list[bytes]:
        return self._samples.get(key, [])[start : start + count]

    def read_now(self, key: str, start: int, count: int) -> list[bytes]:
        # A slice of a list that is only ever extended: atomic under the GIL.
        return self._samples.get(key, [])[start : start + count]

    async def append(self, key: str, samples: Sequence[bytes], meta: Optional[bytes] = None, *,
                     unbilled_run: Optional[str] = None) -> int:
        bucket = self._samples.setdefault(key, [])
        start = len(bucket)
        bucket.extend(samples)
        if meta is not None and key not in self._meta:
            self._meta[key] = exact_bytes(meta)  # kept for the key's lifetime: not orjson's 4 kB buffer
        if unbilled_run is not None:
            self._unbilled.setdefault((unbilled_run, key), set()).update(range(start, len(bucket)))
        return start

    async def length(self, key: str) -> int:
        return len(self._samples.get(key, ()))

    async def claim(
        self, run_id: str, namespace: str, key: str, count: int, *, partial: bool
    ) -> tuple[int, list[bytes]]:
        return claim_in_memory(self._samples, self._ledger, (run_id, namespace, key), count, partial)

    async def claim_billed(self, run_id: str, namespace: str, key: str, count: int) -> tuple[int, list[bytes], list[int]]:
        pos, taken = claim_in_memory(self._samples, self._ledger, (run_id, namespace, key), count, False)
        unbilled = self._unbilled.get((run_id, key))
        if not taken or not unbilled:
            return pos, taken, []
        billed = [i for i in range(pos, pos + len(taken)) if i in unbilled]
        unbilled.difference_update(billed)
        if not unbilled:
            del self._unbilled[(run_id, key)]
        return pos, taken, billed

    async def claim_at(self, run_id: str, namespace: str, key: str, pos: int, count: int) -> list[bytes]:
        slot = (run_id, namespace, key)
        taken = self._samples.get(key, [])[pos : pos + count]
        if len(taken) < count or not take_positions(self._ledger, self._holes, slot, pos, count):
            return []
        return taken

    async def iter_keys(self) -> AsyncIterator[str]:
        for key in list(self._samples):
            yield key

    async def get_meta(self, key: str) -> Optional[bytes]:
        return self._meta.get(key)

    async def iter_ledger(self) -> AsyncIterator[LedgerEntry]:
        for (run_id, namespace, key), pos in list(self._ledger.items()):
            yield run_id, namespace, key, pos

    async def delete(self, key: str) -> int:
        removed = len(self._samples.pop(key, ()))
        self._meta.pop(key, None)
        for slot in [s for s in self._ledger if s[2] == key]:
            del self._ledger[slot]
        for slot in [s for s in self._holes if s[2] == key]:
            del self._holes[slot]
        for run_key in [s for s in self._unbilled if s[1] == key]:
            del self._unbilled[run_key]
        self._ids.pop(key, None)
        return removed

    async def clear(self) -> None:
        self._samples.clear()
        self._meta.clear()
        self._ledger.clear()
        self._ids.clear()
        self._holes.clear()
        self._unbilled.clear()


def positions_free(ledger: "dict[Any, int]", holes: "dict[Any, set[int]]", slot: Any, pos: int, count: int) -> bool:
    """Whether positions ``pos .. pos+count-1`` of ``slot`` are all free: at or beyond its ledger
    position, or holes below it."""
    following = ledger.get(slot, 0)
    gaps = holes.get(slot, ())
    return pos >= 0 and all(p >= following or p in gaps for p in range(pos, pos + count))


def take_positions(ledger: "dict[Any, int]", holes: "dict[Any, set[int]]", slot: Any, pos: int, count: int) -> bool:
    """Take positions ``pos .. pos+count-1`` of ``slot`` if all are free (:func:`positions_free`).
    Taking beyond the ledger position leaves holes between (the one rule for in-process ledgers:
    the private ledger and the memory store's shared ones)."""
    if not positions_free(ledger, holes, slot, pos, count):
        return False
    following = ledger.get(slot, 0)
    gaps = holes.get(slot)
    if gaps is not None:
        gaps.difference_update(range(pos, min(pos + count, following)))
    if pos > following:
        holes.setdefault(slot, set()).update(range(following, pos))
    if pos + count > following:
        ledger[slot] = pos + count
    if gaps is not None and not gaps:
        del holes[slot]
    return True


def claim_in_memory(samples: "dict[str, list[bytes]]", ledger: "dict[tuple[str, str, str], int]",
                    slot: "tuple[str, str, str]", count: int, partial: bool) -> tuple[int, list[bytes]]:
    """``Store.claim`` over in-process dicts (atomic because nothing here suspends)."""
    pos = ledger.get(slot, 0)
    taken = samples.get(slot[2], [])[pos : pos + count]
    if not partial and len(taken) < count:
        return pos, []
    if taken:
        ledger[slot] = pos + len(taken)
    return pos, taken
