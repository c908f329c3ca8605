"""Where submitted provider batches are recorded, so that none is paid twice or lost.

A batch is recorded (with the key and sample count of each of its lines) *before* its file is
uploaded, its provider file id before the batch is created, and its provider batch id as soon as
creation returns. A line stays ``open`` until its samples are appended to the store (then
``stored``) or the provider answered it with an error (``failed``) or not at all (``lost``: an
expired, cancelled or failed batch). A process that misses a key first looks for an open line
of that key whose owner is gone (a crashed or finished process) and collects that batch instead
of submitting a new one.

Stores keep the journal in their own medium: :class:`MemoryJournal` (one process; lost with it)
and the disk store's SQLite tables (:mod:`cachesaver.stores.diskjournal`).
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time
from typing import Any, Optional, Protocol

from ..errors import CacheSaverError

__all__ = ["BatchRecord", "LineRecord", "BatchJournal", "MemoryJournal", "owner_token", "owner_gone", "collector_gone",
           "BatchTakenOverError", "LINE_STATES", "BATCH_STATES"]

class BatchTakenOverError(CacheSaverError, RuntimeError):
    """Another process took a batch over (this one had stopped renewing its liveness)."""


#: A line's states: waiting for its batch, its samples appended, answered with an error, never answered.
LINE_STATES = ("open", "stored", "failed", "lost")
#: A batch's states: being uploaded/created, submitted (pending at the provider), and its endings.
BATCH_STATES = ("submitting", "submitted", "completed", "failed", "expired", "cancelled", "abandoned")


@dataclasses.dataclass
class BatchRecord:
    """One provider batch as the journal keeps it (never a credential: see ``info``)."""

    id: str                                   # the journal's own id (also the batch's metadata)
    state: str
    owner: str                                # the process collecting it (:func:`owner_token`)
    created: float
    provider_batch: Optional[str] = None      # the provider's batch id, once creation returned
    input_file: Optional[str] = None          # the provider's id of the uploaded input file
    info: dict = dataclasses.field(default_factory=dict)  # provider, model, endpoint, cost billed


@dataclasses.dataclass
class LineRecord:
    batch: str
    custom_id: str
    key: str
    n: int
    state: str = "open"
    #: The index the line's samples were planned to start at (the list's length under the
    #: generation lease; -1: unknown). A restart that finds the line open checks there whether
    #: the process that died had appended them already (then it must not append them again).
    first: int = -1
    #: The canonical request JSON of the line's key (what the engine stores with its samples),
    #: so that ``cachesaver batches collect`` stores an answer exactly as the engine would.
    meta: Optional[bytes] = None
    #: The line's cost as estimated at submission, at batch prices (None: the backend cannot say).
    estimate: Optional[float] = None
    #: What its answer was billed, once stored.
    cost: Optional[float] = None


class BatchJournal(Protocol):
    """What a store offers batch mode (see the module docstring). Every method is atomic."""

    async def add(self, batch: BatchRecord, lines: "list[LineRecord]") -> None: ...

    async def update(self, batch_id: str, **fields: Any) -> None: ...

    async def take_over(self, batch_id: str, old_owner: str, new_owner: str) -> bool:
        """Make ``new_owner`` the collector if ``old_owner`` still is; False if not."""

    async def open_lines(self, key: str) -> "list[tuple[BatchRecord, LineRecord]]": ...

    async def close_line(self, batch_id: str, custom_id: str, state: str, cost: Optional[float] = None) -> None:
        """Close an open line (a closed one stays as it is); ``cost``: what its answer was billed."""

    async def lines(self, batch_id: str) -> "list[LineRecord]":
        """Every line of a batch (with its ``meta``), in ``custom_id`` order."""

    async def batches(self) -> "list[tuple[BatchRecord, dict[str, Any]]]":
        """Every batch, newest first, with its lines counted per state (see :func:`count_lines`)."""


class MemoryJournal:
    """The journal of a memory store: dicts, atomic because nothing here awaits."""

    def __init__(self) -> None:
        self._batches: dict[str, BatchRecord] = {}
        self._lines: dict[tuple[str, str], LineRecord] = {}

    async def add(self, batch: BatchRecord, lines: "list[LineRecord]") -> None:
        self._batches[batch.id] = dataclasses.replace(batch, info=dict(batch.info))
        for line in lines:
            self._lines[(line.batch, line.custom_id)] = dataclasses.replace(line)

    async def update(self, batch_id: str, **fields: Any) -> None:
        record = self._batches[batch_id]
        for name, value in fields.items():
            setattr(record, name, dict(value) if name == "info" else value)

    async def take_over(self, batch_id: str, old_owner: str, new_owner: str) -> bool:
        record = self._batches[batch_id]
        if record.owner != old_owner:
            return False
        record.owner = new_owner
        return True

    async def open_lines(self, key: str) -> "list[tuple[BatchRecord, LineRecord]]":
        found = [(self._batches[line.batch], line) for line in self._lines.values()
                 if line.key == key and line.state == "open"]
        return [(dataclasses.replace(b), dataclasses.replace(line)) for b, line in found]

    async def close_line(self, batch_id: str, custom_id: str, state: str, cost: Optional[float] = None) -> None:
        line = self._lines.get((batch_id, custom_id))
        if line is not None and line.state == "open":
            line.state = state
            line.cost = cost

    async def lines(self, batch_id: str) -> "list[LineRecord]":
        return sorted((dataclasses.replace(line) for line in self._lines.values() if line.batch == batch_id),
                      key=lambda line: line.custom_id)

    async def batches(self) -> "list[tuple[BatchRecord, dict[str, Any]]]":
        out = []
        for record in sorted(self._batches.values(), key=lambda b: b.created, reverse=True):
            lines = [line for line in self._lines.values() if line.batch == record.id]
            out.append((dataclasses.replace(record),
                        count_lines((line.state, line.n, line.estimate, line.cost) for line in lines)))
        return out


def count_lines(lines: Any) -> dict[str, Any]:
    """From ``(state, n, estimate, cost)`` per line: ``{state: lines}``, ``samples`` (all lines'
    n), ``stored_samples``, ``billed`` (the cost of the stored lines' answers) and ``pending``
    (the estimated cost of the open lines; ``unestimated``: open lines without an estimate)."""
    counts: dict[str, Any] = dict.fromkeys(LINE_STATES, 0)
    counts["samples"] = counts["stored_samples"] = counts["unestimated"] = 0
    counts["billed"] = counts["pending"] = 0.0
    for state, n, estimate, cost in lines:
        counts[state] = counts.get(state, 0) + 1
        counts["samples"] += n
        if state == "stored":
            counts["stored_samples"] += n
            counts["billed"] += cost or 0.0
        elif state == "open":
            if estimate is None:
                counts["unestimated"] += 1
            else:
                counts["pending"] += estimate
    return counts


_BOOT = f"{time.time_ns():x}"
#: Collectors of this process that are still open (their owner tokens).
LIVE: set[str] = set()


def owner_token(instance: str) -> str:
    """``host:pid:boot:instance``: which process (and which collector in it) collects a batch."""
    return f"{socket.gethostname()}:{os.getpid()}:{_BOOT}:{instance}"


async def collector_gone(journal: Any, owner: str, me: str) -> bool:
    """:func:`owner_gone`, and on a journal that keeps collectors' liveness (``alive``: the
    Redis journal's heartbeats), also a collector of another host that stopped renewing it."""
    if owner_gone(owner, me):
        return True
    alive = getattr(journal, "alive", None)
    if alive is None or owner == me or owner.partition(":")[0] == socket.gethostname():
        return False
    return not await alive(owner)


def owner_gone(owner: str, me: str) -> bool:
    """Whether the collector ``owner`` can no longer collect its batch: another collector of this
    process (closed or replaced), or a process of this host that has exited. A process on
    another host is presumed alive here (:func:`collector_gone` also asks the journal)."""
    if owner == me:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, rest = rest.partition(":")
    boot, _, _instance = rest.partition(":")
    if host != socket.gethostname():
        return False
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    if pid == os.getpid():
        # This process: a collector that was closed (a replaced pipeline), or a process that
        # had this pid before (another boot token).
        return boot != _BOOT or owner not in LIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
