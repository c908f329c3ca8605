"""Gathers the appends of one moment into one store call (one transaction on disk).

Why: a batch of misses over many keys finishes its model calls at about the same time, and
each key's samples must be committed before they are handed out (G6). On SQLite one commit per
key is most of a miss's cost; one ``append_many`` for all of them is about the cost of one.

How: an append made while another is waiting joins it; the group is written by one task at the
next turn of the loop. Every caller gets its own first index back, or the group's error (the
group is one transaction, so then none of its samples was stored: G5). Stores that do not set
``coalesce_appends`` are called directly, with no added hop.
"""
from __future__ import annotations

import asyncio
from typing import Optional, Sequence

from .errors import CorruptSampleError
from .stores.base import Store

__all__ = ["Appends"]

_Item = tuple[str, Sequence[bytes], Optional[bytes]]


class Appends:
    """``unbilled_run``: the shared run whose generations these appends are; the store records
    their samples as unbilled in it (see :meth:`Store.claim_billed`)."""

    def __init__(self, store: Store, unbilled_run: Optional[str] = None) -> None:
        self.store = store
        self.unbilled_run = unbilled_run
        # The waiting group, as two parallel lists (no pair per append: with thousands of keys
        # waiting, every object they hold is the garbage collector's work).
        self._items: list[_Item] = []
        self._futures: list["asyncio.Future[int]"] = []
        self._tasks: set[asyncio.Task] = set()

    async def append(self, key: str, samples: Sequence[bytes], meta: Optional[bytes]) -> int:
        """Append ``samples`` to ``key``; return the index of the first one once committed."""
        if not self.store.coalesce_appends:
            return await self.store.append(key, samples, meta, unbilled_run=self.unbilled_run)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._items.append((key, samples, meta))
        self._futures.append(future)
        if len(self._items) == 1:
            task = asyncio.ensure_future(self._write())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # A caller cancelled while waiting cancels only its future: the group is still written
        # (its samples were paid for, and the next request can use them).
        return await future

    async def _write(self) -> None:
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        try:
            if len(items) == 1:
                starts = [await self.store.append(*items[0], unbilled_run=self.unbilled_run)]
            else:
                try:
                    starts = await self.store.append_many(items, unbilled_run=self.unbilled_run)
                except (CorruptSampleError, TypeError):
                    # One key's own rows (or values) are bad: the group's transaction stored
                    # nothing; append each on its own so only that key's callers fail.
                    await self._write_each(items, futures)
                    return
        except BaseException as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
            return
        for future, start in zip(futures, starts):
            if not future.done():
                future.set_result(start)

    async def _write_each(self, items: list[_Item], futures: list["asyncio.Future[int]"]) -> None:
        for item, future in zip(items, futures):
            try:
                start = await self.store.append(*item, unbilled_run=self.unbilled_run)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(start)
