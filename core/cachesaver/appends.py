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
import dataclasses
import logging
from typing import Any, Callable, Optional, Sequence

from .errors import CorruptSampleError, ReadOnlyStoreError, StoreError
from .stores.base import Store, token_kwargs

__all__ = ["Appends", "ParkedAppends"]

log = logging.getLogger("cachesaver.appends")

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

    async def append(self, key: str, samples: Sequence[bytes], meta: Optional[bytes],
                     token: Optional[str] = None) -> int:
        """Append ``samples`` to ``key``; return the index of the first one once committed.
        ``token``: the store's :meth:`~Store.append_token` for it (stores that give tokens do
        not coalesce appends, so it goes with the direct call)."""
        if not self.store.coalesce_appends:
            return await self.store.append(key, samples, meta, unbilled_run=self.unbilled_run,
                                           **token_kwargs(token))
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


@dataclasses.dataclass(eq=False)
class _Parked:
    """One generated append that failed: what to send again, and what to do once stored."""

    key: str
    samples: Sequence[bytes]
    meta: Optional[bytes]
    token: Optional[str]          # the failed attempt's token (None: the store takes none)
    stored: Callable[[int], Any]  # the engine's bookkeeping, called with the first index


class ParkedAppends:
    """Generated samples whose append failed with a :class:`StoreError`, sent again until stored.

    Why: a model call that answered is paid for. When the store is out (Redis frozen past the
    client's retries, a disk write lock held too long), the waiting callers get the error, but
    the samples are kept here and sent again in the background (``first_delay`` doubling up to
    ``max_delay`` seconds), so that once the store is back they are stored and the callers'
    retries reuse them instead of paying again. Each is sent again with the token its first
    attempt used (:meth:`Store.append_token`): on Redis a first attempt that still runs late
    and the re-send are applied once between them. Stores without tokens (memory, disk) applied
    nothing when they failed, so the re-send is the only copy.

    :meth:`flush_key` sends a key's parked appends at once: the engine calls it before it plans
    a new generation for that key, so a retry never pays for samples that are waiting here.
    Bounded: at most ``limit`` appends are kept (more are dropped with a warning). At close
    (:meth:`aclose`) one last bounded attempt is made; what still fails is logged at WARNING
    with counts (never samples). Only the engine's loop touches this object.
    """

    def __init__(self, store: Store, unbilled_run: Optional[str] = None, *, limit: int = 1000,
                 first_delay: float = 0.2, max_delay: float = 5.0) -> None:
        self.store = store
        self.unbilled_run = unbilled_run
        self.limit = limit
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._items: list[_Parked] = []
        self._keys: dict[str, int] = {}  # parked appends per key
        self._lock: Optional[asyncio.Lock] = None  # one sender at a time (stores without tokens)
        self._task: "Optional[asyncio.Task[None]]" = None
        #: Appends stored by a re-send, and dropped (over ``limit``, or not stored at close).
        self.resent = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def holds(self, key: str) -> bool:
        """Whether an append of ``key`` waits here."""
        return key in self._keys

    def park(self, key: str, samples: Sequence[bytes], meta: Optional[bytes], token: Optional[str],
             stored: Callable[[int], Any]) -> bool:
        """Keep a failed append to send again; False if the list is full (then it is dropped
        and logged). ``stored(first_index)`` is called once it is stored."""
        if len(self._items) >= self.limit:
            self.dropped += 1
            log.warning("%d generated samples of key %s could not be stored and are not kept for "
                        "a later attempt (%d appends already wait for the store)",
                        len(samples), key, len(self._items))
            return False
        self._items.append(_Parked(key, samples, meta, token, stored))
        self._keys[key] = self._keys.get(key, 0) + 1
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._resend_loop())
        return True

    def _lock_now(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _send(self, item: _Parked) -> int:
        return await self.store.append(item.key, item.samples, item.meta, unbilled_run=self.unbilled_run,
                                       **token_kwargs(item.token))

    def _remove(self, item: _Parked) -> None:
        self._items.remove(item)
        left = self._keys[item.key] - 1
        if left:
            self._keys[item.key] = left
        else:
            del self._keys[item.key]

    async def _send_items(self, items: list[_Parked], *, raise_first: bool) -> None:
        """Send ``items`` (in order) under the lock. An item that is stored leaves the list;
        one that fails with a StoreError stays (``raise_first``: that error is raised); any
        other error (the store refuses the samples themselves) drops it, logged."""
        async with self._lock_now():
            for item in items:
                if item not in self._items:  # (stored meanwhile by another sender)
                    continue
                try:
                    start = await self._send(item)
                except ReadOnlyStoreError:  # (never becomes writable while open)
                    self._remove(item)
                    self.dropped += 1
                    if raise_first:
                        raise
                    continue
                except StoreError:
                    if raise_first:
                        raise
                    continue
                except Exception as exc:
                    self._remove(item)
                    self.dropped += 1
                    log.warning("%d generated samples of key %s were refused by the store on a "
                                "later attempt (%s); they are not stored", len(item.samples),
                                item.key, type(exc).__name__)
                    continue
                self._remove(item)
                self.resent += 1
                try:
                    item.stored(start)
                except Exception as exc:  # the samples are stored; bookkeeping only
                    log.warning("after storing samples of key %s again: %s", item.key, type(exc).__name__)

    async def flush_key(self, key: str) -> None:
        """Send ``key``'s parked appends now; raises the StoreError if one still fails (the
        store is still out: a new generation for the key would fail the same way)."""
        if key not in self._keys:
            return
        await self._send_items([item for item in self._items if item.key == key], raise_first=True)

    async def _resend_loop(self) -> None:
        delay = self.first_delay
        while self._items:
            await asyncio.sleep(delay)
            await self._send_items(list(self._items), raise_first=False)
            delay = min(delay * 2, self.max_delay)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop the background re-sends, make one last attempt (at most ``timeout`` seconds),
        and log at WARNING what could still not be stored."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])  # (its own end: a cancellation of the closer propagates)
        if not self._items:
            return
        try:
            await asyncio.wait_for(self._send_items(list(self._items), raise_first=False), timeout)
        except asyncio.TimeoutError:
            pass
        if self._items:
            samples = sum(len(item.samples) for item in self._items)
            log.warning("%d generated samples (%d appends, %d keys) could not be stored before the "
                        "pipeline closed (the store is still failing); they were paid for and are "
                        "lost", samples, len(self._items), len(self._keys))
            self.dropped += len(self._items)
            self._items.clear()
            self._keys.clear()
