"""Stores keep the sample lists (and shared-run ledgers). Pick one with :func:`open_store`.

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
from .urls import redact_url

__all__ = ["Store", "LedgerEntry", "MemoryStore", "DiskStore", "RedisStore", "open_store", "check_store_spec"]


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

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def check_store_spec(spec: Any, field: str = "store") -> None:
    """Refuse what :func:`open_store` cannot open, without opening anything (adapters check
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


def open_store(spec: Any) -> Store:
    """Turn what users pass as ``cache=`` / ``store=`` into a :class:`Store`.

    Accepts a ``Store``, a ``diskcache.Cache``, ``"memory"``, a ``redis://host:port/db`` URL,
    a directory path (created if missing), or a bundle file (opened read-only, see
    :mod:`cachesaver.bundle`).
    """
    if isinstance(spec, Store):
        return spec
    if spec is None:
        raise TypeError(
            "cache is required: pass a directory path (e.g. './.cachesaver'), a diskcache.Cache, "
            "'memory', a 'redis://...' URL or a cachesaver store"
        )
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if text in ("memory", ":memory:"):
            return MemoryStore()
        if text.startswith(_REDIS_SCHEMES):
            try:
                from .redis import RedisStore
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError(
                    f"cache={redact_url(text)!r} needs the redis extra: pip install 'cachesaver-integrations[redis]'"
                ) from exc
            return RedisStore(text)
        if not text:
            raise ValueError("cache path is empty; give a directory such as './.cachesaver'")
        if os.path.isfile(text):
            from ..bundle import BundleStore, is_bundle_file

            if is_bundle_file(text):  # a published bundle: read-only, verified
                return BundleStore(text)
        return DiskStore(text)
    try:
        import diskcache
    except ImportError:  # pragma: no cover
        diskcache = None  # type: ignore[assignment]
    if diskcache is not None and isinstance(spec, diskcache.Cache):
        return DiskStore(spec)
    raise TypeError(
        f"cache has type {type(spec).__name__}; pass a directory path, a diskcache.Cache, "
        "'memory', a 'redis://...' URL or a cachesaver Store"
    )
