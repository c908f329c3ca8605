"""The caller's side of a stream: live chunks from the sink, then whatever completes the stream.

A stream whose caller the engine hands the first new sample of a miss to receives the inner
model's chunks as they arrive, then a closing chunk that only adds
``response_metadata["cachesaver"]``. Any other stream (a hit, or a request merged into another's
call) replays its delivered sample as chunks. A caller that leaves after any chunk reached it has
consumed its sample; one that saw nothing takes none (``cachesaver.runtime.ChunkSink.leave``).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import AsyncIterator, Iterator, Optional

from langchain_core.outputs import ChatGenerationChunk

from cachesaver.runtime import END, STREAMED_OTHER_SAMPLE, AsyncChunkSink, ChunkSink, HostedPipeline, SyncChunkSink
from cachesaver.typedefs import Response

from ._calls import Scope, chat_result, flags
from ._codec import closing_chunk, replay_chunks, usage_metadata
from ._model import ChatRequest

__all__ = ["sync_stream", "async_stream"]

log = logging.getLogger("cachesaver.langchain")


def sync_stream(hosted: HostedPipeline, request: ChatRequest) -> Iterator[ChatGenerationChunk]:
    sink = SyncChunkSink(hosted.host)
    request = dataclasses.replace(request, sink=sink)
    future = hosted.submit(request)
    future.add_done_callback(sink.finish)
    live = False
    try:
        while (item := sink.get()) is not END:
            live = True
            sink.delivered_one()
            yield item
        response = future.result()
    finally:
        sink.leave(future)
    yield from _tail(response, request, sink, live)


async def async_stream(hosted: HostedPipeline, request: ChatRequest,
                       scope: Optional[Scope]) -> AsyncIterator[ChatGenerationChunk]:
    sink = AsyncChunkSink(hosted.host, asyncio.get_running_loop())
    request = dataclasses.replace(request, sink=sink)
    future = hosted.submit(request)
    if future.done():  # a hit, served on this thread: replay it without a round trip
        for chunk in _tail(future.result(), request, sink, live=False):
            yield chunk
        return
    future.add_done_callback(sink.finish)
    if scope is not None:
        scope.leave = lambda: sink.leave(future)
    live = False
    try:
        while (item := await sink.get()) is not END:
            live = True
            sink.delivered_one()
            yield item
        response = future.result()
    finally:
        sink.leave(future)
    for chunk in _tail(response, request, sink, live):
        yield chunk


def _tail(response: Response, request: ChatRequest, sink: ChunkSink, live: bool) -> Iterator[ChatGenerationChunk]:
    """After the live chunks (if any), what completes the caller's stream."""
    sample = response.data[0]
    if not live:
        yield from replay_chunks(chat_result(response, request).generations[0])
        return
    meta = flags(response, 0, request)
    if not (isinstance(sample, dict) and sample.get("sample_id") == sink.sample_id):
        log.warning(STREAMED_OTHER_SAMPLE, request.namespace)
        meta["streamed_other_sample"] = True
    meta["sample_usage"] = usage_metadata((response.sample_usage or [None])[0])
    yield closing_chunk(sink.list_content, meta)
