"""``cachesaver batches``: the provider batches a store's journal records, with line counts."""
from __future__ import annotations

import argparse
import datetime
from typing import Any, Callable

from ..display import printable

__all__ = ["cmd_batches"]


async def cmd_batches(args: argparse.Namespace, open_cache: Callable[[str], Any], console: Any) -> int:
    """One row per batch, newest first: state, provider and model, lines per state, samples
    (``open_cache`` and ``console`` are the CLI's, passed in: the CLI imports this module)."""
    from rich.table import Table

    store = open_cache(args.cache)
    try:
        journal = store.batch_journal()
        rows = await journal.batches() if journal is not None else []
    finally:
        await store.aclose()
    table = Table(title=f"batches ({len(rows)})")
    for column in ("created", "batch", "provider batch", "state", "model", "open", "stored", "failed", "lost",
                   "samples"):
        table.add_column(column)
    for record, counts in rows:
        created = datetime.datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S")
        model = f"{record.info.get('provider', '')}/{record.info.get('model', '')}"
        table.add_row(created, record.id[:12], printable(str(record.provider_batch or "-")), record.state,
                      printable(model), *(str(counts[s]) for s in ("open", "stored", "failed", "lost", "samples")))
    console.print(table)
    return 0
