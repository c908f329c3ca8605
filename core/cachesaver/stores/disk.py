"""The default store: SQLite tables in a diskcache directory, shared safely by processes.

Layout: three tables of our own inside the directory's ``cache.db`` (the file a
``diskcache.Cache`` on that directory uses)::

    cachesaver_keys     (key, count, meta,      one row per key: its sample count and request JSON,
                         bytes, bytes_n)        and the bytes of its first bytes_n samples
    cachesaver_samples  (key, idx, value)       sample ``idx`` of ``key`` (JSON bytes)
    cachesaver_ledger   (run, ns, key, pos)     shared-run ledger positions
    cachesaver_ids      (key, ns, rid, pos, n)  the positions each request id took (replays by id)
    cachesaver_holes    (run, ns, key, pos)     shared-run positions below the ledger's left free
    cachesaver_unbilled (run, key, idx)         shared-run samples generated and not yet billed

Why tables of our own rather than diskcache entries: diskcache's eviction (every ``Cache`` has
a size limit and an eviction policy, 1 GB and least-recently-stored by default) only ever
deletes from diskcache's own ``Cache`` table, so a user who passes their own ``diskcache.Cache``
and stores other data in it can never evict a sample (G6, G4); an append is one short SQL
transaction instead of a dozen statements with culling and statistics triggers; and the store
can be opened without writing anything (diskcache's constructor writes its settings), which is
what read-only commands and read-only media need.

Guarantees:

- ``append`` is one transaction (``append_many``: one for several keys), so a crash never leaves
  a half-written list and appends cost the same at 1 or 100,000 samples (G6).
- Nothing is created or written until the first write: ``stats``/``inspect``/``export`` and a
  replay that only hits change nothing in the directory.
- Read-only mode (``read_only=True``, or automatic when the directory or ``cache.db`` is not
  writable) replays what is stored; a miss fails at once with :class:`StoreError`.
- Every SQLite failure becomes a :class:`StoreError` naming the path and the fix. After a failed
  write (disk full, read-only, corrupt) the store refuses new generations at once, so no more
  samples are paid for and then thrown away.
- A directory deleted or replaced while the store is open is noticed before the next write (and
  before a generation, so nothing is paid for): :class:`StoreError` naming the directory, never
  a sample written into an unlinked file.
- :meth:`DiskStore.generation_lease` coordinates processes on one directory (see
  :mod:`cachesaver.stores.disklease`), so they do not pay for the same samples twice (G2).

Values are bytes we wrote (JSON records), never pickles (G7).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from typing import Any, AsyncIterator, Callable, Iterator, Optional, Sequence, TypeVar

from ..errors import CorruptSampleError, StoreError
from .base import LedgerEntry, Store
from .disklease import DiskLease
from .totals import KeyTotals

__all__ = ["DiskStore", "DB_FILE"]

T = TypeVar("T")

log = logging.getLogger("cachesaver.stores.disk")

#: The SQLite file inside the directory (the same file diskcache uses, so one path is one cache).
DB_FILE = "cache.db"

#: What each row costs (``python benchmarks/bench_disk_bytes.py`` prints it per table):
#:
#: - ``cachesaver_samples``: one row per sample (key, index, encoded sample) plus SQLite's
#:   automatic index on ``(key, idx)``, which repeats the 64-character key. It stays a rowid
#:   table: an LLM answer is often over 1 kB, and a ``WITHOUT ROWID`` row that long spills into an
#:   overflow page of its own (most of 4 kB wasted) where a rowid row stays in its page.
#: - ``cachesaver_keys``: one row per key (count, the request's meta once, byte totals) plus its
#:   automatic index; the meta holds the whole prompt, so it stays a rowid table too.
#: - ``cachesaver_ledger``, ``cachesaver_ids``, ``cachesaver_holes``, ``cachesaver_unbilled``:
#:   short rows whose primary key is nearly the whole row, so they are ``WITHOUT ROWID`` (each
#:   row stored once instead of twice; -89 B per sample for n=1 requests with request ids).
#:   A store created before keeps its rowid tables: both layouts answer the same statements.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cachesaver_keys (
    key TEXT PRIMARY KEY, count INTEGER NOT NULL, meta BLOB,
    bytes INTEGER NOT NULL DEFAULT 0, bytes_n INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS cachesaver_samples (
    key TEXT NOT NULL, idx INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY (key, idx));
CREATE TABLE IF NOT EXISTS cachesaver_ledger (
    run TEXT NOT NULL, ns TEXT NOT NULL, key TEXT NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (run, ns, key)) WITHOUT ROWID;
"""
_TABLES = ("cachesaver_keys", "cachesaver_samples", "cachesaver_ledger")
#: Added after the first three: created on its first write, read as empty where it is missing
#: (a store written by an earlier version, or read-only media).
_IDS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cachesaver_ids (key TEXT NOT NULL, ns TEXT NOT NULL, rid TEXT NOT NULL, "
    "pos INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (key, ns, rid)) WITHOUT ROWID"
)
_HOLES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cachesaver_holes (run TEXT NOT NULL, ns TEXT NOT NULL, key TEXT NOT NULL, "
    "pos INTEGER NOT NULL, PRIMARY KEY (run, ns, key, pos)) WITHOUT ROWID"
)
_UNBILLED_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cachesaver_unbilled (run TEXT NOT NULL, key TEXT NOT NULL, "
    "idx INTEGER NOT NULL, PRIMARY KEY (run, key, idx)) WITHOUT ROWID"
)
#: Tables added after the first three: created on their first write (see _IDS_SCHEMA).
_LATER_TABLES = ("cachesaver_ids", "cachesaver_holes", "cachesaver_unbilled")

