"""``cachesaver batches``: the provider batches a store's journal records, with line counts and
cost; ``batches collect`` and ``batches cancel`` (see :mod:`.manage`)."""
from __future__ import annotations

import argparse
import datetime
from typing import Any, Callable, Optional

from ..display import printable
from ..errors import CacheSaverError

__all__ = ["cmd_batches", "cmd_collect", "cmd_cancel", "money"]


def money(amount: float) -> str:
    """A cost as the listing shows it: dollars, to the cent above $1, else six decimals."""
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.6f}"


async def cmd_batches(args: argparse.Namespace, open_cache: Callable[[str], Any], console: Any) -> int:
    """One row per batch, newest first: state, provider and model, lines per state, samples,
    the billed cost of its stored lines and the estimated cost of its open ones (``open_cache``
    and ``console`` are the CLI's, passed in: the CLI imports this module)."""
    from rich.table import Table

    store = open_cache(args.cache)
    try:
        journal = store.batch_journal()
        rows = await journal.batches() if journal is not None else []
    finally:
        await store.aclose()
    table = Table(title=f"batches ({len(rows)})")
    for column in ("created", "batch", "provider batch", "state", "model", "open", "stored", "failed", "lost",
                   "samples", "billed", "pending (est.)"):
        # Ids and figures are never wrapped (a narrow terminal wraps the dates and models instead).
        table.add_column(column, no_wrap=column not in ("created", "model"),
                         overflow="fold" if column == "model" else "ellipsis")
    pending = billed = 0.0
    for record, counts in rows:
        created = datetime.datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S")
        model = f"{record.info.get('provider', '')}/{record.info.get('model', '')}"
        table.add_row(created, record.id[:12], printable(str(record.provider_batch or "-")), record.state,
                      printable(model), *(str(counts[s]) for s in ("open", "stored", "failed", "lost", "samples")),
                      money(counts["billed"]), _pending(counts))
        pending += counts["pending"]
        billed += counts["billed"]
    console.print(table)
    if rows:
        open_lines = sum(counts["open"] for _, counts in rows)
        console.print(f"billed {money(billed)} for the stored lines; {open_lines} lines pending, "
                      f"estimated {money(pending)} at batch prices", soft_wrap=True)
    return 0


def _pending(counts: dict) -> str:
    if not counts["open"]:
        return "-"
    shown = money(counts["pending"])
    unestimated = counts["unestimated"]
    return shown if not unestimated else f"{shown} (+{unestimated} lines unestimated)"


async def cmd_collect(args: argparse.Namespace, open_cache: Callable[[str], Any], console: Any,
                      error: Callable[[str], Exception]) -> int:
    """Store the answers of ended batches whose collector is gone (``--all``: every batch with
    open lines; else the one named)."""
    if bool(args.batch) == bool(args.all):
        raise error("name one batch (its id as `cachesaver batches` lists it, or the provider's batch id) or --all")
    return await _each(args, open_cache, console, error, "collect")


async def cmd_cancel(args: argparse.Namespace, open_cache: Callable[[str], Any], console: Any,
                     error: Callable[[str], Exception]) -> int:
    """Cancel a batch at the provider; its unanswered lines are then submitted again when asked."""
    if not args.yes:
        raise error("cancel stops the batch at the provider (what it has not answered is not stored, and "
                    "is submitted again when asked); add --yes to confirm")
    return await _each(args, open_cache, console, error, "cancel")


async def _each(args: argparse.Namespace, open_cache: Callable[[str], Any], console: Any,
                error: Callable[[str], Exception], action: str) -> int:
    from . import manage

    store = open_cache(args.cache)
    try:
        journal = store.batch_journal()
        if journal is None:
            raise error("this store keeps no batch journal (no batch was ever submitted through it)")
        if getattr(args, "all", False):
            records = [record for record, counts in await journal.batches() if counts["open"]]
            if not records:
                console.print("no batch has open lines: nothing to collect", soft_wrap=True)
                return 0
        else:
            records = [await manage.find_batch(journal, args.batch)]
        status = 0
        for record in records:
            try:
                factory = manage.load_backend(record.info)
            except CacheSaverError as exc:
                if not getattr(args, "all", False):
                    raise
                console.print(f"batch {record.id[:12]}: {action} did nothing: {printable(str(exc))}", soft_wrap=True)
                continue
            backend, request = factory(record.info, args.api_base)
            try:
                if action == "collect":
                    outcome = await manage.collect(store, journal, record, backend, request, wait=args.wait)
                else:
                    outcome = await manage.cancel(store, journal, record, backend, request, wait=args.wait)
            except CacheSaverError:
                raise
            except Exception as exc:
                # The type and HTTP status only: a provider's message can echo request details.
                code = getattr(exc, "status_code", None)
                raise error(f"{action} of batch {record.id[:12]} failed at the provider ({type(exc).__name__}"
                            + (f", HTTP {code}" if code else "") + "); check --api-base and the API key in "
                            "the environment (lines stored before the failure stay stored; run it again)") from None
            console.print(_report(action, record.provider_batch, outcome), soft_wrap=True)
            if outcome.note and action == "collect" and not getattr(args, "all", False):
                status = 1
    finally:
        await store.aclose()
    return status


def _report(action: str, provider_batch: Optional[str], outcome: Any) -> str:
    name = f"batch {outcome.batch[:12]} ({printable(str(provider_batch or '-'))}), {outcome.state}"
    if outcome.note and not (outcome.stored or outcome.already or outcome.failed or outcome.lost):
        return f"{name}: {action} did nothing: {outcome.note}"
    parts = [f"{outcome.stored} lines stored ({outcome.samples} samples, billed {money(outcome.billed)})"]
    if outcome.already:
        parts.append(f"{outcome.already} already stored by the process that submitted it")
    if outcome.failed:
        parts.append(f"{outcome.failed} failed (the provider's error file)")
    if outcome.lost:
        parts.append(f"{outcome.lost} not answered (submitted again when asked)")
    return f"{name}: " + "; ".join(parts) + (f" ({outcome.note})" if outcome.note else "")
