"""The engine runtime: what every adapter uses to run the engine, and nothing adapter-specific.

- :mod:`.host`: the process's one engine loop (fork-aware, closed cleanly at exit);
- :mod:`.hosted`: :class:`HostedPipeline`, an adapter instance's pipeline on that loop, with
  sync, async and streaming entry points and full hits served on the caller's own thread;
- :mod:`.identity`: a call's namespace, request id and ``n``, read and checked one way;
- :mod:`.fanout`: :class:`FanOutModel`, the base of adapters' models (native ``n`` or ``n``
  calls, partial failures, live streaming to the first receiver);
- :mod:`.sink`: live chunks from the engine's loop to a streaming caller.

An adapter is then conversion and wiring: build a ``Request`` from a framework call, turn
samples into framework objects, and glue the framework's entry points to a ``HostedPipeline``.
"""
from __future__ import annotations

from .fanout import FanOutModel, sink_of
from .host import EngineHost, get_host
from .hosted import HostedPipeline, PipelineSettings
from .identity import NAMESPACE_KEY, REQUEST_ID_KEY, check_n, check_namespace, read_identity, warn_unknown_keys
from .sink import END, STREAMED_OTHER_SAMPLE, AsyncChunkSink, ChunkSink, SyncChunkSink

__all__ = [
    "EngineHost",
    "get_host",
    "HostedPipeline",
    "PipelineSettings",
    "FanOutModel",
    "sink_of",
    "ChunkSink",
    "STREAMED_OTHER_SAMPLE",
    "AsyncChunkSink",
    "SyncChunkSink",
    "END",
    "NAMESPACE_KEY",
    "REQUEST_ID_KEY",
    "read_identity",
    "warn_unknown_keys",
    "check_n",
    "check_namespace",
]
