"""The batch journal of a directory store: two SQLite tables beside the samples (same file).

``cachesaver_batches`` (one row per provider batch) and ``cachesaver_batch_lines`` (key and
sample count per line, indexed by key), created on the first batch written; a store without
them reads as having no batches. Each method is one transaction (see
:mod:`cachesaver.batchapi.journal` for what is recorded when).
"""
from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any, Optional

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
#: Line columns added after the first release of these tables (added to an older table by the
#: first batch written; read as NULL from a table that lacks them).
_LINE_EXTRA = (("meta", "BLOB"), ("estimate", "REAL"), ("cost", "REAL"))
_FIELDS = ("state", "owner", "provider_batch", "input_file", "info")
_COLUMNS = "id, state, owner, created, provider_batch, input_file, info"


class DiskJournal:
    def __init__(self, store: "DiskStore") -> None:
        self._store = store

    async def add(self, batch: BatchRecord, lines: "list[LineRecord]") -> None:
        def add(con: sqlite3.Connection) -> None:
            for statement in _SCHEMA:
                con.execute(statement)
            _extend(con)
            con.execute(f"INSERT INTO cachesaver_batches ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (batch.id, batch.state, batch.owner, batch.created, batch.provider_batch,
                         batch.input_file, json.dumps(batch.info, sort_keys=True)))
            con.executemany("INSERT INTO cachesaver_batch_lines (batch, custom_id, key, n, state, first, meta, "
                            "estimate, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [(ln.batch, ln.custom_id, ln.key, ln.n, ln.state, ln.first, ln.meta, ln.estimate,
                              ln.cost) for ln in lines])

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

    async def close_line(self, batch_id: str, custom_id: str, state: str, cost: Optional[float] = None) -> None:
        def close(con: sqlite3.Connection) -> None:
            if cost is None:
                con.execute("UPDATE cachesaver_batch_lines SET state = ? WHERE batch = ? AND custom_id = ? "
                            "AND state = 'open'", (state, batch_id, custom_id))
                return
            if "cost" not in _line_columns(con):  # a line of a table from before the column
                _extend(con)
            con.execute("UPDATE cachesaver_batch_lines SET state = ?, cost = ? WHERE batch = ? "
                        "AND custom_id = ? AND state = 'open'", (state, cost, batch_id, custom_id))

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

    def _extra(self, names: "tuple[str, ...]" = ("meta", "estimate", "cost")) -> str:
        """Added line columns, as a select list (NULL for those an older table lacks)."""
        con = self._store._reader()
        have = _line_columns(con) if con is not None else set()
        return ", ".join(name if name in have else f"NULL AS {name}" for name in names)

    async def lines(self, batch_id: str) -> "list[LineRecord]":
        rows = self._rows(f"SELECT custom_id, key, n, state, first, {self._extra()} FROM cachesaver_batch_lines "
                          "WHERE batch = ? ORDER BY custom_id", (batch_id,))
        return [LineRecord(batch_id, custom_id, key, n, state, first=first,
                           meta=bytes(meta) if meta is not None else None, estimate=estimate, cost=cost)
                for custom_id, key, n, state, first, meta, estimate, cost in rows]

    async def batches(self) -> "list[tuple[BatchRecord, dict[str, Any]]]":
        batches = self._rows(f"SELECT {_COLUMNS} FROM cachesaver_batches ORDER BY created DESC")
        lines = self._rows(f"SELECT batch, state, n, {self._extra(('estimate', 'cost'))} "
                           "FROM cachesaver_batch_lines") if batches else []
        by_batch: dict[str, list] = {}
        for batch_id, state, n, estimate, cost in lines:
            by_batch.setdefault(batch_id, []).append((state, n, estimate, cost))
        return [(_batch(row), count_lines(by_batch.get(row[0], []))) for row in batches]


def _extend(con: sqlite3.Connection) -> None:
    have = _line_columns(con)
    for name, kind in _LINE_EXTRA:
        if name not in have:
            con.execute(f"ALTER TABLE cachesaver_batch_lines ADD COLUMN {name} {kind}")


def _line_columns(con: sqlite3.Connection) -> set:
    return {row[1] for row in con.execute("PRAGMA table_info(cachesaver_batch_lines)")}


def _batch(row: Any) -> BatchRecord:
    batch_id, state, owner, created, provider_batch, input_file, info = row
    return BatchRecord(batch_id, state, owner, created, provider_batch, input_file, json.loads(info or "{}"))
