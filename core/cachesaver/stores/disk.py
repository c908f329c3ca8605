"""The default store: diskcache (SQLite + files) in a directory, shared safely by processes.

Layout (every key we write starts with ``cs1:``, so one directory can also hold other data and
``clear`` removes only ours)::

    cs1:n:<key>           number of samples of <key>            (int)
    cs1:s:<key>:<i>       sample i of <key>                     (JSON bytes)
    cs1:m:<key>           canonical request JSON of <key>       (JSON bytes)
    cs1:l:<[run,ns,key]>  shared-run ledger position            (int)

Appending writes one sample row and bumps the counter inside one SQLite transaction, so it costs
the same at 1 or 100,000 samples and a crash can never leave a half-written list (G6).

No pickle, ever (G7): :class:`SafeDisk` refuses to store anything but bytes/str/int/float and
refuses to unpickle a value or key that someone planted in the directory.
"""
from __future__ import annotations

import logging
import os
from typing import Any, AsyncIterator, Optional, Sequence

import diskcache
import orjson
from diskcache.core import MODE_PICKLE

from ..errors import CorruptSampleError
from .base import LedgerEntry, Store

__all__ = ["DiskStore", "SafeDisk"]

log = logging.getLogger("cachesaver.stores.disk")

_PREFIX = "cs1:"
_LEN = "cs1:n:"
_SAMPLE = "cs1:s:"
_META = "cs1:m:"
_LEDGER = "cs1:l:"


def _count(value: Any, what: str, key: str) -> int:
    """A stored counter, checked: garbage there must name the key, not raise a bare TypeError."""
    if type(value) is not int or value < 0:
        raise CorruptSampleError(
            f"the {what} of key {key} is {value!r}, not a count CacheSaver wrote; "
            "remove the key with `cachesaver prune --key`"
        )
    return value


class ForeignKey(bytes):
    """A key in the directory that was pickled by someone else; never unpickled."""


class SafeDisk(diskcache.Disk):
    """A diskcache ``Disk`` that cannot pickle or unpickle (G7)."""

    def put(self, key: Any):  # noqa: D401 - diskcache API
        if type(key) not in (str, bytes, int, float):
            raise TypeError(f"store key {key!r} must be str, not {type(key).__name__}")
        return super().put(key)

    def get(self, key: Any, raw: bool):
        if not raw:
            return ForeignKey(bytes(key))
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN):
        if not read and type(value) not in (bytes, str, int, float):
            raise TypeError(
                f"store value for {key!r} must be bytes/str/int/float, not {type(value).__name__}"
            )
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool):
        if mode == MODE_PICKLE:
            raise CorruptSampleError(
                "refusing to unpickle a value found in the cache directory (G7): it was not "
                "written by CacheSaver; remove it with `cachesaver prune`"
            )
        return super().fetch(mode, filename, value, read)


