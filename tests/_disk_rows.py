"""Write or delete a disk store's rows behind its back, with plain sqlite3 (as another tool,
a broken script or an attacker would). Tests use it to plant garbage and check what the store
makes of it."""
from __future__ import annotations

import os
import sqlite3
from typing import Any



def _con(directory: str) -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)


def set_sample(directory: str, key: str, index: int, value: Any) -> None:
    con = _con(directory)
    con.execute("INSERT OR REPLACE INTO cachesaver_samples (key, idx, value) VALUES (?, ?, ?)",
                (key, index, value))
    con.close()


def set_count(directory: str, key: str, value: Any, meta: Any = None) -> None:
    con = _con(directory)
    con.execute("INSERT INTO cachesaver_keys (key, count, meta) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET count = excluded.count", (key, value, meta))
    con.close()


def set_ledger(directory: str, run: str, namespace: str, key: str, value: Any) -> None:
    con = _con(directory)
    con.execute("INSERT OR REPLACE INTO cachesaver_ledger (run, ns, key, pos) VALUES (?, ?, ?, ?)",
                (run, namespace, key, value))
    con.close()


def all_values(directory: str) -> list[Any]:
    """Every value the store wrote (samples, counts, metas, ledger positions)."""
    con = _con(directory)
    out: list[Any] = []
    out += [v for (v,) in con.execute("SELECT value FROM cachesaver_samples")]
    for count, meta in con.execute("SELECT count, meta FROM cachesaver_keys"):
        out += [count, meta]
    out += [p for (p,) in con.execute("SELECT pos FROM cachesaver_ledger")]
    con.close()
    return out


