"""The store contract: append-only sample lists per key, plus ledgers for shared runs.

A store keeps bytes only (JSON records from :mod:`cachesaver.codec`), never pickles.

Sample lists: ``append`` is O(1) whatever the list length and returns the index of the first
appended sample; sample ``i`` never changes once written (G6). ``read`` returns the samples that
exist in ``[start, start + count)``; because appends are atomic, if sample ``i`` exists, so do all
samples before it.

Generation lease: before generating the samples a key lacks, the pipeline holds that key's
lease (:meth:`Store.generation_lease`). Stores shared by several processes (disk, Redis) make
it exclusive across them, so two processes missing one key do not both pay (G2). Stores
that live in one process need nothing more than the pipeline's own per-key turns.

Ledgers: only *shared* runs (an explicit ``run_id``) keep their ledger in the store; a private
run keeps it in memory (see :mod:`cachesaver.ledger`). ``claim`` is atomic across every process
that shares the store: it is what makes G1 hold when several workers run one experiment.

Billing records (G8 in shared runs): the process that generates a sample is not always the one
whose claim takes it first (another worker of the run may claim it as soon as it is stored). So a
shared run's appends record their samples as *unbilled in that run*, in the same transaction
(``append(..., unbilled_run=run_id)``), and :meth:`Store.claim_billed` takes those records with
the samples: each generated sample is billed exactly once, to the first response of the run that
delivers it, whichever process generated it. Private runs bill in their own process (each
claims what it generated), so they record nothing.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Optional, Sequence, TypeVar, Union

if TYPE_CHECKING:
    from .totals import KeyTotals

__all__ = ["Store", "LedgerEntry", "NO_LEASE"]

LedgerEntry = tuple[str, str, str, int]  # (run_id, namespace, key, samples consumed)


T = TypeVar("T")
R = TypeVar("R")


async def each_in_turn(items: Sequence[T], call: "Callable[[T], Awaitable[R]]") -> "list[Union[R, Exception]]":
    """``await call(item)`` for each item, one after another: its result, or the exception it
    raised (an error fails only its own item). The default of the stores' bulk calls."""
    out: "list[Union[R, Exception]]" = []
    for item in items:
        try:
            out.append(await call(item))
        except Exception as exc:
            out.append(exc)
    return out


def token_kwargs(token: Optional[str]) -> "dict[str, Any]":
    """The keyword that passes an append's ``token`` on (see :meth:`Store.append_token`), or
    none: a store that gives no tokens keeps the ``append`` signature without it."""
    return {} if token is None else {"token": token}