#: The key row's byte total, added after the first version: ``bytes`` is the summed length of
#: the key's first ``bytes_n`` samples, kept by every append in the statement that reserves
#: their indexes, so ``cachesaver stats`` reads a key's size from its row instead of visiting
#: each sample row (a sample's length is only in its own row). ``bytes_n`` is what makes it
#: safe: a version that does not keep ``bytes`` raises ``count`` alone, and a row whose
#: ``bytes_n`` differs from ``count`` is summed from its samples instead. Cost: two integers
#: per key (2-6 bytes of row with their header bytes; ~13 bytes of file per key measured at 1M
#: keys, as fewer rows fit a page), nothing per sample; no extra statement.
_BYTES_COLUMNS = (
    "ALTER TABLE cachesaver_keys ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE cachesaver_keys ADD COLUMN bytes_n INTEGER NOT NULL DEFAULT 0",
)

#: Reserve ``k`` indexes of a key in one statement: insert its row (with its meta, stored once),
#: or add ``k`` to a count that is a valid count (no row comes back for a garbage count); the
#: byte total follows (``_BYTES_COLUMNS``).
_RESERVE = (
    "INSERT INTO cachesaver_keys (key, count, meta, bytes, bytes_n) VALUES (?1, ?2, ?3, ?4, ?2) "
    "ON CONFLICT (key) DO UPDATE SET count = cachesaver_keys.count + excluded.count, "
    "bytes = cachesaver_keys.bytes + excluded.bytes, bytes_n = cachesaver_keys.bytes_n + excluded.count "
    "WHERE typeof(cachesaver_keys.count) = 'integer' AND cachesaver_keys.count >= 0 "
    "RETURNING count"
)
_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
#: ``OR REPLACE``: a row at an index the count says is unused can only be a leftover of someone
#: deleting a key's count row by hand; the new sample takes its place instead of failing the
#: whole transaction (which would also fail every other key appended with it).
_INSERT_SAMPLE = "INSERT OR REPLACE INTO cachesaver_samples (key, idx, value) VALUES (?, ?, ?)"


def _count(value: Any, what: str, key: str) -> int:
    """A stored counter, checked: garbage there must name the key, not raise a bare TypeError."""
    if type(value) is not int or value < 0:
        raise CorruptSampleError(
            f"the {what} of key {key} is {value!r}, not a count CacheSaver wrote; "
            "remove the key with `cachesaver prune --key`"
        )
    return value


#: This process's id, kept current across fork without a system call per store operation.
_PID = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


class _Connection(sqlite3.Connection):
    """A plain connection that can be weakly referenced (the C type cannot)."""


class _Conn(threading.local):
    con: Optional[sqlite3.Connection] = None
    pid: int = 0
    ready: bool = False  # our tables exist in the file this connection has open
    sized: bool = False  # cachesaver_keys has the byte-total columns (_BYTES_COLUMNS)


