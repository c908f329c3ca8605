"""CacheSaver: namespace-aware sample caching for LLM experiments.

Within a namespace every stored sample is handed out once (fresh i.i.d. samples); across
namespaces and runs samples are reused (free, exact replays). Concurrent requests are batched,
identical ones merged into one ``n=k`` call, and only missing samples are ever generated.

This package imports neither litellm nor langchain (the adapters live in ``cachesaver_litellm``
and ``cachesaver_langchain``), and its top-level names load lazily (PEP 562): ``import
cachesaver`` costs a few milliseconds; asyncio and diskcache load with the pipelines.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Request": "typedefs",
    "Response": "typedefs",
    "Batch": "typedefs",
    "Usage": "typedefs",
    "SingleRequestModel": "typedefs",
    "BatchRequestModel": "typedefs",
    "unkeyed": "typedefs",
    "OnlineAPI": "pipelines",
    "LocalAPI": "pipelines",
    "Stats": "stats",
    "Store": "stores",
    "MemoryStore": "stores",
    "DiskStore": "stores",
    "open_store": "opening",
    "make_key": "keys",
    "request_key": "keys",
    "CacheSaverError": "errors",
    "InvalidRequestError": "errors",
    "InvalidRequestTypeError": "errors",
    "DuplicateRequestIdError": "errors",
    "NotSerializableError": "errors",
    "ModelOutputError": "errors",
    "CorruptSampleError": "errors",
    "StoreError": "errors",
    "PipelineClosedError": "errors",
    "Generation": "generation",
    "current_generation": "generation",
}

__all__ = [*_EXPORTS, "__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .errors import (
        CacheSaverError,
        CorruptSampleError,
        DuplicateRequestIdError,
        InvalidRequestError,
        InvalidRequestTypeError,
        ModelOutputError,
        NotSerializableError,
        PipelineClosedError,
        StoreError,
    )
    from .generation import Generation, current_generation
    from .keys import make_key, request_key
    from .opening import open_store
    from .pipelines import LocalAPI, OnlineAPI
    from .stats import Stats
    from .stores import DiskStore, MemoryStore, Store
    from .typedefs import Batch, BatchRequestModel, Request, Response, SingleRequestModel, Usage, unkeyed
