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

__all__ = ["Store", "LedgerEntry", "MemoryStore", "DiskStore", "RedisStore", "check_store_spec", "check_url_attempt",
           "REDIS_SCHEMES"]


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
#: How each of those is written, for errors.
_URL_EXAMPLES = {
    "redis": "redis://host:port/db (e.g. redis://127.0.0.1:6379/0)",
    "rediss": "rediss://host:port/db (e.g. rediss://cache.example.com:6380/0)",
    "unix": "unix:///path/to/redis.sock?db=0",
}


def check_url_attempt(spec: Any, field: str = "store") -> None:
    """Refuse a ``str`` that begins with one of :data:`REDIS_SCHEMES`' names and a colon but is
    not such a URL (``"redis:/oops"``, ``"Redis://host"``, ``"unix:/tmp/r.sock"``), which would
    otherwise become a local directory of that name. Only the URL scheme syntax is read (a name
    we know, then ``:``), so ``C:/data`` or ``./redis:x`` stay paths, as does any ``os.PathLike``.
    The message does not repeat the value (a malformed URL may hold a password)."""
    if not isinstance(spec, str) or spec.startswith(REDIS_SCHEMES):
        return
    scheme, colon, _rest = spec.partition(":")
    if colon and scheme.lower() in _URL_EXAMPLES:
        raise InvalidRequestError(
            f"{field} starts with {scheme + ':'!r} but is not a {scheme.lower()}:// URL: write "
            f"{_URL_EXAMPLES[scheme.lower()]}; for a local directory of that name, prefix it with './' "
            "or pass a pathlib.Path")


def check_store_spec(spec: Any, field: str = "store") -> None:
    """Refuse what :func:`cachesaver.opening.open_store` cannot open, without opening anything (adapters check
    their ``store=`` at construction, before the first call)."""
    if isinstance(spec, Store):
        return
    if isinstance(spec, (str, os.PathLike)):
        if not os.fspath(spec):
            raise InvalidRequestError(f"{field} is empty; give a directory such as './.cachesaver'")
        check_url_attempt(spec, field)
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
