"""The caller's side of a ``cachesaver/`` stream: live chunks of a miss, or a replayed sample.

The engine hands the first new sample of a miss to one caller; when that caller streams, the
real call is streamed into its sink as the provider sends it (time to first token of a miss is
the provider's) and stored whole when it ends, even if the caller stops reading. Every other
stream (a hit, or a request merged into another's call) replays its delivered sample as chunks.
A caller that leaves after any chunk reached it has consumed its sample; one that saw nothing
takes none (:meth:`cachesaver.runtime.ChunkSink.leave`).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, AsyncIterator, Callable, Iterator

from cachesaver.runtime import END, STREAMED_OTHER_SAMPLE, AsyncChunkSink, ChunkSink, HostedPipeline, SyncChunkSink
from cachesaver.typedefs import Response

from ._backend import LiteLLMRequest
from ._refusals import refusals_as_bad_request
from ._samples import stream_chunks, with_usage

__all__ = ["async_stream", "sync_stream"]

log = logging.getLogger("cachesaver.litellm.streams")

Finish = Callable[[Response], Any]


def async_stream(hosted: HostedPipeline, request: LiteLLMRequest, finish: Finish,
                 on_miss: Callable[[], None]) -> AsyncIterator[Any]:
    """The stream of one ``astreaming`` call. The store is checked *now*: a hit is finished
    before the first chunk is asked for (the LiteLLM Proxy sends its response headers, which
    say whether it was a hit, before it reads the stream), and ``on_miss()`` says at once that
    it is not; a miss starts when read."""
    begun = hosted.begin(request)
    if begun.response is not None:
        return _replay(stream_chunks(finish(begun.response)))
    on_miss()
    return _live(hosted, begun, request, finish)


async def _replay(chunks: Iterator[Any]) -> AsyncIterator[Any]:
    for chunk in chunks:
        yield chunk


async def _live(hosted: HostedPipeline, begun: Any, request: LiteLLMRequest, finish: Finish) -> AsyncIterator[Any]:
    with refusals_as_bad_request(request.model):  # an offline miss, found when read
        sink = AsyncChunkSink(hosted.host, asyncio.get_running_loop())
        request = dataclasses.replace(request, sink=sink)
        future = begun.submit(request)
        future.add_done_callback(sink.finish)
        tail = _Tail()
        try:
            while (item := await sink.get()) is not END:
                for chunk in tail.push(item):
                    sink.delivered_one()
                    yield chunk
            result = future.result()
        finally:
            sink.leave(future)
    for chunk in tail.close(result, request, sink, finish):
        yield chunk


def sync_stream(hosted: HostedPipeline, request: LiteLLMRequest, finish: Finish) -> Iterator[Any]:
    with refusals_as_bad_request(request.model):  # an offline miss, found when read
        sink = SyncChunkSink(hosted.host)
        request = dataclasses.replace(request, sink=sink)
        future = hosted.submit(request)
        future.add_done_callback(sink.finish)
        tail = _Tail()
        try:
            while (item := sink.get()) is not END:
                for chunk in tail.push(item):
                    sink.delivered_one()
                    yield chunk
            result = future.result()
        finally:
            sink.leave(future)
    yield from tail.close(result, request, sink, finish)


class _Tail:
    """Holds back the end of a live stream (its finish chunks and the content chunk before them)
    until the engine's answer arrives: the caller's usage then rides on that last content chunk,
    where litellm's stream wrapper reads it. Everything before goes out as it arrives."""

    def __init__(self) -> None:
        self.live = False
        self._held: list[Any] = []

    def push(self, chunk: Any) -> list[Any]:
        self.live = True
        if _finishes(chunk):
            self._held.append(chunk)
            return []
        out, self._held = self._held, [chunk]
        return out

    def close(self, result: Response, request: LiteLLMRequest, sink: ChunkSink, finish: Finish) -> list[Any]:
        response = finish(result)  # also hands the flags to litellm's logging of this stream
        if not self.live:
            return list(stream_chunks(response))
        sample = result.data[0] if result.data else None
        if not (isinstance(sample, dict) and sample.get("id") == sink.sample_id):
            log.warning(STREAMED_OTHER_SAMPLE, request.namespace)
        held = self._held
        content = [i for i, chunk in enumerate(held) if not _finishes(chunk)]
        if content:
            held[content[-1]] = with_usage(held[content[-1]], response.usage)
        return held


def _finishes(chunk: Any) -> bool:
    choices = getattr(chunk, "choices", None)
    return bool(choices) and choices[0].finish_reason is not None