class DiskStore(Store):
    """Sample lists and shared ledgers in a diskcache directory.

    ``DiskStore("./.cachesaver")`` or ``DiskStore(diskcache.Cache(...))`` (the seed passes one;
    we open the same directory again with :class:`SafeDisk` and eviction off, because an evicted
    sample would be a lost sample).
    """

    inline_io = True  # diskcache is synchronous: nothing here ever suspends

    def __init__(self, cache: "str | os.PathLike[str] | diskcache.Cache", *, timeout: float = 60.0):
        if isinstance(cache, diskcache.Cache):
            directory = cache.directory
        elif isinstance(cache, (str, os.PathLike)):
            directory = os.fspath(cache)
        else:
            raise TypeError(
                f"cache must be a directory path or a diskcache.Cache, not {type(cache).__name__}"
            )
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise ValueError(f"cache path {directory!r} is a file; give a directory path")
        self.location = directory
        self._cache = diskcache.Cache(
            directory, disk=SafeDisk, eviction_policy="none", timeout=timeout
        )

    @property
    def directory(self) -> str:
        return self.location

    # -- sample lists ------------------------------------------------------------------------
    def _read_sync(self, key: str, start: int, count: int) -> list[bytes]:
        get = self._cache.get
        out: list[bytes] = []
        for i in range(start, start + count):
            raw = get(f"{_SAMPLE}{key}:{i}")
            if raw is None:
                break
            out.append(raw)
        return out

    async def read(self, key: str, start: int, count: int) -> list[bytes]:
        return self._read_sync(key, start, count)

    def read_now(self, key: str, start: int, count: int) -> list[bytes]:
        # diskcache keeps one SQLite connection per thread: reads from any thread are safe.
        return self._read_sync(key, start, count)

    async def append(self, key: str, samples: Sequence[bytes], meta: Optional[bytes] = None) -> int:
        cache = self._cache
        with cache.transact(retry=True):
            start = _count(cache.get(_LEN + key, 0), "sample count", key)
            for offset, raw in enumerate(samples):
                cache.set(f"{_SAMPLE}{key}:{start + offset}", bytes(raw))
            cache.set(_LEN + key, start + len(samples))
            if meta is not None and start == 0:
                cache.set(_META + key, bytes(meta))
        return start

    async def length(self, key: str) -> int:
        return _count(self._cache.get(_LEN + key, 0), "sample count", key)

    # -- shared ledgers ----------------------------------------------------------------------
    @staticmethod
    def _ledger_key(run_id: str, namespace: str, key: str) -> str:
        return _LEDGER + orjson.dumps([run_id, namespace, key]).decode()

    async def claim(
        self, run_id: str, namespace: str, key: str, count: int, *, partial: bool
    ) -> tuple[int, list[bytes]]:
        cache = self._cache
        slot = self._ledger_key(run_id, namespace, key)
        with cache.transact(retry=True):
            pos = _count(cache.get(slot, 0), f"ledger position of {namespace!r} in run {run_id!r}", key)
            taken = self._read_sync(key, pos, count)
            if not partial and len(taken) < count:
                return pos, []
            if taken:
                cache.set(slot, pos + len(taken))
        return pos, taken

    # -- administration ----------------------------------------------------------------------
    def _keys_with(self, prefix: str) -> list[str]:
        return [k for k in self._cache.iterkeys() if isinstance(k, str) and k.startswith(prefix)]

    async def iter_keys(self) -> AsyncIterator[str]:
        for k in self._keys_with(_LEN):
            yield k[len(_LEN):]

    async def get_meta(self, key: str) -> Optional[bytes]:
        return self._cache.get(_META + key)

    def _ledger_rows(self) -> list[tuple[str, tuple[str, str, str]]]:
        """(row name, (run, namespace, key)) of every ledger row we can read; others skipped."""
        rows = []
        for name in self._keys_with(_LEDGER):
            try:
                run_id, namespace, key = orjson.loads(name[len(_LEDGER):])
                if not all(isinstance(x, str) for x in (run_id, namespace, key)):
                    raise ValueError("not three strings")
            except (orjson.JSONDecodeError, ValueError, TypeError):
                log.warning("skipping ledger row %r in %s: not written by CacheSaver", name, self.location)
                continue
            rows.append((name, (run_id, namespace, key)))
        return rows

    async def iter_ledger(self) -> AsyncIterator[LedgerEntry]:
        for name, (run_id, namespace, key) in self._ledger_rows():
            pos = self._cache.get(name)
            if type(pos) is int:
                yield run_id, namespace, key, pos
            elif pos is not None:
                log.warning("skipping ledger row %r in %s: position %r is not a count", name, self.location, pos)

    async def delete(self, key: str) -> int:
        cache = self._cache
        ledger_keys = [name for name, slot in self._ledger_rows() if slot[2] == key]
        try:
            n = _count(cache.get(_LEN + key, 0), "sample count", key)
            sample_keys = [f"{_SAMPLE}{key}:{i}" for i in range(n)]
        except CorruptSampleError:  # a garbage counter: find the samples by name instead
            sample_keys = self._keys_with(f"{_SAMPLE}{key}:")
            n = len(sample_keys)
        with cache.transact(retry=True):
            for sample_key in sample_keys:
                cache.delete(sample_key)
            cache.delete(_LEN + key)
            cache.delete(_META + key)
            for k in ledger_keys:
                cache.delete(k)
        return n

    async def clear(self) -> None:
        cache = self._cache
        for k in self._keys_with(_PREFIX):
            cache.delete(k)

    def after_fork(self) -> None:
        # diskcache keeps a connection per thread: the child's main thread would inherit the
        # parent's. A new Cache object on the same directory has none yet.
        self._cache = diskcache.Cache(self.location, disk=SafeDisk, eviction_policy="none",
                                      timeout=self._cache._timeout)

    def close(self) -> None:
        self._cache.close()

    async def aclose(self) -> None:
        self.close()
