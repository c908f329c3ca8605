"""The batch journal of a directory store: two SQLite tables beside the samples (same file).

``cachesaver_batches`` (one row per provider batch) and ``cachesaver_batch_lines`` (key and
sample count per line, indexed by key), created on the first batch written; a store without
them reads as having no batches. Each method is one transaction (see
:mod:`cachesaver.batchapi.journal` for what is recorded when).
"""
from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from ..batchapi.journal import BatchRecord, LineRecord, count_lines

if TYPE_CHECKING:  # pragma: no cover
    from .disk import DiskStore

__all__ = ["DiskJournal"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cachesaver_batches (id TEXT PRIMARY KEY, state TEXT NOT NULL, "
    "owner TEXT NOT NULL, created REAL NOT NULL, provider_batch TEXT, input_file TEXT, info TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cachesaver_batch_lines (batch TEXT NOT NULL, custom_id TEXT NOT NULL, "
    "key TEXT NOT NULL, n INTEGER NOT NULL, state TEXT NOT NULL, first INTEGER NOT NULL DEFAULT -1, "
    "PRIMARY KEY (batch, custom_id))",
    "CREATE INDEX IF NOT EXISTS cachesaver_batch_lines_key ON cachesaver_batch_lines (key, state)",
)
_FIELDS = ("state", "owner", "provider_batch", "input_file", "info")
_COLUMNS = "id, state, owner, created, provider_batch, input_file, info"


class DiskJournal:
    def __init__(self, store: "DiskStore") -> None:
        self._store = store

    async def add(self, batch: BatchRecord, lines: "list[LineRecord]") -> None:
        def add(con: sqlite3.Connection) -> None:
            for statement in _SCHEMA:
                con.execute(statement)
            con.execute(f"INSERT INTO cachesaver_batches ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (batch.id, batch.state, batch.owner, batch.created, batch.provider_batch,
                         batch.input_file, json.dumps(batch.info, sort_keys=True)))
            con.executemany("INSERT INTO cachesaver_batch_lines (batch, custom_id, key, n, state, first) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            [(ln.batch, ln.custom_id, ln.key, ln.n, ln.state, ln.first) for ln in lines])

        await self._store._write(f"recording batch {batch.id} in", add)

    async def update(self, batch_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise TypeError(f"unknown batch fields {sorted(unknown)}")
        values = [json.dumps(v, sort_keys=True) if name == "info" else v for name, v in fields.items()]
        assignments = ", ".join(f"{name} = ?" for name in fields)

        def update(con: sqlite3.Connection) -> None:
            con.execute(f"UPDATE cachesaver_batches SET {assignments} WHERE id = ?", (*values, batch_id))

        await self._store._write(f"updating batch {batch_id} in", update)

    async def take_over(self, batch_id: str, old_owner: str, new_owner: str) -> bool:
        def take(con: sqlite3.Connection) -> bool:
            cursor = con.execute("UPDATE cachesaver_batches SET owner = ? WHERE id = ? AND owner = ?",
                                 (new_owner, batch_id, old_owner))
            return cursor.rowcount == 1

        return await self._store._write(f"taking over batch {batch_id} in", take)

    async def close_line(self, batch_id: str, custom_id: str, state: str) -> None:
        def close(con: sqlite3.Connection) -> None:
            con.execute("UPDATE cachesaver_batch_lines SET state = ? WHERE batch = ? AND custom_id = ? "
                        "AND state = 'open'", (state, batch_id, custom_id))

        await self._store._write(f"closing line {custom_id} of batch {batch_id} in", close)

    def _rows(self, sql: str, args: tuple = ()) -> list:
        con = self._store._reader()
        if con is None:
            return []
        try:
            return con.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    async def open_lines(self, key: str) -> "list[tuple[BatchRecord, LineRecord]]":
        rows = self._rows(
            f"SELECT {', '.join('b.' + c.strip() for c in _COLUMNS.split(','))}, l.custom_id, l.n, l.first "
            "FROM cachesaver_batch_lines l JOIN cachesaver_batches b ON b.id = l.batch "
            "WHERE l.key = ? AND l.state = 'open' ORDER BY b.created, l.custom_id", (key,))
        return [(_batch(row[:7]), LineRecord(row[0], row[7], key, row[8], first=row[9])) for row in rows]

    async def batches(self) -> "list[tuple[BatchRecord, dict[str, int]]]":
        batches = self._rows(f"SELECT {_COLUMNS} FROM cachesaver_batches ORDER BY created DESC")
        lines = self._rows("SELECT batch, state, n FROM cachesaver_batch_lines")
        by_batch: dict[str, list] = {}
        for batch_id, state, n in lines:
            by_batch.setdefault(batch_id, []).append((state, n))
        return [(_batch(row), count_lines(by_batch.get(row[0], []))) for row in batches]


def _batch(row: Any) -> BatchRecord:
    batch_id, state, owner, created, provider_batch, input_file, info = row
    return BatchRecord(batch_id, state, owner, created, provider_batch, input_file, json.loads(info or "{}"))
