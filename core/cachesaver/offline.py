"""Strict offline replay: what a pipeline raises instead of calling the model.

With ``offline=True`` (or on a read-only store such as a bundle) the cacher serves every hit as
usual, and where it would generate it raises :class:`~cachesaver.errors.OfflineMissError`
instead. The error says which prompt, key, namespace and position were asked for (samples
counted from 1: "asks for sample 4, but ... holds 3") and how many samples the store holds, so a reader replaying a published experiment sees at once what the
run asks for that the author did not record (another namespace, a larger ``n``, a new prompt).
"""
from __future__ import annotations

from typing import Any

import orjson

from .errors import OfflineMissError
from .ledger import Ledger
from .stores.base import Store
from .typedefs import request_fields

__all__ = ["offline_miss", "prompt_preview"]

PREVIEW_WIDTH = 80


def prompt_preview(fields: Any, width: int = PREVIEW_WIDTH) -> str:
    """A one-line, truncated view of a request's prompt (or last message) for messages."""
    prompt = fields
    if isinstance(fields, dict):
        prompt = fields.get("prompt", fields.get("messages", fields))
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        prompt = prompt[-1].get("content", prompt[-1])
    if not isinstance(prompt, str):
        try:
            prompt = orjson.dumps(prompt, default=repr).decode()
        except TypeError:
            prompt = repr(prompt)
    text = " ".join(prompt.split())
    return text if len(text) <= width else text[: width - 1] + "…"


async def offline_miss(store: Store, ledger: Ledger, key: str, pending: list) -> OfflineMissError:
    """Build the error for the demands of ``key`` that the store cannot serve (nothing is called)."""
    held = await store.length(key)
    short = []
    for demand in pending:
        n = demand.n
        if n <= 0:
            continue
        pos = await ledger.position(demand.namespace, key)
        if pos + n > held:
            short.append((demand, pos, n))
    if not short:  # raced with another process's append: report the first demand anyway
        demand = pending[0]
        short = [(demand, await ledger.position(demand.namespace, key), demand.n)]
    demand, pos, n = short[0]
    items = demand.live_items() or demand.items
    preview = prompt_preview(request_fields(items[0].request)) if items else "?"
    where = getattr(store, "location", "") or type(store).__name__
    # Counted from 1, as people count (position ``pos`` is the namespace's ``pos + 1``-th sample).
    wanted = f"sample {pos + 1}" if n == 1 else f"samples {pos + 1}..{pos + n}"
    more = f" (and {len(short) - 1} other namespace(s) of this key)" if len(short) > 1 else ""
    if getattr(store, "read_only", False) and not getattr(store, "is_bundle", False):
        why = (f"{where} is read-only, so it replays what it holds and cannot keep a new sample: "
               "make the directory writable to extend the run, or copy it somewhere writable")
    else:
        why = ("the run asks for more than was recorded: replay the same namespaces and requests, or "
               "import the bundle into a cache (`cachesaver bundle import`) and run online to extend it")
    return OfflineMissError(
        f"offline replay: prompt {preview!r} (key {key}) in namespace {demand.namespace!r} asks for "
        f"{wanted}, but {where} holds {held} sample(s) of this key{more}; the model was not called. "
        f"{why[0].upper()}{why[1:]}"
    )
