"""Batcher: collect items until a batch holds ``batch_size`` samples or ``timeout`` expires.

Size counts samples (the sum of ``n``), because that is what a batch costs a local model and
what merging can save. With ``allow_batch_overflow=False`` a request that does not fit closes
the current batch and starts the next; with ``True`` it joins the current batch (which then
closes). A single request larger than ``batch_size`` always forms its own batch.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Optional, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(
        self,
        handler: Callable[[list[T]], Awaitable[None]],
        *,
        batch_size: int,
        timeout: float,
        allow_batch_overflow: bool,
        size: Callable[[T], int],
        spawn: Callable[[Awaitable[None]], "asyncio.Task[None]"],
    ) -> None:
        self._handler = handler
        self.batch_size = batch_size
        self.timeout = timeout
        self.allow_batch_overflow = allow_batch_overflow
        self._size_of = size
        self._spawn = spawn
        self._items: list[T] = []
        self._size = 0
        self._timer: Optional[asyncio.TimerHandle] = None

    def add(self, item: T) -> None:
        size = self._size_of(item)
        if self._items and not self.allow_batch_overflow and self._size + size > self.batch_size:
            self.flush()
        self._items.append(item)
        self._size += size
        if self._size >= self.batch_size:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.timeout, self.flush)

    def flush(self) -> None:
        """Send what is collected now (called on size, on timeout and on close)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return
        items, self._items, self._size = self._items, [], 0
        self._spawn(self._handler(items))

    def __len__(self) -> int:
        return len(self._items)
