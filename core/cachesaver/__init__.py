"""CacheSaver: namespace-aware sample caching for LLM experiments.

Within a namespace every stored sample is handed out once (fresh i.i.d. samples); across
namespaces and runs samples are reused (free, exact replays). Concurrent requests are batched,
identical ones merged into one ``n=k`` call, and only missing samples are ever generated.

This package imports neither litellm nor langchain; the adapters live in ``cachesaver_litellm``
and ``cachesaver_langchain``.
"""
from __future__ import annotations

from .errors import CacheSaverError
from .keys import make_key, request_key
from .pipelines import LocalAPI, OnlineAPI
from .stats import Stats
from .stores import DiskStore, MemoryStore, Store, open_store
from .typedefs import Batch, BatchRequestModel, Request, Response, SingleRequestModel, Usage, unkeyed

__version__ = "0.1.0"

__all__ = [
    "Request",
    "Response",
    "Batch",
    "Usage",
    "SingleRequestModel",
    "BatchRequestModel",
    "unkeyed",
    "OnlineAPI",
    "LocalAPI",
    "Stats",
    "Store",
    "MemoryStore",
    "DiskStore",
    "open_store",
    "make_key",
    "request_key",
    "CacheSaverError",
    "__version__",
]
