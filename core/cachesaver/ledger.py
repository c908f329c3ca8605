"""Usage ledgers: how many samples of each key a namespace has consumed in the current run.

The ledger is what makes samples i.i.d. within a namespace (G1: the k-th sample that namespace N
asks for under key K is sample k-1 of K's list) and reusable across namespaces and runs.

- :class:`PrivateLedger` (the default): one run per pipeline instance, kept in memory, so a new
  process or a new pipeline replays from the first sample and a hit writes nothing to disk.
- :class:`SharedLedger` (``run_id=...``): kept in the store and claimed atomically there, so
  several processes can run one experiment together without handing a sample out twice.

A request with an explicit id may ask for the positions its id took in an earlier run
(:meth:`Ledger.claim_at`): a ledger gives them when they are all stored and free in this run (a
shared ledger atomically in the store), which is what makes replays by id exact whatever the
timing (G4). Taking positions beyond
the next free one leaves *holes* below it, which only such claims can fill; every other claim
goes on from the next position after the highest taken, so no position is handed out twice (G1).

Billing (G8): a claim also says which of the samples it took this claim pays for. A private run
leaves that to its own process (``None``: the samples its process generated and no response of
it has taken yet); a shared run takes the store's billing records with the samples, because
another worker of the run may have generated them (:meth:`Store.claim_billed`).
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, Callable, ContextManager, Optional, Sequence, Union

from .stores.base import Store, each_in_turn
from .stores.memory import positions_free, take_positions

__all__ = ["Ledger", "PrivateLedger", "SharedLedger", "Positions", "Claim", "ManyClaim"]

#: What a run consumed: ``{namespace: {key: samples handed out}}`` (samples ``0 .. n-1``).
Positions = dict[str, dict[str, int]]

#: ``(position, samples, billed)`` of a claim; ``billed``: the indices among those taken that
#: this claim pays for, or None where the claiming process keeps that itself (private runs).
Claim = tuple[int, list[bytes], Optional[Sequence[int]]]

#: One claim of :meth:`Ledger.claim_many`: ``(namespace, key, count, wanted, at)``; ``at``
#: None takes the next samples, else exactly positions ``at .. at+count-1`` (a replay by id).
ManyClaim = tuple[str, str, int, Callable[[], bool], Optional[int]]
#: No lock: a ledger whose positions only the engine's loop moves.
_NO_LOCK: ContextManager[Any] = contextlib.nullcontext()


class Ledger(ABC):
    run_id: str

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    @abstractmethod
    async def position(self, namespace: str, key: str) -> int:
        """How many samples of ``key`` the namespace has consumed."""

    #: True if the store keeps this ledger's billing records (shared runs): the engine then
    #: appends generated samples as unbilled in the run instead of keeping them in its process.
    bills_in_store: bool = False

    @abstractmethod
    async def claim(
        self, namespace: str, key: str, count: int, wanted: Optional[Callable[[], bool]] = None,
        recent: Sequence[tuple[int, Sequence[bytes]]] = (),
    ) -> Claim:
        """Take exactly ``count`` next samples, or none if fewer exist: ``(position, samples,
        billed)`` (see :data:`Claim`).

        ``wanted()`` is asked once the samples are read: if the caller has left meanwhile, the
        private ledger consumes nothing. (A shared ledger claims atomically in the store, where
        a caller cancelled during the round trip may still consume its samples.)

        ``recent``: ``(first index, samples)`` this process has just appended (committed) to
        ``key``; a private ledger takes samples from there instead of reading them back from
        the store (a round trip on Redis).
        """

    async def claim_many(self, claims: Sequence[ManyClaim], lock: ContextManager[Any] = _NO_LOCK,
                         ) -> "list[Union[Claim, Exception, None]]":
        """Several claims, each ``(namespace, key, count, wanted, at)`` of its own (namespace,
        key), with one store call per kind (one round trip on Redis): a tick's hit attempts.
        ``at`` None: :meth:`claim`; else :meth:`claim_at` of positions ``at ..`` (its samples
        come back with ``at`` as their position, or none). For each, in order: the claim, the
        error that failed it (only its own), or None: not decided here (claim it again on its
        own). ``lock`` is the pipeline's lock where synchronous hits on other threads move the
        same positions: held (never across an await) while a claim checks and takes them. The
        default claims one after another."""
        async def one(claim: ManyClaim) -> Claim:
            namespace, key, count, wanted, at = claim
            if at is None:
                return await self.claim(namespace, key, count, wanted)
            return at, await self.claim_at(namespace, key, at, count, wanted), None

        return list(await each_in_turn(claims, one))

    def claim_now(self, namespace: str, key: str, count: int) -> tuple[int, list[bytes]]:
        """``claim`` without an event loop (the synchronous hit path; the caller holds the
        pipeline's lock). Only ledgers whose store reads without suspending offer it."""
        raise NotImplementedError(f"{type(self).__name__} has no synchronous claim")

    async def claim_at(self, namespace: str, key: str, pos: int, count: int,
                       wanted: Optional[Callable[[], bool]] = None) -> list[bytes]:
        """Take exactly positions ``pos .. pos+count-1`` if all are stored and free in this run
        (else take nothing and return ``[]``). Ledgers that cannot (shared runs) never do."""
        return []

    def claim_at_now(self, namespace: str, key: str, pos: int, count: int) -> list[bytes]:
        """``claim_at`` without an event loop (see :meth:`claim_now`)."""
        return []

    @abstractmethod
    async def consumption(self) -> Positions:
        """Every (namespace, key) this run has consumed samples of, with how many (> 0).

        A namespace that consumed ``n`` samples of a key was handed samples ``0 .. n-1`` (G1),
        so this is exactly what a replay of the run needs (see :mod:`cachesaver.bundle`).
        """


class PrivateLedger(Ledger):
    """In-memory positions for a run that no other process shares."""

    def __init__(self, store: Store, run_id: str) -> None:
        super().__init__(store, run_id)
        #: The next position of each (namespace, key): one past the highest position taken.
        self._positions: dict[tuple[str, str], int] = {}
        #: Positions below the next one that no claim took (left by :meth:`claim_at`).
        self._holes: dict[tuple[str, str], set[int]] = {}

    def _free(self, slot: tuple[str, str], pos: int, count: int) -> bool:
        return positions_free(self._positions, self._holes, slot, pos, count)

    def _take(self, slot: tuple[str, str], pos: int, count: int) -> None:
        take_positions(self._positions, self._holes, slot, pos, count)

    async def claim_at(self, namespace: str, key: str, pos: int, count: int,
                       wanted: Optional[Callable[[], bool]] = None) -> list[bytes]:
        slot = (namespace, key)
        if not self._free(slot, pos, count):
            return []
        taken = await self.store.read(key, pos, count)
        # Another claim may have run while the store read (Redis): check again (G1).
        if len(taken) < count or not self._free(slot, pos, count) or (wanted is not None and not wanted()):
            return []
        self._take(slot, pos, count)
        return taken

    def claim_at_now(self, namespace: str, key: str, pos: int, count: int) -> list[bytes]:
        slot = (namespace, key)
        if not self._free(slot, pos, count):
            return []
        taken = self.store.read_now(key, pos, count)
        if len(taken) < count:
            return []
        self._take(slot, pos, count)
        return taken

    async def position(self, namespace: str, key: str) -> int:
        return self._positions.get((namespace, key), 0)

    async def claim(
        self, namespace: str, key: str, count: int, wanted: Optional[Callable[[], bool]] = None,
        recent: Sequence[tuple[int, Sequence[bytes]]] = (),
    ) -> Claim:
        slot = (namespace, key)
        while True:
            pos = self._positions.get(slot, 0)
            taken = _from_recent(recent, pos, count)
            if taken is None:
                taken = await self.store.read(key, pos, count)
            # A store that really awaits (Redis) lets other claims run meanwhile: retry if one
            # moved this position, so a sample is never handed out twice (G1).
            if self._positions.get(slot, 0) != pos:
                continue
            # ...and the caller may have left meanwhile: then nothing is consumed.
            if len(taken) < count or (wanted is not None and not wanted()):
                return pos, [], None
            self._positions[slot] = pos + count
            return pos, taken, None

    async def claim_many(self, claims: Sequence[ManyClaim], lock: ContextManager[Any] = _NO_LOCK,
                         ) -> "list[Union[Claim, Exception, None]]":
        """One :meth:`Store.read_many` of every claim's samples at its position (the next one,
        or ``at`` where those positions are free); then, with no await between (so no other
        claim runs and no caller leaves meanwhile), each claim takes what was read as
        :meth:`claim` (or :meth:`claim_at`) would. A next position another claim moved during
        the read is None: that claim is made again on its own."""
        positions: list[int] = []
        reads: "list[tuple[str, int, int]]" = []
        for namespace, key, count, _, at in claims:
            pos = self._positions.get((namespace, key), 0) if at is None else at
            positions.append(pos)
            # (taken positions are not read: read_many answers a count of 0 with nothing)
            free = at is None or self._free((namespace, key), at, count)
            reads.append((key, pos, count if free else 0))
        got = await self.store.read_many(reads)
        with lock:  # (a synchronous hit on another thread may have moved a position meanwhile)
            return self._take_read(claims, positions, got)

    def _take_read(self, claims: Sequence[ManyClaim], positions: list[int],
                   got: "list[Union[list[bytes], Exception]]") -> "list[Union[Claim, Exception, None]]":
        """:meth:`claim_many`'s second half: each claim takes what was read for it, if its
        positions are still what they were when the read was sent."""
        out: "list[Union[Claim, Exception, None]]" = []
        for (namespace, key, count, wanted, at), pos, taken in zip(claims, positions, got):
            slot = (namespace, key)
            if isinstance(taken, Exception):
                out.append(taken)
            elif at is not None:
                if len(taken) < count or not self._free(slot, at, count) or not wanted():
                    out.append((at, [], None))
                else:
                    self._take(slot, at, count)
                    out.append((at, taken, None))
            elif self._positions.get(slot, 0) != pos:
                out.append(None)
            elif len(taken) < count or not wanted():
                out.append((pos, [], None))
            else:
                self._positions[slot] = pos + count
                out.append((pos, taken, None))
        return out

    def claim_now(self, namespace: str, key: str, count: int) -> tuple[int, list[bytes]]:
        """``claim`` for the synchronous hit path (``store.read_now``; the caller holds the
        pipeline's lock, so no other claim moves this position meanwhile)."""
        slot = (namespace, key)
        pos = self._positions.get(slot, 0)
        taken = self.store.read_now(key, pos, count)
        if len(taken) < count:
            return pos, []
        self._positions[slot] = pos + count
        return pos, taken

    async def consumption(self) -> Positions:
        """Per (namespace, key), one past the highest position taken: a bundle of it holds every
        sample handed out (and any hole below, a stored sample this run skipped)."""
        out: Positions = {}
        for (namespace, key), pos in sorted(self._positions.items()):
            if pos > 0:
                out.setdefault(namespace, {})[key] = pos
        return out

    def __len__(self) -> int:
        return len(self._positions)


class SharedLedger(Ledger):
    """Positions kept in the store under ``run_id``; claims are atomic across processes, and
    take the run's billing records with the samples where the store keeps them."""

    def __init__(self, store: Store, run_id: str) -> None:
        super().__init__(store, run_id)
        self.bills_in_store = store.keeps_billing

    async def claim_at(self, namespace: str, key: str, pos: int, count: int,
                       wanted: Optional[Callable[[], bool]] = None) -> list[bytes]:
        return await self.store.claim_at(self.run_id, namespace, key, pos, count)

    async def position(self, namespace: str, key: str) -> int:
        pos, _ = await self.store.claim(self.run_id, namespace, key, 0, partial=True)
        return pos

    async def claim(
        self, namespace: str, key: str, count: int, wanted: Optional[Callable[[], bool]] = None,
        recent: Sequence[tuple[int, Sequence[bytes]]] = (),
    ) -> Claim:
        # (``recent`` is not used: a shared run's claim must be the store's atomic one.)
        if self.bills_in_store:
            return await self.store.claim_billed(self.run_id, namespace, key, count)
        pos, taken = await self.store.claim(self.run_id, namespace, key, count, partial=False)
        return pos, taken, None

    async def claim_many(self, claims: Sequence[ManyClaim], lock: ContextManager[Any] = _NO_LOCK,
                         ) -> "list[Union[Claim, Exception, None]]":
        """The claims in one :meth:`Store.claim_many` and those ``at`` positions in one
        :meth:`Store.claim_at_many` (a pipeline of scripts each on Redis), each atomic in the
        store as :meth:`claim` and :meth:`claim_at` are."""
        out: "list[Union[Claim, Exception, None]]" = [None] * len(claims)
        nexts = [i for i, claim in enumerate(claims) if claim[4] is None]
        ats = [(i, at) for i, (_, _, _, _, at) in enumerate(claims) if at is not None]
        bills = self.bills_in_store
        if nexts:
            got = await self.store.claim_many(
                self.run_id, [(claims[i][0], claims[i][1], claims[i][2]) for i in nexts], billed=bills)
            for i, claim in zip(nexts, got):
                out[i] = claim if isinstance(claim, Exception) else (claim[0], claim[1], claim[2] if bills else None)
        if ats:
            taken = await self.store.claim_at_many(
                self.run_id, [(claims[i][0], claims[i][1], at, claims[i][2]) for i, at in ats])
            for (i, at), samples in zip(ats, taken):
                out[i] = samples if isinstance(samples, Exception) else (at, samples, None)
        return out

    async def consumption(self) -> Positions:
        """Read from the store's ledger rows of this ``run_id``: every process of the run counts."""
        out: Positions = {}
        async for run_id, namespace, key, pos in self.store.iter_ledger():
            if run_id == self.run_id and pos > 0:
                out.setdefault(namespace, {})[key] = pos
        return {ns: dict(sorted(keys.items())) for ns, keys in sorted(out.items())}


def _from_recent(recent: Sequence[tuple[int, Sequence[bytes]]], pos: int, count: int) -> Optional[list[bytes]]:
    """Samples ``pos .. pos+count-1`` if one of the ``recent`` appends holds them all."""
    for start, samples in recent:
        if start <= pos and pos + count <= start + len(samples):
            return list(samples[pos - start : pos - start + count])
    return None
