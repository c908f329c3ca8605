"""What ``cache=`` / ``store=`` accept, opened as a :class:`~cachesaver.stores.Store`.

This sits above both the stores and the bundles, so neither knows the other: a path may name a
directory (a :class:`~cachesaver.stores.DiskStore`) or a published bundle file (a read-only
:class:`~cachesaver.bundle.BundleStore`), and only this module decides which.
"""
from __future__ import annotations

import os
from typing import Any

from .stores import REDIS_SCHEMES, DiskStore, MemoryStore, Store, check_url_attempt
from .stores.urls import redact_url

__all__ = ["open_store"]


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
        check_url_attempt(spec, "cache= / store=")  # "redis:/oops" is a mistyped URL, not a directory name
        if text.startswith(REDIS_SCHEMES):
            try:
                from .stores.redis import RedisStore
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError(
                    f"cache={redact_url(text)!r} needs the redis extra: pip install 'cachesaver-integrations[redis]'"
                ) from exc
            return RedisStore(text)
        if not text:
            raise ValueError("cache path is empty; give a directory such as './.cachesaver'")
        if os.path.isfile(text):
            from .bundle.store import BundleStore, is_bundle_file

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
