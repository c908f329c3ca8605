"""Stores keep the sample lists (and shared-run ledgers). Pick one with
:func:`cachesaver.opening.open_store` (what ``cache=`` / ``store=`` accept).

- :class:`MemoryStore`: this process only.
- :class:`DiskStore`: the default, a diskcache directory shared safely by processes on one machine.
- ``RedisStore``: many processes on many machines (``pip install "cachesaver-integrations[redis]"``).
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import InvalidRequestError, InvalidRequestTypeError
from .base import LedgerEntry, Store
from .disk import DiskStore
from .memory import MemoryStore

__all__ = ["Store", "LedgerEntry", "MemoryStore", "DiskStore", "RedisStore", "check_store_spec", "REDIS_SCHEMES"]


def __getattr__(name: str) -> Any:
    """``from cachesaver.stores import RedisStore``: imported on first use, so that
    ``import cachesaver`` never imports redis (an optional extra)."""
    if name == "RedisStore":
        try:
            from .redis import RedisStore
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "RedisStore needs the redis extra: pip install 'cachesaver-integrations[redis]'"
            ) from exc
        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: URL schemes that name a Redis server (``cache="redis://host:6379/0"``).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def check_store_spec(spec: Any, field: str = "store") -> None:
    """Refuse what :func:`cachesaver.opening.open_store` cannot open, without opening anything (adapters check
    their ``store=`` at construction, before the first call)."""
    if isinstance(spec, Store):
        return
    if isinstance(spec, (str, os.PathLike)):
        if not os.fspath(spec):
            raise InvalidRequestError(f"{field} is empty; give a directory such as './.cachesaver'")
        return
    try:
        import diskcache
    except ImportError:  # pragma: no cover
        diskcache = None  # type: ignore[assignment]
    if diskcache is not None and isinstance(spec, diskcache.Cache):
        return
    raise InvalidRequestTypeError(
        f"{field} has type {type(spec).__name__}; pass a directory path, a diskcache.Cache, "
        "'memory', a 'redis://...' URL or a cachesaver Store"
    )
