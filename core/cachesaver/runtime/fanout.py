"""The base of every adapter's model: ``n`` samples from one provider call, or from ``n`` calls.

The engine asks a model for ``n`` = the missing count only. Providers that accept ``n`` (OpenAI,
ChatOpenAI) get one call with ``n=m``; the others (Anthropic, most local servers) get ``m``
concurrent calls without it. A fan-out call that fails while others succeed costs only its own
sample: the samples that arrived are returned (and stored), the engine asks again for the rest,
and no caller gets fewer samples than it asked for. Only when every call fails does the error
reach the waiting callers (G5).

Live streaming: when the cacher's first new sample is due to a caller that streams
(:func:`cachesaver.generation.current_generation`) and only one sample is missing, the model
streams that call into the caller's sink (:mod:`cachesaver.runtime.sink`) and stores the whole
result. With more missing samples the call is not streamed: one ``n=k`` call (G3) beats a
stream, and the stream is replayed from the store.

Subclasses implement :meth:`native_n` and :meth:`call` (and :meth:`stream_call` to stream).
Samples come back with the call's :class:`~cachesaver.typedefs.Usage`; the engine splits it over
the samples (one policy: :meth:`Usage.split`), so adapters never split usage themselves.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

from ..checks import MAX_CONCURRENT_CALLS, MAX_FANOUT, check_call_bound
from ..generation import Generation, current_generation
from ..keypolicy import MODEL_IN_REQUEST
from ..typedefs import Request, Response, SingleRequestModel, Usage, merge_responses
from .sink import ChunkSink

__all__ = ["FanOutModel", "sink_of"]

log = logging.getLogger("cachesaver.runtime.fanout")


def sink_of(request: Optional[Request]) -> Optional[ChunkSink]:
    """The live-chunk sink a streaming caller attached to its request (adapters' ``sink`` field)."""
    sink = getattr(request, "sink", None)
    return sink if isinstance(sink, ChunkSink) else None


class FanOutModel(SingleRequestModel):
    """A provider behind an adapter (see the module docstring)."""

    #: Adapters' requests name their model in their own keyed fields (cachesaver.keypolicy).
    model_id: Any = MODEL_IN_REQUEST
    #: Provider calls one fan-out makes at once (a provider without ``n`` answers one sample per
    #: call): a request for many samples is spread over time, not sent as that many calls at once.
    max_fanout: int = MAX_FANOUT
    #: Provider calls this model makes at once, whatever the requests (G2: bounded cost in flight).
    max_concurrent_calls: int = MAX_CONCURRENT_CALLS
    _gate: Optional[asyncio.Semaphore] = None
    #: Provider calls made, and how many failed (for tests and stats; one per HTTP request).
    real_calls: int = 0
    failed_real_calls: int = 0

    def set_call_bounds(self, max_fanout: Optional[int] = None, max_concurrent_calls: Optional[int] = None) -> None:
        """Set this model's bounds on provider calls in flight (an adapter's ``max_fanout=`` and
        ``max_concurrent_calls=``), before its first call: at most ``max_fanout`` calls for one
        request's samples, at most ``max_concurrent_calls`` for all of them together."""
        if max_fanout is not None:
            self.max_fanout = check_call_bound(max_fanout, "max_fanout", MAX_FANOUT)
        if max_concurrent_calls is not None:
            self.max_concurrent_calls = check_call_bound(max_concurrent_calls, "max_concurrent_calls",
                                                         MAX_CONCURRENT_CALLS)
            self._gate = None  # made again, with the new bound, on the next call

    # -- what an adapter implements --------------------------------------------------------------
    def native_n(self, request: Request) -> bool:
        """Whether one provider call can return ``request.n`` samples."""
        raise NotImplementedError

    async def call(self, request: Request, n: Optional[int]) -> tuple[list[Any], Usage]:
        """One provider call: its samples (JSON) and what it billed. ``n=None``: do not send n."""
        raise NotImplementedError

    def can_stream(self, request: Request) -> bool:
        """Whether :meth:`stream_call` can serve ``request`` (default: no live streaming)."""
        return False

    async def stream_call(self, request: Request, sink: ChunkSink) -> tuple[list[Any], Usage]:
        """One streamed provider call whose chunks go to ``sink``: one sample and its usage."""
        raise NotImplementedError

    def describe(self, request: Request) -> str:
        """What to call the provider in logs (never a secret)."""
        return type(self).__name__

    # -- the engine's model interface ------------------------------------------------------------
    async def request(self, request: Request) -> Response:
        m = request.n
        if m == 1:
            generation = current_generation()
            sink = self._live_sink(generation)
            if sink is not None and generation is not None and self.can_stream(request):
                generation.streamed_live()  # (the caller shown this sample is handed it: G1)
                sink.fed = True
                samples, usage = await self._counted(self.stream_call(request, sink))
                return Response(data=samples, usage=usage)
        if self.native_n(request):
            samples, usage = await self._counted(self.call(request, m))
            return Response(data=samples, usage=usage)
        fanout = asyncio.Semaphore(self.max_fanout)

        async def one() -> Any:
            async with fanout:
                return await self._counted(self.call(request, None))

        outcomes = await asyncio.gather(*(one() for _ in range(m)), return_exceptions=True)
        done = [o for o in outcomes if not isinstance(o, BaseException)]
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if not done:
            raise errors[0]
        if errors:
            # The type only: provider messages can echo request details, even credentials.
            log.warning("%d of %d calls to %s failed (%s); the engine asks again for the rest",
                        len(errors), m, self.describe(request), type(errors[0]).__name__)
        return merge_responses([Response(data=samples, usage=call_usage) for samples, call_usage in done])

    async def _counted(self, call: Any) -> Any:
        gate = self._gate
        if gate is None:  # made on the engine's loop, on first use (a forked child builds a new model)
            gate = self._gate = asyncio.Semaphore(self.max_concurrent_calls)
        async with gate:
            self.real_calls += 1
            try:
                return await call
            except BaseException:
                self.failed_real_calls += 1
                raise

    @staticmethod
    def _live_sink(generation: Optional[Generation]) -> Optional[ChunkSink]:
        """The sink of the caller this call's one sample is due to, if it streams."""
        if generation is None or generation.count != 1:
            return None
        sink = sink_of(generation.first_receiver)
        # One live sample per stream: a caller already streamed one (in a shared run, another
        # process claimed it first and the engine generates again for this caller) is handed
        # the new sample whole, never a second sample's chunks after the first one's.
        return sink if sink is not None and not sink.fed else None
