"""Collecting or cancelling a recorded batch from outside the process that submitted it.

What ``cachesaver batches collect`` and ``cancel`` do. A batch is only touched here when its
collector is gone (:func:`~.journal.collector_gone`: a process of this host that exited, or on
Redis one of another host that stopped renewing its liveness); a live collector stores its own
answers. Ownership then passes here atomically
(:meth:`BatchJournal.take_over`), so a process that misses one of its keys meanwhile does not
collect it too, and each answer is stored once:

- an answered line's samples are appended to its key's list as the engine appends them
  (:func:`cachesaver.cacher.encode_response`: the same records, each with its share of the
  batch-priced usage, and the request JSON recorded with the line), unless the process that
  died had appended them already (checked at the index the line was planned for), then the
  line is marked ``stored`` with what it was billed;
- a line answered with an error is marked ``failed``, one the batch did not answer ``lost``:
  nothing waits for them, and a later miss of their keys submits them again;
- nothing is ever submitted here.

The provider is reached through a *batch backend plugin* (entry-point group
``cachesaver.batch_backends``; ``cachesaver_litellm`` provides ``litellm``,
``cachesaver_langchain`` provides ``langchain``): the engine imports no adapter.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from typing import TYPE_CHECKING, AsyncIterator, Callable, Optional

from ..codec import decode_sample
from ..errors import CacheSaverError, InvalidRequestError
from ..typedefs import Request, Response
from .backend import ENDED, BatchBackend, BatchStatus, LineResult
from .journal import LIVE, BatchJournal, BatchRecord, LineRecord, collector_gone, owner_token

if TYPE_CHECKING:  # pragma: no cover
    from ..stores.base import Store

__all__ = ["BACKENDS_GROUP", "Outcome", "load_backend", "find_batch", "collect", "cancel"]

log = logging.getLogger("cachesaver.batchapi")

#: Entry-point group of batch backend plugins: ``name = "pkg.mod:factory"``, where
#: ``factory(info, api_base)`` returns ``(backend, request)`` for a batch whose journal
#: ``info`` names ``adapter = name`` (the request carries the transport settings; credentials
#: come from the environment as the provider's library reads them).
BACKENDS_GROUP = "cachesaver.batch_backends"

Factory = Callable[[dict, Optional[str]], "tuple[BatchBackend, Request]"]


@dataclasses.dataclass
class Outcome:
    """What one collect or cancel did to a batch."""

    batch: str
    state: str                       # the provider's state (or the journal's, if not asked)
    stored: int = 0                  # lines whose samples were appended here
    already: int = 0                 # lines the dead process had appended (marked stored)
    failed: int = 0
    lost: int = 0
    samples: int = 0                 # samples appended here
    billed: float = 0.0              # what the lines stored here were billed
    note: str = ""                   # why nothing was done, when nothing was


#: The adapter of a batch recorded before records named theirs (only litellm submitted batches then).
_UNNAMED = "litellm"


def load_backend(info: dict, factories: "Optional[dict[str, Factory]]" = None) -> Factory:
    """The plugin of the adapter that submitted a batch (``info["adapter"]``)."""
    if factories is None:
        from importlib.metadata import entry_points

        factories = {}
        for ep in entry_points(group=BACKENDS_GROUP):
            factories.setdefault(ep.name, ep.load())
    name = str(info.get("adapter") or _UNNAMED)
    if name in factories:
        return factories[name]
    installed = ", ".join(sorted(factories)) or "none"
    raise InvalidRequestError(
        f"this batch was submitted through {name}, which provides no batch backend to collect or cancel it from "
        f"the command line (installed: {installed}); the next {name} process that asks for one of its keys "
        "collects it (cachesaver_litellm and cachesaver_langchain provide theirs; if one is missing, reinstall "
        "cachesaver-integrations so its entry points are registered: pip install -e .)")


async def find_batch(journal: BatchJournal, wanted: str) -> BatchRecord:
    """The batch whose journal id starts with ``wanted``, or whose provider batch id is ``wanted``."""
    found = [record for record, _counts in await journal.batches()
             if record.id.startswith(wanted) or record.provider_batch == wanted]
    if not found:
        raise InvalidRequestError(f"no batch {wanted!r} in this store; `cachesaver batches` lists them")
    if len(found) > 1:
        raise InvalidRequestError(f"{len(found)} batches start with {wanted!r}; give more of the id")
    return found[0]


async def collect(store: "Store", journal: BatchJournal, record: BatchRecord, backend: BatchBackend,
                  request: Request, *, wait: float = 0.0, poll: float = 1.0) -> Outcome:
    """Store the answers of ``record`` if it has ended (waiting up to ``wait`` seconds for it);
    see the module docstring."""
    me = owner_token("cli-" + uuid.uuid4().hex[:8])
    LIVE.add(me)
    try:
        ready = await _ready(journal, record, backend, request, me)
        if isinstance(ready, Outcome):
            return ready
        status = await _status(backend, request, ready, wait, poll)
        if status.state not in ENDED:
            return Outcome(record.id, status.state, note="not ended yet: collect it again later (or --wait)")
        return await _store_answers(store, journal, record, backend, request, status, me)
    finally:
        LIVE.discard(me)


async def cancel(store: "Store", journal: BatchJournal, record: BatchRecord, backend: BatchBackend,
                 request: Request, *, wait: float = 60.0, poll: float = 1.0) -> Outcome:
    """Cancel ``record`` at the provider. If its collector is gone, wait (up to ``wait``
    seconds) for the cancellation to end the batch, store what it had answered and mark the
    rest ``lost`` (asked again, they are submitted again); a live collector does that itself."""
    me = owner_token("cli-" + uuid.uuid4().hex[:8])
    LIVE.add(me)
    try:
        provider_batch = record.provider_batch
        if provider_batch is None and record.input_file is not None:
            provider_batch = await backend.find(request, record.input_file)
        if provider_batch is None:
            ready = await _ready(journal, record, backend, request, me)
            return ready if isinstance(ready, Outcome) else Outcome(record.id, record.state)
        status = await backend.status(request, provider_batch)
        if status.state not in ENDED:
            await backend.cancel(request, provider_batch)
        alive = record.owner != me and not await collector_gone(journal, record.owner, me)
        if alive:
            return Outcome(record.id, "cancelling", note="cancelled at the provider; the live process that "
                           "submitted it stores what was answered and fails the rest")
        ready = await _ready(journal, dataclasses.replace(record, provider_batch=provider_batch), backend, request, me)
        if isinstance(ready, Outcome):
            return ready
        status = await _status(backend, request, provider_batch, wait, poll)
        if status.state not in ENDED:  # nothing may wait on it: what it still answers is not stored
            status = BatchStatus("cancelled", message=f"still {status.state} after {wait:g} s")
        return await _store_answers(store, journal, record, backend, request, status, me)
    finally:
        LIVE.discard(me)


async def _ready(journal: BatchJournal, record: BatchRecord, backend: BatchBackend, request: Request,
                 me: str) -> "str | Outcome":
    """The provider batch id of a batch this process may collect, or why it may not."""
    if record.owner != me and not await collector_gone(journal, record.owner, me):
        return Outcome(record.id, record.state, note=f"its collector is alive ({_process(record.owner)}): "
                       "it stores the answers itself")
    provider_batch = record.provider_batch
    if provider_batch is None and record.input_file is not None:
        provider_batch = await backend.find(request, record.input_file)
        if provider_batch is not None:
            await journal.update(record.id, provider_batch=provider_batch, state="submitted")
    if provider_batch is None:  # never created: nothing was paid, nothing will be answered
        if not await journal.take_over(record.id, record.owner, me):
            return Outcome(record.id, record.state, note="another process took it over meanwhile")
        lost = 0
        for line in await journal.lines(record.id):
            if line.state == "open":
                await journal.close_line(record.id, line.custom_id, "lost")
                lost += 1
        await journal.update(record.id, state="abandoned")
        return Outcome(record.id, "abandoned", lost=lost, note="never created at the provider")
    return provider_batch


async def _status(backend: BatchBackend, request: Request, provider_batch: str, wait: float,
                  poll: float) -> BatchStatus:
    deadline = time.monotonic() + wait
    status = await backend.status(request, provider_batch)
    while status.state not in ENDED and time.monotonic() < deadline:
        await asyncio.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))
        poll = min(poll * 1.5, 60.0)
        status = await backend.status(request, provider_batch)
    return status


async def _store_answers(store: "Store", journal: BatchJournal, record: BatchRecord, backend: BatchBackend,
                         request: Request, status: BatchStatus, me: str) -> Outcome:
    """Take the batch over and store its answers, holding the generation leases of its open
    lines' keys throughout: a process missing one of them meanwhile waits, then finds the
    samples (instead of finding a line whose collector is alive, and submitting it again)."""
    results = await backend.results(request, status) if status.output_file or status.error_file else {}
    keys = sorted({line.key for line in await journal.lines(record.id) if line.state == "open"})
    async with contextlib.AsyncExitStack() as leases:
        for key in keys:  # (in key order, as every holder of several takes them)
            await leases.enter_async_context(store.generation_lease(key))
        await leases.enter_async_context(_alive(journal, me))
        if not await journal.take_over(record.id, record.owner, me):
            return Outcome(record.id, status.state, note="another process took it over meanwhile")
        return await _store_lines(store, journal, record, status, results)


async def _store_lines(store: "Store", journal: BatchJournal, record: BatchRecord, status: BatchStatus,
                       results: "dict[str, LineResult]") -> Outcome:
    from ..cacher import encode_response  # (the cacher imports the stores, which import this package)

    outcome = Outcome(record.id, status.state)
    model = str(record.info.get("model") or "the batch's model")
    for line in await journal.lines(record.id):
        if line.state != "open":
            continue
        result = results.get(line.custom_id)
        if result is None:
            await journal.close_line(record.id, line.custom_id, "lost")
            outcome.lost += 1
        elif result.samples is None:
            await journal.close_line(record.id, line.custom_id, "failed")
            outcome.failed += 1
        elif await _stored_already(store, line, result):
            await journal.close_line(record.id, line.custom_id, "stored", result.usage.cost)
            outcome.already += 1
        else:
            encoded = encode_response(line.key, line.n, Response(data=list(result.samples), usage=result.usage),
                                      model)
            await store.append(line.key, encoded, line.meta)
            await journal.close_line(record.id, line.custom_id, "stored", result.usage.cost)
            outcome.stored += 1
            outcome.samples += len(encoded)
            outcome.billed += result.usage.cost
    await journal.update(record.id, state=status.state)
    return outcome


async def _stored_already(store: "Store", line: LineRecord, result: LineResult) -> bool:
    """Whether the process that died appended this line's samples before marking it (see
    ``BatchCollector._stored_already``, the same check when a miss adopts the line)."""
    if line.first < 0 or result.samples is None:
        return False
    stored = await store.read(line.key, line.first, len(result.samples))
    if len(stored) != len(result.samples):
        return False
    try:
        return [decode_sample(raw, key=line.key, index=line.first + i).data
                for i, raw in enumerate(stored)] == list(result.samples)
    except CacheSaverError:
        return False


@contextlib.asynccontextmanager
async def _alive(journal: BatchJournal, me: str) -> AsyncIterator[None]:
    """Keep ``me``'s liveness renewed (journals that keep it), from before it owns a batch."""
    beat = getattr(journal, "heartbeat", None)
    if beat is None:
        yield
        return
    await beat(me)

    async def renew() -> None:
        while True:
            await asyncio.sleep(journal.heartbeat_every)  # type: ignore[attr-defined]
            await beat(me)

    task = asyncio.ensure_future(renew())
    try:
        yield
    finally:
        task.cancel()


def _process(owner: str) -> str:
    host, _, rest = owner.partition(":")
    return f"pid {rest.partition(':')[0]} on {host}"

