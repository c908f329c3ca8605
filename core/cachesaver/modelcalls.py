"""The model calls a pipeline has in flight, and the moment it stops starting new ones.

Why: a model call that has been sent is paid for. If the process ends before its samples are
appended, they are lost (paid, never replayed). At exit the runtime therefore waits for the
calls already sent (:meth:`ModelCalls.drain`) and refuses to start new ones
(:meth:`ModelCalls.refuse`): a generation is either stored or never billed
(see :mod:`cachesaver.runtime.host`).

A call counts as in flight from just before the model is asked until its samples are appended
(or it failed). Only the engine's loop touches this object.
"""
from __future__ import annotations

import asyncio
import itertools
from typing import Optional

__all__ = ["ModelCalls"]


class ModelCalls:
    """In-flight model calls of one cacher, and whether new ones may start.

    ``start()``/``end(token)`` around each call cost a set insert and removal (no future per
    call: misses are the engine's hot path too); only :meth:`drain` makes a future.
    """

    def __init__(self) -> None:
        self._numbers = itertools.count()
        self._active: set[int] = set()
        self._drains: list[tuple[set[int], "asyncio.Future[None]"]] = []
        #: Set by :meth:`refuse`: the error every generation that would start a call gets.
        self.refused: Optional[Exception] = None

    def refuse(self, error: Exception) -> None:
        """From now on no model call starts; generations that need one fail with ``error``."""
        self.refused = error

    @property
    def in_flight(self) -> int:
        return len(self._active)

    def start(self) -> int:
        """A call is about to be sent; pass the returned token to :meth:`end`."""
        token = next(self._numbers)
        self._active.add(token)
        return token

    def end(self, token: int) -> None:
        """The call's samples are stored (or it failed)."""
        self._active.discard(token)
        if self._drains:
            waiting = []
            for wanted, done in self._drains:
                if not wanted.isdisjoint(self._active):
                    waiting.append((wanted, done))
                elif not done.done():
                    done.set_result(None)
            self._drains = waiting

    async def drain(self) -> None:
        """Return once every call in flight now has ended (calls started later are not waited
        for; the caller bounds the wait)."""
        if not self._active:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drains.append((set(self._active), done))
        await done