class DiskStore(Store):
    """Sample lists and shared ledgers in a directory (``cache.db``), safe across processes.

    ``DiskStore("./.cachesaver")`` or ``DiskStore(diskcache.Cache(...))`` (the seed passes one:
    we use its directory; its eviction never touches our tables, and its settings are left alone).

    - ``read_only``: ``None`` (default) detects it: a directory or ``cache.db`` that cannot be
      written opens read-only. ``True`` never writes, whatever the permissions.
    - ``timeout``: seconds to wait for another process's write transaction before failing.
    - ``lease_max_wait``: seconds a miss waits for another process generating the same key
      before generating anyway (only a live but stuck holder makes anyone wait that long; a dead
      one releases at once).
    """

    # Reads never suspend (WAL: readers never wait for writers). A write suspends only while
    # another process holds the write lock: it then waits in a worker thread (``_write``).
    inline_io = True
    coalesce_appends = True  # one transaction for several keys costs about as much as one

    def __init__(
        self,
        cache: "str | os.PathLike[str] | Any",
        *,
        timeout: float = 60.0,
        read_only: Optional[bool] = None,
        lease_max_wait: float = 300.0,
    ):
        directory = _directory_of(cache)
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise ValueError(f"cache path {directory!r} is a file; give a directory path")
        self.location = directory
        self.path = os.path.join(directory, DB_FILE)
        self.timeout = float(timeout)
        if read_only is None:
            read_only = _not_writable(directory, self.path)
        self.read_only = bool(read_only)
        self._local = _Conn()
        # Every open connection -> the pid that opened it. Weak: a thread that ends drops its
        # connection (closed when collected), so threads that come and go leak no file handles.
        self._conns: "weakref.WeakKeyDictionary[sqlite3.Connection, int]" = weakref.WeakKeyDictionary()
        self._conns_lock = threading.Lock()
        #: Why writing is impossible (a StoreError), once known: misses then fail at once.
        self._write_error: Optional[StoreError] = None
        if self.read_only:
            self._write_error = StoreError(
                f"the cache at {directory} is open read-only (the directory or {DB_FILE} is not "
                "writable, or read_only=True): it replays what it holds, but this request needs "
                "new samples; open a writable copy of the directory to generate them"
            )
        self._lease = DiskLease(directory, max_wait=float(lease_max_wait))
        #: (st_dev, st_ino) of the database file first opened (see ``_check_same_file``).
        self._file_id: Optional[tuple[int, int]] = None
        if os.path.exists(self.path):
            self._check_readable()

    @property
    def directory(self) -> str:
        return self.location

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"DiskStore({self.location!r}{mode})"

    # -- connections and errors --------------------------------------------------------------
    def _connect(self, create: bool) -> Optional[sqlite3.Connection]:
        """This thread's connection; None if the file does not exist and ``create`` is False."""
        local = self._local
        con = local.con
        if con is not None and local.pid == _PID[0]:
            if create and not local.ready:
                self._create_tables(con)
            return con
        if not os.path.exists(self.path):
            if not create:
                return None
            os.makedirs(self.location, exist_ok=True)
        with self._guard("opening"):
            if self.read_only:
                con = _open_read_only(self.path)
            else:
                con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                      check_same_thread=False, factory=_Connection)
                con.execute("PRAGMA synchronous=NORMAL")
            local.ready = _has_tables(con)
        local.con, local.pid = con, _PID[0]
        self._note_file()
        with self._conns_lock:
            self._conns[con] = _PID[0]
        if create and not local.ready:
            self._create_tables(con)
        return con

    def _create_tables(self, con: sqlite3.Connection) -> None:
        """The first write: WAL (readers never wait for writers; diskcache uses it too) and
        our tables. Opening for reading never does either."""
        with self._guard("creating the CacheSaver tables in", write=True):
            # Switching to WAL needs the file to itself, and SQLite does not wait for that: when
            # several processes create the store at once, retry until one of them has switched.
            deadline = time.monotonic() + self.timeout
            while con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                try:
                    con.execute("PRAGMA journal_mode=WAL")
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)
            with _immediate(con):  # waits for other writers (busy timeout)
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        con.execute(statement)
        self._local.ready = True

    def _reader(self) -> Optional[sqlite3.Connection]:
        """A connection for reading, or None if nothing was ever stored here."""
        local = self._local
        if local.ready and local.pid == _PID[0]:  # the usual case, first
            return local.con
        con = self._connect(create=False)
        if con is None:
            return None
        if not self._local.ready:  # another process may have created the tables since
            with self._guard("reading"):
                self._local.ready = _has_tables(con)
            if not self._local.ready:
                return None
        return con

    def _writer(self) -> sqlite3.Connection:
        if self._write_error is not None:
            raise self._write_error
        con = self._connect(create=True)
        assert con is not None
        if not self._local.sized:
            self._add_byte_columns(con)
        return con

    def _add_byte_columns(self, con: sqlite3.Connection) -> None:
        """Before this connection's first write: a store created by an earlier version gets
        the byte-total columns (``_BYTES_COLUMNS``; adding a column rewrites nothing). Its
        existing rows read ``bytes_n = 0``, so their sizes are summed from their samples."""
        with self._guard("adding the byte-total columns to", write=True):
            if not _has_byte_columns(con):
                with _immediate(con):  # another process may be adding them too
                    if not _has_byte_columns(con):
                        for statement in _BYTES_COLUMNS:
                            con.execute(statement)
        self._local.sized = True

    def _check_readable(self) -> None:
        """Open at once (no write) so a garbage or truncated file fails here, with its path."""
        con = self._connect(create=False)
        if con is None:
            return
        with self._guard("reading"):
            if self._local.ready:
                con.execute("SELECT count(*) FROM cachesaver_keys WHERE key = ''").fetchone()
            elif _has_legacy_rows(con):
                log.warning(
                    "%s holds samples in the layout of an earlier development version "
                    "(diskcache entries named 'cs1:...'), which this version does not read: "
                    "export them with that version (`cachesaver export`), then `cachesaver "
                    "import` the file here", self.path)

    @contextlib.contextmanager
    def _guard(self, what: str, *, write: bool = False) -> Iterator[None]:
        """Turn SQLite errors into a StoreError that names the file and the fix."""
        try:
            yield
        except sqlite3.Error as exc:
            error = _store_error(exc, what, self.path, self.timeout)
            if write and not _is_busy(exc):
                # The store cannot take samples: refuse new generations at once from now on.
                self._write_error = error
            raise error from exc

    @contextlib.contextmanager
    def _transaction(self, what: str, *, quick: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection. ``quick``: wait at most
        ``LOOP_WAIT`` for another process's write lock, then raise ``_Busy`` (see ``_write``)."""
        self._check_same_file()
        con = self._writer()
        with self._guard(what, write=True):
            if quick:
                con.execute(f"PRAGMA busy_timeout = {int(LOOP_WAIT * 1000)}")
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if quick and _is_busy(exc):
                    raise _Busy from exc
                raise
            finally:
                if quick:
                    con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            try:
                yield con
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    async def _write(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(con)`` in a write transaction, without stalling the event loop: on the loop while
        the database is free (the common case: microseconds); while another process holds the
        write lock, the wait (up to ``timeout``) happens in a worker thread instead, so the
        loop's other requests keep being served."""
        try:
            with self._transaction(what, quick=True) as con:
                return fn(con)
        except _Busy:
            pass
        return await asyncio.to_thread(self._write_waiting, what, fn)

    def _write_waiting(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._transaction(what) as con:
            return fn(con)

    # -- the database file this store opened --------------------------------------------------
    def _note_file(self) -> None:
        """Remember which file the first connection opened (its device and inode)."""
        if self._file_id is None:
            with contextlib.suppress(OSError):
                st = os.stat(self.path)
                self._file_id = (st.st_dev, st.st_ino)

    def _check_same_file(self) -> None:
        """Before a write: the directory must still hold the file this store opened.

        A directory deleted (``rm -rf``) or replaced while the process runs leaves the open
        connections writing into an unlinked file: every sample written there is lost when the
        process ends. One ``stat`` (about a microsecond) before a write transaction and before a
        generation (the disk store's hits write nothing, so they do not pay it).
        """
        if self._file_id is None:
            return
        try:
            st = os.stat(self.path)
            same = (st.st_dev, st.st_ino) == self._file_id
        except FileNotFoundError:
            same = False
        except OSError:
            return  # unreadable now: the write itself reports it, naming the path
        if same:
            return
        self._write_error = StoreError(
            f"the cache directory {self.location} was deleted or replaced while this process had "
            f"it open ({DB_FILE} there is gone or is another file now): samples written now would "
            "be lost with the old file. Open the store again (a new pipeline, model or "
            "register()) to start a cache there, or restore the directory and restart"
        )
        raise self._write_error

    # -- sample lists ------------------------------------------------------------------------
    def _read_sync(self, con: sqlite3.Connection, key: str, start: int, count: int) -> list[bytes]:
        if count <= 0:
            return []
        if count == 1:
            row = con.execute(
                "SELECT value FROM cachesaver_samples WHERE key = ? AND idx = ?", (key, start)
            ).fetchone()
            return [] if row is None else [row[0]]
        out: list[bytes] = []
        for idx, raw in con.execute(
            "SELECT idx, value FROM cachesaver_samples WHERE key = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (key, start, start + count),
        ):
            if idx != start + len(out):
                break  # a hole (a row someone deleted): the list ends before it
            out.append(raw)  # anything not ours fails in decode_sample, naming key and index
        return out

    async def read(self, key: str, start: int, count: int) -> list[bytes]:
        con = self._reader()
        if con is None:
            return []
        try:  # (inline rather than self._guard: this is the hit path)
            return self._read_sync(con, key, start, count)
        except sqlite3.Error as exc:
            raise _store_error(exc, f"reading samples of key {key} from", self.path, self.timeout) from exc

    @staticmethod
    def _append_in(con: sqlite3.Connection, key: str, samples: Sequence[bytes], meta: Optional[bytes],
                   unbilled_run: Optional[str] = None) -> int:
        k = len(samples)
        size = 0
        for raw in samples:
            if type(raw) not in (bytes, bytearray, memoryview):
                raise TypeError(f"store value for key {key} must be bytes, not {type(raw).__name__}")
            size += len(raw) if type(raw) is not memoryview else raw.nbytes  # type: ignore[union-attr]
        if _RETURNING:  # one statement reserves the indexes and creates the key row if needed
            row = con.execute(_RESERVE, (key, k, None if meta is None else bytes(meta), size)).fetchone()
            if row is None:  # the stored count is not a count: say so, naming the key
                bad = con.execute("SELECT count FROM cachesaver_keys WHERE key = ?", (key,)).fetchone()
                _count(bad[0] if bad else None, "sample count", key)
            start = row[0] - k
        else:  # pragma: no cover - SQLite < 3.35 (no RETURNING)
            row = con.execute("SELECT count FROM cachesaver_keys WHERE key = ?", (key,)).fetchone()
            start = 0 if row is None else _count(row[0], "sample count", key)
            if row is None:
                con.execute("INSERT INTO cachesaver_keys (key, count, meta, bytes, bytes_n) VALUES (?, ?, ?, ?, ?)",
                            (key, k, None if meta is None else bytes(meta), size, k))
            else:
                con.execute("UPDATE cachesaver_keys SET count = ?, bytes = bytes + ?, bytes_n = bytes_n + ? "
                            "WHERE key = ?", (start + k, size, k, key))
        if k == 1:
            con.execute(_INSERT_SAMPLE,
                        (key, start, bytes(samples[0])))
        else:
            con.executemany(_INSERT_SAMPLE,
                            [(key, start + i, bytes(raw)) for i, raw in enumerate(samples)])
        if unbilled_run is not None:
            con.execute(_UNBILLED_SCHEMA)
            con.executemany("INSERT OR IGNORE INTO cachesaver_unbilled (run, key, idx) VALUES (?, ?, ?)",
                            [(unbilled_run, key, start + i) for i in range(k)])
        return start

    def read_now(self, key: str, start: int, count: int) -> list[bytes]:
        """``read`` without an event loop, from any thread (each thread has its own connection)."""
        con = self._reader()
        if con is None:
            return []
        try:
            return self._read_sync(con, key, start, count)
        except sqlite3.Error as exc:
            raise _store_error(exc, f"reading samples of key {key} from", self.path, self.timeout) from exc

    async def append(self, key: str, samples: Sequence[bytes], meta: Optional[bytes] = None, *,
                     unbilled_run: Optional[str] = None) -> int:
        return await self._write(f"appending samples of key {key} to",
                                 lambda con: self._append_in(con, key, samples, meta, unbilled_run))

    async def append_many(self, items: Sequence[tuple[str, Sequence[bytes], Optional[bytes]]], *,
                          unbilled_run: Optional[str] = None) -> list[int]:
        """All appends in one transaction: all are stored or none is."""
        return await self._write(
            f"appending samples of {len(items)} keys to",
            lambda con: [self._append_in(con, key, samples, meta, unbilled_run) for key, samples, meta in items])

    async def length(self, key: str) -> int:
        con = self._reader()
        if con is None:
            return 0
        try:
            row = con.execute("SELECT count FROM cachesaver_keys WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise _store_error(exc, f"reading the sample count of key {key} from", self.path, self.timeout) from exc
        return 0 if row is None else _count(row[0], "sample count", key)

    # -- generation lease --------------------------------------------------------------------
    @property
    def lease_max_wait(self) -> float:
        """Seconds a miss waits for another process generating the same key (see the class)."""
        return self._lease.max_wait

    @lease_max_wait.setter
    def lease_max_wait(self, seconds: float) -> None:
        self._lease.max_wait = float(seconds)

    def generation_lease(self, key: str):
        """Hold ``key``'s cross-process generation lease (see :class:`DiskLease`).

        Raises :class:`StoreError` at once if this store cannot take new samples (read-only,
        or a write already failed), before anyone pays for a sample that could not be kept.
        A generation is about to write: a fresh directory's database is created here, so a
        directory that cannot hold one fails before the model call, and the reads that follow
        (under the lease, and every other key's) find it instead of checking for the file.
        """
        if self._write_error is not None:
            raise self._write_error
        self._check_same_file()
        local = self._local
        if not (local.ready and local.pid == _PID[0]):
            self._writer()
        return self._lease.hold(key)

    # -- where request ids took their samples ------------------------------------------------
    keeps_id_positions = True

    async def id_positions(self, key: str) -> dict[tuple[str, str], tuple[int, int]]:
        return self.id_positions_now(key)

    def id_positions_now(self, key: str) -> dict[tuple[str, str], tuple[int, int]]:
        con = self._reader()
        if con is None:
            return {}
        try:
            if not _has_table(con, "cachesaver_ids"):
                return {}  # nothing recorded yet (or a store of an earlier version)
            rows = con.execute("SELECT ns, rid, pos, n FROM cachesaver_ids WHERE key = ?", (key,)).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(exc, f"reading request-id positions of key {key} from", self.path,
                               self.timeout) from exc
        return {(ns, rid): (pos, n) for ns, rid, pos, n in rows
                if isinstance(pos, int) and isinstance(n, int) and pos >= 0 and n > 0}

    async def record_id_positions(self, taken: Sequence[tuple[str, str, str, int, int]]) -> None:
        self.record_id_positions_now(taken)

    def record_id_positions_now(self, taken: Sequence[tuple[str, str, str, int, int]]) -> None:
        """One transaction for all of ``taken``. Best effort: records that cannot be written
        (read-only media, a busy database) only mean a later replay of those requests goes by
        arrival order; it never fails a call."""
        if not taken or self.read_only or self._write_error is not None:
            return
        try:
            with self._transaction(f"recording {len(taken)} request-id positions in", quick=True) as con:
                con.execute(_IDS_SCHEMA)
                con.executemany("INSERT OR IGNORE INTO cachesaver_ids (ns, key, rid, pos, n) VALUES (?, ?, ?, ?, ?)",
                                list(taken))
        except (_Busy, StoreError) as exc:
            log.debug("%d request-id positions not recorded: %s", len(taken), type(exc).__name__)

    # -- shared ledgers ----------------------------------------------------------------------
    async def claim(
        self, run_id: str, namespace: str, key: str, count: int, *, partial: bool
    ) -> tuple[int, list[bytes]]:
        return await self._write(f"claiming samples of key {key} in",
                                 self._claim_in(run_id, namespace, key, count, partial=partial))

    def _claim_in(self, run_id: str, namespace: str, key: str, count: int, *,
                  partial: bool) -> Callable[[sqlite3.Connection], tuple[int, list[bytes]]]:
        """The claim, as a function of a connection in a write transaction."""
        what = f"ledger position of {namespace!r} in run {run_id!r}"

        def claim_in(con: sqlite3.Connection) -> tuple[int, list[bytes]]:
            row = con.execute("SELECT pos FROM cachesaver_ledger WHERE run = ? AND ns = ? AND key = ?",
                              (run_id, namespace, key)).fetchone()
            pos = 0 if row is None else _count(row[0], what, key)
            taken = self._read_sync(con, key, pos, count)
            if not taken or (not partial and len(taken) < count):
                return pos, []
            con.execute(
                "INSERT INTO cachesaver_ledger (run, ns, key, pos) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run, ns, key) DO UPDATE SET pos = excluded.pos",
                (run_id, namespace, key, pos + len(taken)),
            )
            return pos, taken

        return claim_in

    keeps_billing = True

    async def claim_billed(self, run_id: str, namespace: str, key: str, count: int) -> tuple[int, list[bytes], list[int]]:
        """:meth:`claim` and the billing records of what it takes, in one transaction."""
        claim_in = self._claim_in(run_id, namespace, key, count, partial=False)

        def claim_and_bill(con: sqlite3.Connection) -> tuple[int, list[bytes], list[int]]:
            pos, taken = claim_in(con)
            if not taken or not _has_table(con, "cachesaver_unbilled"):
                return pos, taken, []
            stop = pos + len(taken)
            billed = [idx for (idx,) in con.execute(
                "SELECT idx FROM cachesaver_unbilled WHERE run = ? AND key = ? AND idx >= ? AND idx < ?",
                (run_id, key, pos, stop))]
            if billed:
                con.execute("DELETE FROM cachesaver_unbilled WHERE run = ? AND key = ? AND idx >= ? AND idx < ?",
                            (run_id, key, pos, stop))
            return pos, taken, billed

        return await self._write(f"claiming samples of key {key} in", claim_and_bill)

    async def claim_at(self, run_id: str, namespace: str, key: str, pos: int, count: int) -> list[bytes]:
        if pos < 0 or count <= 0 or self.read_only:
            return []
        what = f"ledger position of {namespace!r} in run {run_id!r}"

        def claim_in(con: sqlite3.Connection) -> list[bytes]:
            con.execute(_HOLES_SCHEMA)
            row = con.execute("SELECT pos FROM cachesaver_ledger WHERE run = ? AND ns = ? AND key = ?",
                              (run_id, namespace, key)).fetchone()
            following = 0 if row is None else _count(row[0], what, key)
            holes = {p for (p,) in con.execute(
                "SELECT pos FROM cachesaver_holes WHERE run = ? AND ns = ? AND key = ? AND pos >= ? AND pos < ?",
                (run_id, namespace, key, pos, pos + count))}
            if any(p < following and p not in holes for p in range(pos, pos + count)):
                return []
            taken = self._read_sync(con, key, pos, count)
            if len(taken) < count:
                return []
            con.execute("DELETE FROM cachesaver_holes WHERE run = ? AND ns = ? AND key = ? AND pos >= ? AND pos < ?",
                        (run_id, namespace, key, pos, min(pos + count, following)))
            con.executemany("INSERT OR IGNORE INTO cachesaver_holes (run, ns, key, pos) VALUES (?, ?, ?, ?)",
                            [(run_id, namespace, key, p) for p in range(following, pos)])
            if pos + count > following:
                con.execute(
                    "INSERT INTO cachesaver_ledger (run, ns, key, pos) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (run, ns, key) DO UPDATE SET pos = excluded.pos",
                    (run_id, namespace, key, pos + count))
            return taken

        return await self._write(f"claiming samples {pos + 1}..{pos + count} of key {key} in", claim_in)

    # -- administration ----------------------------------------------------------------------
    async def iter_keys(self) -> AsyncIterator[str]:
        con = self._reader()
        if con is None:
            return
        with self._guard("listing keys of"):
            keys = [k for (k,) in con.execute("SELECT key FROM cachesaver_keys ORDER BY key")]
        for key in keys:
            yield key

    async def iter_key_sizes(self) -> AsyncIterator[tuple[str, int, int, Optional[bytes]]]:
        """One query, streamed: each key's count and meta, and the summed length of its sample
        rows (SQLite keeps a blob's length, so nothing is read but the index and the headers)."""
        con = self._reader()
        if con is None:
            return
        with self._guard("summing the keys of"):
            cursor = con.execute(
                "SELECT k.key, k.count, (SELECT COALESCE(SUM(LENGTH(s.value)), 0) FROM cachesaver_samples s "
                "WHERE s.key = k.key), k.meta FROM cachesaver_keys k ORDER BY k.key")
            while True:
                rows = cursor.fetchmany(2048)
                if not rows:
                    break
                for key, count, size, meta in rows:
                    yield key, _count(count, "sample count", key), int(size), meta

    async def key_totals(self, top: int = 0) -> KeyTotals:
        """The figures of ``cachesaver stats`` as SQL aggregates: one pass over the key rows,
        grouped by model in SQLite, so no Python object per key and memory that does not grow
        with the store. A key's bytes come from its row's byte total (``_BYTES_COLUMNS``) where
        that covers all its samples, else from its sample rows. The model is read with SQLite's
        JSON functions in the order :func:`cachesaver.display.request_model` reads it (a meta
        that is not valid JSON is ``-``); a SQLite without them gets the default (key by key)."""
        con = self._reader()
        if con is None:
            return KeyTotals()
        with self._guard("summing the keys of"):
            if not _has_json(con):  # pragma: no cover - SQLite built without its JSON functions
                return await super().key_totals(top)
            size = _SIZE_OF_ROW if _has_byte_columns(con) else _SIZE_OF_SAMPLES
            bad = con.execute("SELECT key, count FROM cachesaver_keys WHERE typeof(count) != 'integer' "
                              "OR count < 0 ORDER BY key LIMIT 1").fetchone()
            if bad is not None:
                _count(bad[1], "sample count", bad[0])
            out = KeyTotals()
            for model, keys, samples, size_sum in _totals_by_model(con, size):
                out.by_model[str(model)] = [keys, samples, int(size_sum)]
            if top > 0:
                out.largest = [(key, n, int(size_sum), None if meta is None else bytes(meta))
                               for key, n, size_sum, meta in con.execute(
                                   f"SELECT k.key, k.count, {size}, k.meta FROM cachesaver_keys k "
                                   "ORDER BY k.count DESC, k.key LIMIT ?", (top,))]
        return out

    async def get_meta(self, key: str) -> Optional[bytes]:
        con = self._reader()
        if con is None:
            return None
        with self._guard(f"reading the meta of key {key} from"):
            row = con.execute("SELECT meta FROM cachesaver_keys WHERE key = ?", (key,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    async def iter_ledger(self) -> AsyncIterator[LedgerEntry]:
        con = self._reader()
        if con is None:
            return
        with self._guard("reading the ledgers of"):
            rows = con.execute("SELECT run, ns, key, pos FROM cachesaver_ledger ORDER BY run, ns, key").fetchall()
        for run_id, namespace, key, pos in rows:
            if type(pos) is int and pos >= 0 and all(isinstance(x, str) for x in (run_id, namespace, key)):
                yield run_id, namespace, key, pos
            else:
                log.warning("skipping a ledger row of key %r in %s: not written by CacheSaver", key, self.location)

    async def delete(self, key: str) -> int:
        if self._reader() is None:
            return 0
        with self._transaction(f"deleting key {key} from") as con:
            removed = con.execute("DELETE FROM cachesaver_samples WHERE key = ?", (key,)).rowcount
            con.execute("DELETE FROM cachesaver_keys WHERE key = ?", (key,))
            con.execute("DELETE FROM cachesaver_ledger WHERE key = ?", (key,))
            for table in _LATER_TABLES:
                if _has_table(con, table):
                    con.execute(f"DELETE FROM {table} WHERE key = ?", (key,))
        return removed

    async def clear(self) -> None:
        """Remove every sample, meta and ledger row (the directory's other data is untouched)."""
        if self._reader() is None:
            return
        with self._transaction("clearing") as con:
            for table in _TABLES:
                con.execute(f"DELETE FROM {table}")
            for table in _LATER_TABLES:
                if _has_table(con, table):
                    con.execute(f"DELETE FROM {table}")

    def batch_journal(self) -> Any:
        """The batch journal in this store's SQLite file (:mod:`.diskjournal`)."""
        from .diskjournal import DiskJournal

        return DiskJournal(self)

    def after_fork(self) -> None:
        """In a forked child: forget the parent's connections without closing them (closing a
        SQLite connection inherited across fork can disturb the parent's locks and WAL); the
        child opens its own on first use."""
        with self._conns_lock:
            self._conns = weakref.WeakKeyDictionary()
        self._local = _Conn()

    def close(self) -> None:
        pid = os.getpid()
        with self._conns_lock:
            conns, self._conns = list(self._conns.items()), weakref.WeakKeyDictionary()
        for con, owner in conns:
            if owner == pid:  # never close a connection inherited from a parent process
                with contextlib.suppress(sqlite3.Error):
                    con.close()
        self._local = _Conn()
        self._lease.close()

    async def aclose(self) -> None:
        self.close()


# -- stats aggregates ------------------------------------------------------------------------
#: A key's model, as :func:`cachesaver.display.request_model` reads it from the stored request:
#: the first string of ``cachesaver_model``, ``model``, ``model_name``, ``params.model``; ``-``
#: when there is none or the meta is not JSON. (Meta is stored as a BLOB; the JSON functions
#: read text, and from SQLite 3.45 a BLOB would be read as its binary JSONB format.)
_MODEL_OF_META = "CASE WHEN k.meta IS NULL THEN '-' WHEN json_valid(CAST(k.meta AS TEXT)) THEN CASE " + " ".join(
    f"WHEN json_type(CAST(k.meta AS TEXT), '{path}') = 'text' THEN json_extract(CAST(k.meta AS TEXT), '{path}')"
    for path in ("$.cachesaver_model", "$.model", "$.model_name", "$.params.model")) + " ELSE '-' END ELSE '-' END"
#: A key's bytes summed from its sample rows (one look-up per sample).
_SIZE_OF_SAMPLES = "(SELECT COALESCE(SUM(LENGTH(s.value)), 0) FROM cachesaver_samples s WHERE s.key = k.key)"
#: A key's bytes from its row where the byte total covers every sample (``_BYTES_COLUMNS``).
_SIZE_OF_ROW = f"CASE WHEN k.bytes_n = k.count THEN k.bytes ELSE {_SIZE_OF_SAMPLES} END"


def _totals_by_model(con: sqlite3.Connection, size: str) -> list[tuple[Any, int, int, int]]:
    """``(model, keys, samples, bytes)`` per model, in one pass over the key rows.

    Summed into a small temporary table keyed by model (one row per model, in this connection's
    temporary database, never in ``cache.db``): a ``GROUP BY`` would sort every key row first,
    which costs more than the pass itself. A connection that may not write even there (read-only
    media) groups with ``GROUP BY``."""
    try:
        con.execute("DROP TABLE IF EXISTS temp.cachesaver_stats_totals")
        con.execute("CREATE TEMP TABLE cachesaver_stats_totals (model PRIMARY KEY, n INTEGER, c INTEGER, b INTEGER)")
    except sqlite3.OperationalError:
        return con.execute(f"SELECT {_MODEL_OF_META} AS model, COUNT(*), SUM(k.count), SUM({size}) "
                           "FROM cachesaver_keys k GROUP BY model").fetchall()
    try:
        con.execute(f"INSERT INTO temp.cachesaver_stats_totals SELECT {_MODEL_OF_META}, 1, k.count, {size} "
                    "FROM cachesaver_keys k WHERE true ON CONFLICT (model) DO UPDATE SET n = n + 1, "
                    "c = c + excluded.c, b = b + excluded.b")
        return con.execute("SELECT model, n, c, b FROM temp.cachesaver_stats_totals").fetchall()
    finally:
        con.execute("DROP TABLE temp.cachesaver_stats_totals")


def _has_json(con: sqlite3.Connection) -> bool:
    try:
        con.execute("SELECT json_valid('{}')").fetchone()
    except sqlite3.OperationalError:  # pragma: no cover - SQLite built without JSON
        return False
    return True


# -- helpers ---------------------------------------------------------------------------------
def _directory_of(cache: Any) -> str:
    if isinstance(cache, (str, os.PathLike)):
        return os.fspath(cache)
    directory = getattr(cache, "directory", None)
    try:
        import diskcache
    except ImportError:  # pragma: no cover
        diskcache = None  # type: ignore[assignment]
    if diskcache is not None and isinstance(cache, diskcache.Cache) and isinstance(directory, str):
        return directory
    raise TypeError(f"cache must be a directory path or a diskcache.Cache, not {type(cache).__name__}")


def _has_legacy_rows(con: sqlite3.Connection) -> bool:
    if con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'Cache'").fetchone() is None:
        return False
    return con.execute("SELECT 1 FROM Cache WHERE key >= 'cs1:' AND key < 'cs1;' LIMIT 1").fetchone() is not None


def _has_table(con: sqlite3.Connection, name: str) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _has_byte_columns(con: sqlite3.Connection) -> bool:
    names = {row[1] for row in con.execute("PRAGMA table_info(cachesaver_keys)")}
    return "bytes" in names and "bytes_n" in names


@contextlib.contextmanager
def _immediate(con: sqlite3.Connection) -> Iterator[None]:
    """A write transaction taken at once (``BEGIN IMMEDIATE``: waits for other writers up to the
    busy timeout), committed when the body ends, rolled back if it raises."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _has_tables(con: sqlite3.Connection) -> bool:
    names = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return all(table in names for table in _TABLES)


def _not_writable(directory: str, path: str) -> bool:
    if os.path.exists(path):
        return not os.access(path, os.W_OK) or not os.access(directory, os.W_OK)
    parent = directory
    while not os.path.exists(parent):  # the directory will be created: can it be?
        up = os.path.dirname(os.path.abspath(parent))
        if up == os.path.abspath(parent):
            break
        parent = up
    return os.path.isdir(parent) and not os.access(parent, os.W_OK)


def _open_read_only(path: str) -> sqlite3.Connection:
    """Open without any write: ``mode=ro``; on read-only media, where SQLite cannot create the
    WAL index, ``immutable=1`` (nobody can be writing a file on a read-only mount)."""
    uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23")
    try:
        con = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False,
                              factory=_Connection)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError:
        con = sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None, check_same_thread=False,
                              factory=_Connection)
        con.execute("PRAGMA query_only=1")
        return con


#: Seconds a write may wait for another process's lock on the event loop's own thread; past
#: that it waits in a worker thread (issue: a shared run froze the caller's loop for seconds).
LOOP_WAIT = 0.02


class _Busy(Exception):
    """Another process holds the write lock (internal: ``_write`` then waits off the loop)."""


def _is_busy(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _store_error(exc: sqlite3.Error, what: str, path: str, timeout: float) -> StoreError:
    text = str(exc)
    low = text.lower()
    if "full" in low or ("disk i/o error" in low and _no_space_left(path)):
        # (SQLite reports a full disk as an I/O error when the WAL's shared memory file cannot
        # be extended, as on a full tmpfs: the free space tells the two apart.)
        fix = "the disk is full: free space, then open the store again"
    elif "readonly" in low or "read-only" in low:
        fix = ("it is read-only: open it with read_only=True (DiskStore(path, read_only=True)) to "
               "replay what it holds, or make it writable")
    elif "not a database" in low or "malformed" in low or "corrupt" in low:
        fix = ("the file is not a valid SQLite database (truncated or overwritten): move it aside "
               "and restore it from a backup, or export what is readable with `sqlite3 cache.db .recover`")
    elif _is_busy(exc):
        fix = (f"another process kept the database locked (waited up to {timeout:g}s); retry, "
               "or pass a larger timeout")
    elif "unable to open" in low:
        fix = "check that the directory exists and is readable"
    else:
        fix = "check the file and its directory"
    return StoreError(f"{what} the cache at {path} failed ({type(exc).__name__}: {text}): {fix}")


def _no_space_left(path: str) -> bool:
    """Whether the file system holding ``path`` has (next to) no free space left."""
    try:
        st = os.statvfs(os.path.dirname(path) or ".")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024
