"""Helpers for tests of live streams at the engine level (imported by module name, like conftest):
a request with a live-chunk sink, and an adapter's model (a ``FanOutModel``) that streams."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from cachesaver.generation import current_generation
from cachesaver.runtime import ChunkSink, FanOutModel
from cachesaver.typedefs import Request, Usage, unkeyed


@dataclass(frozen=True)
class StreamingAsk(Request):
    """A request whose caller streams (its live-chunk sink, as the adapters attach one)."""

    sink: Any = unkeyed(default=None)


class StreamsLive(FanOutModel):
    """An adapter's model whose samples are ``"sample <k>"`` (k: its k-th sample made), with
    the live path adapters use: a call whose first sample is due to a streaming caller is a
    stream into that caller's sink (``shown`` records which sink was shown which sample). Its
    first ``gated`` samples wait for ``gates[0]``, ``gates[1]``, ...; with ``hold_stored`` its
    first streamed call pauses once its sample is stored, before the engine hands it out
    (``stored`` is set, then it waits for ``release``)."""

    model_id = "test/streams-live"

    def __init__(self, gated: int = 2, hold_stored: bool = False) -> None:
        self.gates = [asyncio.Event() for _ in range(gated)]
        self.entered = [asyncio.Event() for _ in range(gated)]
        self.made = 0
        self.shown: list[tuple[ChunkSink, str]] = []
        self.stored = asyncio.Event()
        self.release = asyncio.Event()
        self._hold = hold_stored

    def native_n(self, request):
        return True

    def can_stream(self, request):
        return True

    async def _sample(self) -> str:
        k, self.made = self.made, self.made + 1
        if k < len(self.gates):
            self.entered[k].set()
            await self.gates[k].wait()
        return f"sample {k}"

    async def call(self, request, n):
        return [await self._sample() for _ in range(n or 1)], Usage()

    async def stream_call(self, request, sink):
        if self._hold and not self.shown:
            async def held(_start: int) -> None:
                self.stored.set()
                await self.release.wait()

            current_generation().when_stored(held)
        sample = await self._sample()
        self.shown.append((sink, sample))
        return [sample], Usage()
