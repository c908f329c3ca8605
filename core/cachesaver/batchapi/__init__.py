"""Batch mode: misses through a provider Batch API (about half price), never paid twice or lost.

``OnlineAPI(model, cache, batch_api=BatchAPI(backend, window=1.0))``: hits are served at once as
always; the engine plans misses exactly as in interactive mode (one call per key asking only the
missing count, merged across namespaces), and each such call becomes one line of a provider
batch. See :mod:`.collector` for the path of a miss and :mod:`.journal` for how a restart finds
and collects batches a dead process submitted. ``cachesaver_litellm`` provides the backend for
litellm's files and batches API.
"""
from __future__ import annotations

from .backend import (
    BatchBackend,
    BatchLineError,
    BatchNotAnsweredError,
    BatchStatus,
    BatchUnsupportedError,
    CreationReplyLost,
    LineResult,
)
from .collector import BatchAPI, BatchCollector
from .journal import BatchJournal, BatchRecord, LineRecord, MemoryJournal

__all__ = [
    "BatchAPI",
    "BatchCollector",
    "BatchBackend",
    "BatchStatus",
    "LineResult",
    "BatchUnsupportedError",
    "BatchLineError",
    "BatchNotAnsweredError",
    "CreationReplyLost",
    "BatchJournal",
    "BatchRecord",
    "LineRecord",
    "MemoryJournal",
]
