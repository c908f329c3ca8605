"""The generation lease of a directory store: one byte-range lock per key, across processes.

Why: processes that share a directory and miss the same key at the same time would each pay
for the missing samples (over-generation, G2), and the flags would lie (G8: a process would
report as cached the samples another one paid for, while its own stay unclaimed). Whoever
holds a key's lease generates; the others wait, then re-read the list and find the samples.

How: the lease of a key is an exclusive POSIX record lock on one byte of a lock file, at an
offset hashed from the key; the keys are spread over ``STRIPES`` files in ``cachesaver.locks/``
(the kernel scans a file's held locks on every request, so one file holding the leases of
thousands of keys generating at once would make each acquisition cost ~100 us). The kernel releases a process's
record locks when it dies, whatever the cause (``kill -9`` included), so a crashed holder can
never wedge the others and nothing needs to expire. A live holder that is stuck (a model call
that never returns) makes waiters give up after ``max_wait`` seconds; they then generate
anyway: the lease only prevents paying twice, correctness (G1, G6) never depends on it.

Record locks belong to a process, so inside one process a set of held keys makes tasks and
threads wait for each other too. Acquiring
and releasing a free lease is two system calls, no SQL. Waiting polls (1 ms doubling to 50 ms),
never blocking the event loop. Where ``fcntl`` does not exist (Windows) leases exclude tasks
and threads of one process only. Local file systems only (record locks on network file systems
are unreliable, and SQLite is not safe there either).
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
from typing import Any, Optional

__all__ = ["DiskLease", "LOCK_DIR", "STRIPES"]

log = logging.getLogger("cachesaver.stores.disk")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no record locks; leases hold in-process only
    fcntl = None  # type: ignore[assignment]

LOCK_DIR = "cachesaver.locks"
STRIPES = 128

_mutex = threading.Lock()
_files: dict[str, list[int]] = {}         # lock file -> [descriptor, users], for this process
_held: set[tuple[str, int]] = set()       # (lock file, offset) held by a task of this process
_owner_pid = os.getpid()


def _slot(key: str) -> tuple[int, int]:
    """(stripe, byte offset) of ``key``'s lease."""
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=7).digest(), "big")
    return h % STRIPES, h


class DiskLease:
    """Per-key generation leases for the processes that share ``directory``."""

    def __init__(self, directory: str, *, max_wait: float) -> None:
        self.path = os.path.join(directory, LOCK_DIR)
        self.max_wait = max_wait
        self._paths = [os.path.join(self.path, str(i)) for i in range(STRIPES)]
        #: Lock files this lease keeps open, and the process that opened them.
        self._kept: dict[str, int] = {}

    def hold(self, key: str) -> "_Hold":
        """``async with lease.hold(key): ...`` holds ``key``'s lease while the body runs."""
        return _Hold(self, key)

    def close(self) -> None:
        """Let go of the lock files this lease kept open (the store is closing)."""
        kept, self._kept = self._kept, {}
        for path, pid in kept.items():
            if pid == os.getpid():
                self._done(path)

    # -- the lock files ----------------------------------------------------------------------
    # A descriptor counts its users: each lease (store) that used the file, until it closes,
    # and each acquisition in progress. It is closed when the count drops to zero, never while
    # a lock on it is held (closing would drop the lock), so a process that is done with a
    # directory keeps no descriptor of it.
    def _open(self, stripe: int, offset: int) -> tuple[Optional[str], bool]:
        """Open (or count another user of) ``stripe``'s lock file and try the lease once, under
        one hold of the mutex: (the file, or None if it cannot be opened; whether acquired)."""
        global _owner_pid
        path = self._paths[stripe]
        pid = os.getpid()
        with _mutex:
            if pid != _owner_pid:  # a forked child inherits no record lock
                for fd, _ in _files.values():
                    with contextlib.suppress(OSError):
                        os.close(fd)
                _files.clear()
                _held.clear()
                _owner_pid = pid
            entry = _files.get(path)
            if entry is None:
                try:
                    try:
                        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                    except FileNotFoundError:
                        os.makedirs(self.path, exist_ok=True)
                        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                except OSError as exc:
                    log.warning("no generation lease in %s (%s): processes sharing it may pay "
                                "twice for samples missed at the same moment", self.path, exc)
                    return None, False
                entry = _files[path] = [fd, 0]
            entry[1] += 1  # this acquisition
            if self._kept.get(path) != pid:
                self._kept[path] = pid
                entry[1] += 1  # this lease keeps it open until it closes
            return path, _try_held(path, offset)

    @staticmethod
    def _done(path: str, offset: Optional[int] = None) -> None:
        """One user less of ``path``; with ``offset``, release that lease first (one mutex hold)."""
        with _mutex:
            if offset is not None:
                _held.discard((path, offset))
                try:
                    if fcntl is not None:
                        fcntl.lockf(_files[path][0], fcntl.LOCK_UN, 1, offset)
                except (OSError, KeyError) as exc:  # pragma: no cover - we hold it: cannot fail
                    log.warning("could not release a generation lease in %s: %s", path, exc)
            entry = _files.get(path)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del _files[path]
                with contextlib.suppress(OSError):
                    os.close(entry[0])

    @staticmethod
    def _try(path: str, offset: int) -> bool:
        with _mutex:
            return _try_held(path, offset)


def _try_held(path: str, offset: int) -> bool:
    """Try ``(path, offset)``'s lease once; the caller holds ``_mutex``."""
    if (path, offset) in _held:
        return False
    try:
        if fcntl is not None:
            fcntl.lockf(_files[path][0], fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
    except OSError:  # EAGAIN / EACCES: another process holds it
        return False
    _held.add((path, offset))
    return True


class _Hold:
    """The async context manager of one acquisition (a class: cheaper than a generator)."""

    __slots__ = ("lease", "key", "path", "offset", "acquired", "waited")

    def __init__(self, lease: DiskLease, key: str) -> None:
        self.lease = lease
        self.key = key
        self.path: Optional[str] = None
        self.offset = 0
        self.acquired = False
        self.waited = 0.0

    async def __aenter__(self) -> "_Hold":
        lease = self.lease
        stripe, self.offset = _slot(self.key)
        path, self.acquired = lease._open(stripe, self.offset)
        self.path = path
        if path is None or self.acquired:
            return self
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = 0.001
        try:
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
                if lease._try(path, self.offset):
                    self.acquired = True
                    break
                if loop.time() - started >= lease.max_wait:
                    log.warning("gave up waiting %.0fs for the generation lease of key %s in %s; "
                                "generating without it", lease.max_wait, self.key, lease.path)
                    break
        except BaseException:
            lease._done(path)
            self.path = None
            raise
        self.waited = loop.time() - started
        return self

    async def __aexit__(self, *exc: Any) -> None:
        path, self.path = self.path, None
        if path is None:
            return
        if self.acquired:
            self.acquired = False
            self.lease._done(path, self.offset)
        else:
            self.lease._done(path)