class Store(ABC):
    """Abstract sample store. Implementations: memory, disk (diskcache), redis."""

    #: Human-readable location, for errors and the CLI.
    location: str = ""
    #: True if no method ever suspends (its awaits complete synchronously): the pipeline may
    #: then run store checks inline, where no cancellation can interrupt them.
    inline_io: bool = False
    #: True if :meth:`read_now` and :meth:`id_positions_now` work from any thread without an
    #: event loop although they may wait on the network (Redis: one round trip each). A private
    #: run then serves a synchronous caller's hits on its own thread, under the pipeline's lock
    #: (see ``OnlineAPI.try_now``); the engine's ticks still read their first hit attempts
    #: together (:meth:`read_many`) and take the positions under that lock. Callers on an event
    #: loop keep going through the engine's loop, so no wait on the network blocks their loop.
    #: Stores with ``inline_io`` read without waiting on anything.
    sync_reads: bool = False
    #: True if :meth:`append_many` of several keys costs about as much as one :meth:`append`
    #: (one transaction): the pipeline then gathers the appends of one moment into one call.
    coalesce_appends: bool = False

    # -- sample lists ------------------------------------------------------------------------
    @abstractmethod
    async def read(self, key: str, start: int, count: int) -> list[bytes]:
        """Samples ``start .. start+count-1`` of ``key`` that exist (maybe fewer, maybe none)."""

    async def read_many(self, reads: Sequence[tuple[str, int, int]]) -> "list[Union[list[bytes], Exception]]":
        """:meth:`read` of several ``(key, start, count)``: for each, in order, its samples or
        the error that read raised (an error of one key fails only its own read).

        The engine reads a tick's hit attempts of a private run with one call. Stores whose
        reads are round trips answer them together (Redis: one pipeline); the default reads
        one after another."""
        return await each_in_turn(reads, lambda read: self.read(*read))

    def read_now(self, key: str, start: int, count: int) -> list[bytes]:
        """``read`` without an event loop, from any thread: the engine's synchronous hit path.

        Stores with ``inline_io`` (quick, local, thread-safe reads) or ``sync_reads`` (one
        blocking round trip, thread-safe) offer it; the others are always read through the
        engine's event loop.
        """
        raise NotImplementedError(f"{type(self).__name__} has no synchronous read")

    @abstractmethod
    async def append(self, key: str, samples: Sequence[bytes], meta: Optional[bytes] = None, *,
                     unbilled_run: Optional[str] = None) -> int:
        """Atomically append ``samples`` to ``key``'s list; return the index of the first one.

        ``meta`` (the canonical request JSON) is stored once per key, for ``inspect``/export.
        ``unbilled_run``: a shared run whose generation this is; stores that ``keep_billing``
        record the new samples as unbilled in that run, in the same transaction (see
        :meth:`claim_billed`). Stores whose :meth:`append_token` returns tokens also take
        ``token=``: an append sent again with the same token is applied at most once.
        """

    def append_token(self) -> Optional[str]:
        """A fresh token for one append, or None (the default): stores whose append may run
        after its caller was told it failed (Redis: a reply lost to a timeout, the command
        already sent) accept ``append(..., token=...)`` and apply one token at most once. The
        engine takes one per generated append, so that when the append fails it can send the
        same samples again with the same token (:class:`cachesaver.appends.ParkedAppends`)
        and the late first attempt and the re-send never both apply. Stores whose failed
        append applied nothing (memory; disk, whose transaction committed or not) need none:
        the engine then calls ``append`` without ``token``."""
        return None

    async def append_many(self, items: Sequence[tuple[str, Sequence[bytes], Optional[bytes]]], *,
                          unbilled_run: Optional[str] = None) -> list[int]:
        """``append`` for several ``(key, samples, meta)``; the first index of each, in order.

        Stores that set ``coalesce_appends`` do it in one transaction (all stored or none).
        """
        return [await self.append(key, samples, meta, unbilled_run=unbilled_run) for key, samples, meta in items]

    @abstractmethod
    async def length(self, key: str) -> int:
        """How many samples ``key`` holds."""

    # -- generation lease --------------------------------------------------------------------
    #: Seconds a miss waits for another process's lease of the same key before generating
    #: anyway (None: the store's default). Stores without a cross-process lease ignore it;
    #: batch mode sets it to ``math.inf`` (a batch keeps its lease until the provider answers).
    lease_max_wait: Optional[float] = None
    #: True if the lease, once held, says the list's length (``held.length``) in the round trip
    #: that took it: the engine then takes the lease first and plans with that length, instead
    #: of asking the length, planning, then taking the lease (one round trip fewer per miss).
    lease_reports_length: bool = False
    #: True if ``generation_lease(key, run_id=..., namespaces=...)`` also says those namespaces'
    #: ledger positions in that shared run, read with the lease (``held.positions``): the
    #: engine then plans a shared run's miss without a position read per namespace.
    lease_reports_positions: bool = False

    #: True if :meth:`append_and_release` ends the lease in the append's own step (Redis: one
    #: script): the engine then sends a miss's last append that way, and the lease's exit
    #: costs nothing more.
    append_ends_lease: bool = False

    async def append_and_release(self, key: str, samples: Sequence[bytes], meta: Optional[bytes],
                                 lease: Any, *, unbilled_run: Optional[str] = None,
                                 token: Optional[str] = None) -> int:
        """:meth:`append`, the last one under ``lease`` (what :meth:`generation_lease` yielded
        for ``key``): stores with ``append_ends_lease`` end the lease in the same atomic step,
        so another process waiting for it sees the samples as soon as it gets it. The default
        appends only (the lease ends when its body exits, as always). ``token``: see
        :meth:`append_token` (passed on only when given)."""
        return await self.append(key, samples, meta, unbilled_run=unbilled_run, **token_kwargs(token))

    def generation_lease(self, key: str) -> Any:
        """An async context manager held while the samples ``key`` lacks are generated.

        The default is a no-op, right for stores that live in one process. Shared stores
        return a lease exclusive across processes (with an expiry or kernel release, so a
        crashed holder cannot wedge the others). A store that knows it cannot keep new samples
        (read-only, a failed write) raises :class:`~cachesaver.errors.StoreError` here, before
        anything is paid for. Correctness (G1, G6) never depends on the lease, only G2/G8 do.
        """
        return NO_LEASE

    # -- shared ledgers ----------------------------------------------------------------------
    @abstractmethod
    async def claim(
        self, run_id: str, namespace: str, key: str, count: int, *, partial: bool
    ) -> tuple[int, list[bytes]]:
        """Atomically take the next unused samples of ``key`` for ``(run_id, namespace)``.

        Returns ``(position, samples)``: the ledger position before the claim and the samples
        taken, which are then consumed. With ``partial=False`` it takes ``count`` samples or none.
        """

    #: True if the store keeps shared runs' billing records (``append(unbilled_run=)`` and
    #: :meth:`claim_billed`); else the engine bills shared runs in the generating process.
    keeps_billing: bool = False

    async def claim_billed(self, run_id: str, namespace: str, key: str, count: int) -> tuple[int, list[bytes], list[int]]:
        """:meth:`claim` of exactly ``count`` samples (or none) that also bills them.

        Returns ``(position, samples, billed)``: ``billed`` holds the indices among those taken
        that an append recorded as unbilled in ``run_id``; their records are removed in the same
        atomic step, so each generated sample is billed once, to the first claim of the run
        that takes it (G8), in whatever process it runs.
        """
        pos, taken = await self.claim(run_id, namespace, key, count, partial=False)
        return pos, taken, []

    async def claim_many(self, run_id: str, claims: Sequence[tuple[str, str, int]], *,
                         billed: bool) -> "list[Union[tuple[int, list[bytes], list[int]], Exception]]":
        """Several claims of one run, each ``(namespace, key, count)``: :meth:`claim_billed`
        (``billed``) or :meth:`claim` of exactly ``count`` samples or none (billing ``[]``).
        For each, in order, ``(position, samples, billed indices)`` or the error that failed it;
        each claim is atomic on its own (a failed one takes nothing of its key, the others
        stand), none waits for another.

        The engine makes a tick's hit attempts of a shared run with one call. Stores whose
        claims are round trips send them together (Redis: one pipeline of claim scripts); the
        default claims one after another."""
        async def one(claim: tuple[str, str, int]) -> tuple[int, list[bytes], list[int]]:
            namespace, key, count = claim
            if billed:
                return await self.claim_billed(run_id, namespace, key, count)
            pos, taken = await self.claim(run_id, namespace, key, count, partial=False)
            return pos, taken, []

        return await each_in_turn(claims, one)

    # -- where request ids took their samples (exact replays by id) --------------------------
    #: Which ledger positions each explicit request id took in a (namespace, key), so that a
    #: later run gives a request with that id the same samples whatever the timing (G4). Stores
    #: that do not keep them (the default) replay by arrival order instead.
    keeps_id_positions: bool = False

    async def id_positions(self, key: str) -> "dict[tuple[str, str], tuple[int, int]]":
        """``{(namespace, request_id): (first position, count)}`` recorded for ``key``."""
        return {}

    async def id_positions_many(self, keys: Sequence[str]
                                ) -> "list[Union[dict[tuple[str, str], tuple[int, int]], Exception]]":
        """:meth:`id_positions` of several keys: for each, in order, its records or the error
        reading them raised (only its own). Stores whose reads are round trips answer them
        together (Redis: one pipeline); the default reads one key after another."""
        return await each_in_turn(keys, self.id_positions)

    def id_positions_now(self, key: str) -> "dict[tuple[str, str], tuple[int, int]]":
        """:meth:`id_positions` without an event loop (stores with ``inline_io`` or ``sync_reads``)."""
        return {}

    async def record_id_positions(self, taken: "Sequence[tuple[str, str, str, int, int]]") -> None:
        """Record ``(namespace, key, request_id, first position, count)`` entries in one write;
        an id already recorded for its ``(namespace, key)`` keeps its first record. Best effort:
        a record that cannot be written only means a later replay goes by arrival order."""

    def record_id_positions_now(self, taken: "Sequence[tuple[str, str, str, int, int]]") -> None:
        """:meth:`record_id_positions` without an event loop (stores with ``inline_io``)."""

    async def claim_at(self, run_id: str, namespace: str, key: str, pos: int, count: int) -> list[bytes]:
        """Atomically take exactly positions ``pos .. pos+count-1`` of ``key`` for ``(run_id,
        namespace)`` if all are stored and free (at or beyond the ledger position, or a hole a
        claim at a later position left below it); else take nothing and return ``[]``. A shared
        run's replay by request id (:mod:`cachesaver.idpositions`). Stores without it never do."""
        return []

    async def claim_at_many(self, run_id: str, claims: Sequence[tuple[str, str, int, int]]
                            ) -> "list[Union[list[bytes], Exception]]":
        """:meth:`claim_at` of several ``(namespace, key, position, count)`` of one run: for
        each, in order, the samples taken (or ``[]``) or the error that failed it (only its
        own). Stores whose claims are round trips send them together (Redis: one pipeline);
        the default claims one after another."""
        return await each_in_turn(claims, lambda claim: self.claim_at(run_id, *claim))

    # -- batch mode ---------------------------------------------------------------------------
    def batch_journal(self) -> Any:
        """Where batch mode records submitted provider batches (a
        :class:`cachesaver.batchapi.BatchJournal`), or None: this store cannot keep them, and
        batch mode refuses it."""
        return None

    # -- administration (CLI, export/import) -------------------------------------------------
    @abstractmethod
    def iter_keys(self) -> AsyncIterator[str]:
        """Every key that holds samples."""

    async def iter_key_sizes(self) -> AsyncIterator[tuple[str, int, int, Optional[bytes]]]:
        """``(key, samples, bytes of its samples, meta)`` for every key, for ``cachesaver
        stats``. Stores that can compute it in bulk (disk: one SQL query) override this; the
        default reads each key's samples, one key at a time (memory bounded by the largest key)."""
        async for key in self.iter_keys():
            n = await self.length(key)
            size = sum(len(raw) for raw in await self.read(key, 0, n))
            yield key, n, size, await self.get_meta(key)

    async def key_totals(self, top: int = 0) -> "KeyTotals":
        """Keys, samples and bytes per model, and the ``top`` keys with the most samples (see
        :mod:`.totals`), in memory that does not grow with the number of keys. The default
        reads :meth:`iter_key_sizes` one key at a time (Redis yields those a SCAN batch per
        round trip); the disk store aggregates in SQL."""
        from .totals import stream_key_totals

        return await stream_key_totals(self, top)

    @abstractmethod
    async def get_meta(self, key: str) -> Optional[bytes]:
        """The canonical request JSON stored with ``key`` (None if unknown)."""

    @abstractmethod
    def iter_ledger(self) -> AsyncIterator[LedgerEntry]:
        """Every shared-run ledger entry."""

    @abstractmethod
    async def delete(self, key: str) -> int:
        """Remove ``key``'s samples, meta and ledger entries; return samples removed."""

    @abstractmethod
    async def clear(self) -> None:
        """Remove everything this store wrote (and nothing else)."""

    def after_fork(self) -> None:
        """Called in a forked child before the store is used there: drop the parent's
        connections (SQLite and sockets must not be shared across ``fork``) and reconnect."""

    async def aclose(self) -> None:
        """Release connections/handles. The store must not be used afterwards."""

    def close(self) -> None:
        """Synchronous close for stores that hold no async resources."""


class _NoLease:
    """The lease of single-process stores: holds nothing, costs nothing."""

    __slots__ = ()
    acquired = True

    async def __aenter__(self) -> "_NoLease":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None


NO_LEASE = _NoLease()
