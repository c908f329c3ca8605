"""Cacher: serve demands from the store, ask the model only for what is missing.

For each key it waits for its turn (so two batches never both pay for one missing sample),
then repeats: compute how many samples the most demanding namespace lacks beyond what is stored
(G2), make one model call for exactly that many, shared by every namespace in the batch (G3),
append them (committed before anyone sees them: G6), and claim each demand's samples from its
namespace's ledger (G1). A failed call stores nothing and claims nothing (G5). A model that
returns fewer samples than asked is asked again for the rest; extra samples stay stored.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from typing import Any, Awaitable, Callable, ContextManager, Optional, Sequence, Union

from .appends import Appends, ParkedAppends
from .codec import decode_sample, encode_sample
from .deduplicator import Demand
from .errors import CacheSaverError, CorruptSampleError, ModelOutputError, ReadOnlyStoreError, StoreError
from .generation import Generation, reset_generation, set_generation
from .idpositions import IdPositions
from .keys import keyed_json
from .ledger import Claim, Ledger, PrivateLedger, SharedLedger
from .modelcalls import ModelCalls
from .offline import offline_miss
from .pending import Pending
from .stats import Stats
from .stores.base import NO_LEASE, Store, token_kwargs
from .typedefs import Request, Response, Usage

__all__ = ["Cacher", "encode_response"]

log = logging.getLogger("cachesaver.cacher")

Generate = Callable[[Request], Awaitable[Response]]

#: A model that keeps returning fewer samples than asked is given up on after this many short answers.
MAX_CALLS_PER_DEMAND = 16


@dataclasses.dataclass(eq=False)
class _Call:
    """Samples ``start .. stop-1`` of a key, produced by one model call in this round."""

    start: int
    stop: int
    samples: list = dataclasses.field(default_factory=list)  # what was appended (claims read it)
    receivers: int = 0          # requests that received at least one of its samples
    original_given: bool = False
    #: The request the model streamed sample ``start`` to as it was generated (it may have been
    #: shown it: ``Generation.live``), or None.
    shown_to: Optional[Request] = None


#: A claim to hand out: the demand, the position claimed, the samples, the billing indices (see
#: ``Ledger.claim``), and the caller that must get the samples at an offset of them, if any
#: (:meth:`Cacher._shown`).
Delivery = tuple[Demand, int, list, Optional[Sequence[int]], Optional[tuple[Pending, int]]]


class Cacher:
    """Serves demands from the store and the model (see the module docstring).

    ``lock`` guards what a synchronous hit on another thread also touches (ledger positions,
    the unbilled set, the counters): the pipeline passes a real lock when it offers that hit
    path (see ``OnlineAPI.try_now``), else a no-op. It is held around code that does not
    suspend, with one exception: on a store whose synchronous reads wait on the network (Redis,
    ``Store.sync_reads``) a miss's claim that reads samples back from the store holds it for
    that round trip, so a synchronous hit on another thread waits for the claim instead of
    interleaving with it (G1). Nothing holding it ever waits for a caller's thread.
    """

    def __init__(self, store: Store, ledger: Ledger, generate: Generate, stats: Stats,
                 model_name: str = "model", lock: Optional[ContextManager[Any]] = None, *,
                 offline: bool = False, model_id: Optional[str] = None, max_call_n: int = 128) -> None:
        self.store = store
        #: The most samples one model call is asked for (the pipeline's max_n): more missing
        #: samples than that (requests merged in a batch) take several calls.
        self.max_call_n = max_call_n
        self._model_id = model_id  # keyed with every request (Pipeline.model_id)
        self.offline = offline  # True: a miss raises OfflineMissError instead of generating
        #: The model calls in flight, and whether new ones may start (the process is exiting).
        self.calls = ModelCalls()
        self.ledger = ledger
        # A shared run's generations are recorded as unbilled in the store (see _response).
        self._appends = Appends(store, ledger.run_id if ledger.bills_in_store else None)
        #: Generated samples whose append failed with a StoreError, sent again until stored
        #: (paid for: a retry must find them, not pay again). Closed by the pipeline.
        self.parked = ParkedAppends(store, self._appends.unbilled_run)
        self._generate = generate
        self.stats = stats
        self._model_name = model_name
        self.lock: ContextManager[Any] = lock if lock is not None else contextlib.nullcontext()
        #: Whether synchronous hits on other threads share the ledger's positions (a real lock).
        self._threaded = lock is not None
        # Per key, the batches waiting for their turn, in the order they were formed.
        self._turns: dict[str, Optional[collections.deque[asyncio.Future[None]]]] = {}
        # Samples this pipeline generated that no response has claimed yet (G8 billing).
        self._unbilled: dict[str, set[int]] = {}
        self._hook_tasks: set[asyncio.Task[None]] = set()  # on_stored hooks of late appends
        #: Where explicit request ids took their samples (private runs on stores that keep it).
        self.ids: Optional[IdPositions] = (
            IdPositions(store) if store.keeps_id_positions else None)

    # -- full hits (no generation) -----------------------------------------------------------
    async def try_hit(self, item: Pending) -> bool:
        """Serve ``item`` entirely from the store if its namespace has ``n`` unused samples:
        the positions its id took in an earlier run when they are free, else the next ones."""
        request = item.request
        namespace, n = request.namespace, request.n
        ids = self.ids if item.explicit_id else None
        if ids is not None:
            record = await ids.lookup(namespace, item.key, request.request_id)
            if record is not None and record[1] == n:
                raws = await self.ledger.claim_at(namespace, item.key, record[0], n, item.wanted)
                if raws:
                    self._deliver_one(item, record[0], raws, calls=())
                    return True
        pos, raws, billed = await self.ledger.claim(namespace, item.key, n, item.wanted)
        if not raws:
            # A caller that left (or is being cancelled) is finished with, not sent on as a
            # miss: its cancellation cancels the future.
            return not item.wanted()
        if ids is not None:
            ids.note(namespace, item.key, request.request_id, pos, n)
        self._deliver_one(item, pos, raws, calls=(), billed=billed)
        return True

    def batches_hits(self, item: Pending) -> bool:
        """Whether ``item``'s hit attempt may go in :meth:`try_hits`: a request whose id this
        pipeline looks up needs its key's records read first (:meth:`load_ids`)."""
        return self.ids is None or not item.explicit_id or self.ids.loaded(item.key)

    async def load_ids(self, items: list[Pending]) -> None:
        """Read the request-id records of the keys of ``items`` that have ids, together (one
        round trip on Redis), so that their hit attempts can go in :meth:`try_hits`."""
        if self.ids is not None:
            keys = [item.key for item in items if item.explicit_id]
            if keys:
                await self.ids.load(keys)

    async def try_hits(self, items: list[Pending]) -> "list[Union[bool, Exception]]":
        """:meth:`try_hit` of several items, each of its own (namespace, key) and each allowed
        by :meth:`batches_hits`: their claims go to the store together (one round trip on
        Redis, instead of one per item). A request whose id took positions in an earlier run
        claims those first, as :meth:`try_hit` does; if they are not free, its next samples in
        a second bulk claim. For each, in order: True if served (or its caller left), False if
        it missed, or the error that failed it (only its own)."""
        ids = self.ids
        out: "list[Union[bool, Exception]]" = [False] * len(items)
        todo: list[tuple[int, Optional[int]]] = []  # (item, positions its id took earlier)
        for i, item in enumerate(items):
            at = None
            if ids is not None and item.explicit_id:
                request = item.request
                record = ids.lookup_loaded(request.namespace, item.key, request.request_id)
                if record is not None and record[1] == request.n:
                    at = record[0]
            todo.append((i, at))
        alone: list[int] = []  # not decided by a bulk claim: claimed on its own below
        while todo:
            claims = await self.ledger.claim_many(
                [(items[i].request.namespace, items[i].key, items[i].request.n, items[i].wanted, at)
                 for i, at in todo], self.lock)
            next_round: list[tuple[int, Optional[int]]] = []
            with self.lock:  # (the counters and billing flags a synchronous hit also touches)
                self._settle_claims(items, todo, claims, out, alone, next_round)
            todo = next_round
        for i in alone:
            try:
                if self._threaded:  # (positions that synchronous hits also move: claimed under the lock)
                    with self.lock:
                        out[i] = self.try_hit_now(items[i])
                else:
                    out[i] = await self.try_hit(items[i])
            except Exception as exc:
                out[i] = exc
        return out

    def _settle_claims(self, items: list[Pending], todo: "list[tuple[int, Optional[int]]]",
                       claims: "list[Union[Claim, Exception, None]]", out: "list[Union[bool, Exception]]",
                       alone: list[int], next_round: "list[tuple[int, Optional[int]]]") -> None:
        """:meth:`try_hits`' handling of one bulk claim's answers: deliver, fail, or note for a
        next round (``next_round``) or a claim on its own (``alone``)."""
        ids = self.ids
        for (i, at), claim in zip(todo, claims):
            item = items[i]
            if claim is None:
                alone.append(i)
            elif isinstance(claim, Exception):
                out[i] = claim
            elif not claim[1]:
                if at is not None and item.wanted():
                    next_round.append((i, None))  # its earlier positions are taken: the next ones
                else:
                    out[i] = not item.wanted()
            else:
                if ids is not None and at is None and item.explicit_id:
                    ids.note(item.request.namespace, item.key, item.request.request_id,
                             claim[0], item.request.n)
                self._deliver_one(item, claim[0], claim[1], calls=(), billed=claim[2])
                out[i] = True

    def try_hit_now(self, item: Pending) -> bool:
        """:meth:`try_hit` for stores that read without suspending (the caller holds
        :attr:`lock`): nothing here awaits, so the lock is never held across an await."""
        if not item.wanted():
            return True  # its caller left: finished with, not sent on as a miss
        request = item.request
        try:
            response = self.hit_now(request, item.key, explicit_id=item.explicit_id)
        except CacheSaverError as exc:
            item.fail(exc)
            return True
        if response is None:
            return False
        item.resolve(response)
        return True

    def hit_now(self, request: Request, key: str, *, explicit_id: bool) -> Optional[Response]:
        """The synchronous full hit: ``request``'s samples from the store, or None (a miss).

        For private runs on stores with ``read_now``; the caller holds :attr:`lock`. A corrupt
        sample raises ``CorruptSampleError`` here, as it fails the request on the async path.
        A request whose caller gave its id (``explicit_id``) gets the positions that id took in
        an earlier run when they are free (:mod:`cachesaver.idpositions`).
        """
        namespace, n, request_id = request.namespace, request.n, request.request_id
        ids = self.ids if explicit_id else None
        if ids is not None:
            record = ids.lookup_now(namespace, key, request_id)
            if record is not None and record[1] == n:
                raws = self.ledger.claim_at_now(namespace, key, record[0], n)
                if raws:
                    return self._response(namespace, key, record[0], raws, calls=())
        pos, raws = self.ledger.claim_now(namespace, key, n)
        if not raws:
            return None
        if ids is not None:
            ids.note(namespace, key, request_id, pos, n)
        return self._response(namespace, key, pos, raws, calls=())

    def take_id_positions(self) -> list[tuple[str, str, str, int, int]]:
        """The request-id records gathered since the last call, for the pipeline to write."""
        ids = self.ids
        if ids is None:
            return []
        with self.lock:
            return ids.take_unwritten()

    # -- misses ------------------------------------------------------------------------------
    async def serve(self, demands: list[Demand]) -> None:
        """Serve every demand; each key is handled by one task, keys run concurrently.

        Turns on each key are taken *before* the first await, so batches are served per key in
        the order they were formed; that order is what a replay reproduces (G4), and waiting for
        the previous batch of a key is what keeps two batches from paying for one sample (G2).
        """
        by_key: dict[str, list[Demand]] = {}
        for demand in demands:
            by_key.setdefault(demand.key, []).append(demand)
        jobs = [self._serve_key(key, group, self._take_turn(key)) for key, group in by_key.items()]
        if len(jobs) == 1:
            await jobs[0]
        else:
            await asyncio.gather(*jobs)

    def _take_turn(self, key: str) -> "Optional[asyncio.Future[None]]":
        """This batch's turn on ``key``: None if the key is free (the turn is taken at once, and
        nothing is allocated: the common case), else a future set when the turn comes.

        ``_turns[key]`` exists while someone holds the key; it holds the waiters (a deque, made
        when the first one arrives), in the order they will get it.
        """
        turns = self._turns
        if key not in turns:
            turns[key] = None
            return None
        waiters = turns[key]
        if waiters is None:
            waiters = turns[key] = collections.deque()
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(turn)
        return turn

    def _end_turn(self, key: str, turn: "Optional[asyncio.Future[None]]") -> None:
        waiters = self._turns.get(key)
        if turn is not None and not (turn.done() and not turn.cancelled()):
            # A waiter that left before its turn came: it only leaves the line.
            if waiters is not None and turn in waiters:
                waiters.remove(turn)
            return
        # The holder is done: the next waiter still waiting gets the key, or nobody holds it.
        while waiters:
            following = waiters.popleft()
            if not following.done():
                following.set_result(None)
                return
        del self._turns[key]

    async def _serve_key(self, key: str, demands: list[Demand], turn: "Optional[asyncio.Future[None]]") -> None:
        try:
            if turn is not None:
                await turn
            await self._serve_locked(key, demands)
        except BaseException as exc:  # never leave a caller waiting
            for demand in demands:
                for item in demand.items:
                    item.fail(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
        finally:
            self._end_turn(key, turn)

    async def _serve_locked(self, key: str, demands: list[Demand]) -> None:
        calls: list[_Call] = []
        deliveries: list[Delivery] = []
        pending = demands if all(d.n > 0 for d in demands) else [d for d in demands if d.n > 0]
        stalled = 0
        last_seen: Optional[list[int]] = None
        try:
            while pending:
                generated = len(calls)
                if not await self._fill(key, pending, calls):
                    return  # a model call failed; its waiters got the error
                with self.lock:
                    short, seen = await self._claim(key, pending, deliveries, calls)
                if len(short) == len(pending) and len(calls) == generated and seen == last_seen:
                    # Nothing generated, nothing claimed, and no position moved since the last
                    # such round: the plan saw samples the claims cannot take, so the store is
                    # inconsistent. (Positions that moved mean other processes of the run took
                    # the samples first: contention, so the next round plans again.)
                    stalled += 1
                    if stalled >= 3:
                        raise CorruptSampleError(
                            f"key {key}: the store reports enough samples but they cannot be "
                            "read (a deleted row or file, or a corrupt ledger); remove the key "
                            "with `cachesaver prune --key`"
                        )
                    await asyncio.sleep(0)
                else:
                    stalled = 0
                last_seen = seen if len(short) == len(pending) and len(calls) == generated else None
                pending = short
        finally:
            with self.lock:
                self._deliver(deliveries, calls)  # what was claimed is handed out, whatever happened

    async def _plan(self, key: str, pending: list[Demand], length: Optional[int] = None,
                    positions: Optional[dict[str, int]] = None) -> tuple[int, Generation]:
        """How many samples the most demanding namespace lacks beyond the stored list (G2), and
        who the first new sample will be handed to (see :mod:`cachesaver.generation`).

        Each demand's live items take its namespace's samples in order from its ledger position;
        of the items that will receive the first new sample (index = the list's length), the
        one whose request goes to the model is preferred, else the first in ``request_id`` order.
        ``positions``: ledger positions per namespace read with the lease (else asked here).
        """
        if length is None:
            length = await self.store.length(key)
        target = 0
        receivers: list[Pending] = []
        for demand in pending:
            pos = positions.get(demand.namespace) if positions is not None else None
            if pos is None:
                pos = await self.ledger.position(demand.namespace, key)
            target = max(target, pos + demand.n)
            for item in demand.live_items():
                if pos <= length < pos + item.request.n:
                    receivers.append(item)
                    break
                pos += item.request.n
        first: Optional[Pending] = None
        representative = _first_live(pending)
        if representative is not None and _holds(receivers, representative):
            first = representative
        elif receivers:
            first = min(receivers, key=lambda item: item.request.request_id)
        missing = target - length
        receiver = first.request if first is not None else None
        return missing, Generation(key, length, max(missing, 0), receiver)

    async def _fill(self, key: str, pending: list[Demand], calls: list[_Call]) -> bool:
        """Generate until the list holds what ``pending`` needs; False if a model call failed.

        Stores shared by several processes (disk, Redis) make the generation lease exclusive
        across them: the holder generates, the others wait and then usually find the samples
        already there (a no-op for single-process stores).
        """
        if self.parked.holds(key):
            # Samples of this key already paid for wait to be stored: store them first (the
            # plan then counts them), or fail as a generation would while the store is out.
            await self.parked.flush_key(key)
        if not self.offline and self.store.lease_reports_length:
            return await self._fill_under_lease(key, pending, calls)
        missing, generation = await self._plan(key, pending)
        if missing <= 0:
            return True
        if self.offline:
            raise await offline_miss(self.store, self.ledger, key, pending)
        lease = self.store.generation_lease(key)
        if lease is NO_LEASE:  # nobody else generates into this store: the plan stands
            return await self._generate_missing(key, pending, calls, missing, generation)
        async with lease:
            # Another process may have generated since the plan: plan again, unless the list
            # is as long as planned and the positions are this process's own (a private ledger,
            # whose positions of these namespaces only this key's turn moves).
            length = await self.store.length(key)
            if not isinstance(self.ledger, PrivateLedger) or length != generation.first_index:
                missing, generation = await self._plan(key, pending, length)
            return await self._generate_missing(key, pending, calls, missing, generation)

    async def _fill_under_lease(self, key: str, pending: list[Demand], calls: list[_Call]) -> bool:
        """:meth:`_fill` for stores whose lease reports the list's length (Redis): take the
        lease, plan with that length, generate what is missing, all under the lease. A miss
        costs the lease's round trip instead of a length read plus the lease's."""
        if self.store.lease_reports_positions and isinstance(self.ledger, SharedLedger):
            lease = self.store.generation_lease(  # type: ignore[call-arg]  # stores that report them
                key, run_id=self.ledger.run_id, namespaces=[demand.namespace for demand in pending])
        else:
            lease = self.store.generation_lease(key)
        async with lease as held:
            length = getattr(held, "length", None)
            if not isinstance(length, int) or length < 0:  # (the wait gave up: no length)
                length = await self.store.length(key)
            missing, generation = await self._plan(key, pending, length, getattr(held, "positions", None))
            if missing <= 0:
                return True
            return await self._generate_missing(key, pending, calls, missing, generation, held)

    async def _generate_missing(self, key: str, pending: list[Demand], calls: list[_Call],
                                missing: int, generation: Generation, lease: Any = None) -> bool:
        """Call the model until ``missing`` samples are stored. ``lease``: the generation lease
        held around this, on a store that can end it with the last append (the call that
        brings the last missing samples): one round trip fewer per miss."""
        if not self.store.append_ends_lease:
            lease = None
        meta: Optional[bytes] = None
        short_calls = 0
        while missing > 0:
            if short_calls >= MAX_CALLS_PER_DEMAND:
                raise ModelOutputError(
                    f"{self._model_name} returned too few samples {MAX_CALLS_PER_DEMAND} "
                    f"times in a row for key {key}; check that it honours request.n"
                )
            representative = _first_live(pending)
            if representative is None:
                return True  # every caller left: generate nothing more
            if meta is None:
                meta = representative.meta
                if meta is None:
                    meta = keyed_json(representative.request, self._model_id)[1]
            asked = min(missing, self.max_call_n)  # one call never asks for more than a request may
            if self.calls.refused is not None:  # exiting: a call sent now could not be stored
                for demand in pending:
                    for item in demand.items:
                        item.fail(self.calls.refused)
                return False
            try:
                call = await self._call_model(key, representative.request, asked, meta, generation,
                                              lease, missing)
            except Exception as exc:
                self.stats.failed_calls += 1
                # The type only: provider messages can echo request details (even credentials).
                log.debug("model call failed for key %s: %s", key, type(exc).__name__)
                for demand in pending:
                    for item in demand.items:
                        item.fail(exc)
                return False
            calls.append(call)
            missing -= call.stop - call.start
            if call.stop - call.start < asked:
                short_calls += 1
            # A short answer is topped up; its first sample went to the receiver planned above.
            generation = Generation(key, call.stop, max(missing, 0), None)
        return True

    async def _claim(self, key: str, pending: list[Demand], deliveries: list,
                     calls: list[_Call]) -> tuple[list[Demand], list[int]]:
        """Claim each demand's samples (all or nothing); return the demands still short, and
        the ledger positions their claims found (they move when other processes claim).
        What this round appended is claimed from memory where the ledger allows (``recent``)."""
        short, seen = [], []
        recent = [(call.start, call.samples) for call in calls]
        # Calls streamed live to a caller (private runs only: see _shown); most rounds have none.
        streamed = [call for call in calls if call.shown_to is not None] \
            if isinstance(self.ledger, PrivateLedger) else []
        for demand in pending:
            n = demand.n
            if n == 0:
                continue
            shown = await self._shown(demand, key, streamed) if streamed else None
            skipped = shown[2] if shown is not None else 0
            pos, raws, billed = await self.ledger.claim(demand.namespace, key, n + skipped, recent=recent)
            if raws:
                pinned = None
                if shown is not None and 0 <= shown[1] - pos <= len(raws) - shown[0].request.n:
                    pinned = (shown[0], shown[1] - pos)
                deliveries.append((demand, pos, raws, billed, pinned))
            else:  # another process took them first: go round again
                short.append(demand)
                seen.append(pos)
        return short, seen

    async def _shown(self, demand: Demand, key: str, streamed: list[_Call]) -> Optional[tuple[Pending, int, int]]:
        """The caller of ``demand`` a ``streamed`` call of this round showed its first sample
        to, when that sample now lies beyond what its claim would give it (callers ahead of it
        in its namespace left after the plan): ``(caller, index of its first sample, samples
        to skip)``. The skipped samples (theirs) go to nobody, so that the caller is handed the
        sample it was shown and no later request of the namespace is handed it again (G1).
        Private runs only: in a shared run another process may claim first (the receiver is a
        prediction)."""
        for call in streamed:
            ahead = 0
            for item in demand.live_items():
                if item.request is call.shown_to:
                    # A call is streamed only when it is the one sample missing, so the sample
                    # shown is the last of the caller's (the others were stored already).
                    first = call.start - item.request.n + 1
                    skipped = first - (await self.ledger.position(demand.namespace, key) + ahead)
                    return (item, first, skipped) if skipped > 0 else None
                ahead += item.request.n
        return None

    async def _call_model(self, key: str, template: Request, n: int, meta: bytes,
                          generation: Generation, lease: Any = None, missing: int = 0) -> _Call:
        """One model call for ``n`` samples; returns where its samples were appended. With a
        ``lease``, an answer that brings all ``missing`` samples ends the lease in its append
        (nothing else is done under the lease after it), unless hooks still run after it."""
        request = template if template.n == n else dataclasses.replace(template, n=n)
        self.stats.model_calls += 1
        self.stats.samples_requested += n
        in_flight = self.calls.start()  # from the call until its samples are stored
        try:
            if generation.meta is None:  # (frozen: set once, before the model sees it, as when_stored does)
                object.__setattr__(generation, "meta", meta)
            token = set_generation(generation)
            try:
                encoded = self._encode(key, n, await self._generate(request))
            finally:
                reset_generation(token)
            # Only the encoded samples stay referenced while the append waits (with thousands of
            # keys generating at once, what each waiting frame holds is the collector's work).
            k = len(encoded)
            append_token = self.store.append_token()
            try:
                if lease is not None and k >= missing and not generation.on_stored:
                    start = await self.store.append_and_release(
                        key, encoded, meta, lease, unbilled_run=self._appends.unbilled_run,
                        **token_kwargs(append_token))
                else:
                    start = await self._appends.append(key, encoded, meta, append_token)
            except StoreError as exc:
                raise self._park(key, encoded, meta, append_token, generation, exc) from exc
            await self._run_hooks(key, generation, start)
        finally:
            self.calls.end(in_flight)
        self._note_generated(key, start, k)
        return _Call(start, start + k, encoded, shown_to=generation.first_receiver if generation.live else None)

    def _note_generated(self, key: str, start: int, k: int) -> None:
        """Samples ``start .. start+k-1`` of ``key`` were generated here and are stored."""
        with self.lock:
            if self._appends.unbilled_run is None:  # else the store keeps them (shared runs)
                self._unbilled.setdefault(key, set()).update(range(start, start + k))
            self.stats.samples_returned += k

    async def _run_hooks(self, key: str, generation: Generation, start: int) -> None:
        for hook in generation.on_stored or ():
            try:
                await hook(start)
            except Exception as exc:  # the samples are stored; a hook only keeps records
                log.warning("after storing samples of key %s: %s", key, exc)

    def _park(self, key: str, encoded: list[bytes], meta: bytes, token: Optional[str],
              generation: Generation, exc: StoreError) -> StoreError:
        """The append of samples just paid for failed: keep them to send again (see
        :class:`ParkedAppends`) and return the error for the waiting callers, saying so.
        A store that refuses writes for good (read-only) keeps nothing."""
        if isinstance(exc, ReadOnlyStoreError):
            return exc
        k = len(encoded)

        def stored(start: int) -> None:
            self._note_generated(key, start, k)
            if generation.on_stored:
                task = asyncio.ensure_future(self._run_hooks(key, generation, start))
                self._hook_tasks.add(task)
                task.add_done_callback(self._hook_tasks.discard)

        if not self.parked.park(key, encoded, meta, token, stored):
            return exc
        return StoreError(
            f"{exc} The {k} samples the model generated for this request are kept and sent "
            "to the store again in the background until stored (or until the pipeline "
            "closes); a retry of the request reuses them instead of paying again.")

    def _encode(self, key: str, n: int, response: Any) -> list[bytes]:
        return encode_response(key, n, response, self._model_name)

    # -- delivery and flags (G8) -------------------------------------------------------------
    def _deliver(self, deliveries: list[Delivery], calls: list[_Call]) -> None:
        # First pass: how many requests share each call (a call shared by >= 2 is "merged").
        plan: "list[tuple[Pending, int, list[bytes], Optional[Sequence[int]]]]" = []
        for demand, pos, raws, billed, pinned in deliveries:
            offset = 0
            for item in demand.live_items():
                if pinned is not None and item is pinned[0]:
                    offset = max(offset, pinned[1])  # the sample it was shown (see _shown)
                n = item.request.n
                part = raws[offset : offset + n]
                if len(part) < n:  # the caller count changed under us; nothing to hand out
                    break
                plan.append((item, pos + offset, part, billed))
                offset += n
        for _item, pos, part, _billed in plan:
            for call in calls:
                if call.start < pos + len(part) and pos < call.stop:
                    call.receivers += 1
        ids = self.ids
        if ids is not None:
            for item, pos, part, _billed in plan:
                if item.explicit_id:
                    ids.note(item.request.namespace, item.key, item.request.request_id, pos, len(part))
        for item, pos, part, billed in plan:
            self._deliver_one(item, pos, part, calls, billed)

    def _deliver_one(self, item: Pending, pos: int, raws: list[bytes], calls,
                     billed: Optional[Sequence[int]] = None) -> None:
        try:
            response = self._response(item.request.namespace, item.key, pos, raws, calls, billed)
        except CacheSaverError as exc:
            item.fail(exc)
            return
        item.resolve(response)

    def _response(self, namespace: str, key: str, pos: int, raws: list[bytes], calls,
                  billed: Optional[Sequence[int]] = None) -> Response:
        """Decode claimed samples and bill them (G8): the first claimer of a generated sample
        pays for it; everyone else is told it came from the store.

        ``billed``: the indices a shared run's claim took billing records of (the store keeps
        who has paid, since any worker of the run may claim first); None: the samples this
        process generated and no response has taken yet (a private run).
        """
        counters = self.stats.ns(namespace)
        own = billed is None  # billing kept by this process (private run)
        unbilled: Optional[set[int]] = self._unbilled.get(key) if own else set(billed or ())
        data, cached, duplicated, shares = [], [], [], []
        paid = Usage()
        originals = 0
        try:
            for offset, raw in enumerate(raws):
                index = pos + offset
                record = decode_sample(raw, key=key, index=index)
                data.append(record.data)
                shares.append(Usage(record.prompt_tokens, record.completion_tokens, record.cost))
                is_new = unbilled is not None and index in unbilled
                if is_new:
                    unbilled.discard(index)  # type: ignore[union-attr]  # is_new implies a set
                    counters.samples_generated += 1
                    counters.prompt_tokens_billed += record.prompt_tokens
                    counters.completion_tokens_billed += record.completion_tokens
                    counters.cost_billed += record.cost
                    paid = paid + Usage(record.prompt_tokens, record.completion_tokens, record.cost)
                else:
                    counters.samples_from_store += 1
                    counters.prompt_tokens_saved += record.prompt_tokens
                    counters.completion_tokens_saved += record.completion_tokens
                    counters.cost_saved += record.cost
                cached.append(not is_new)
                dup = False
                for call in calls:
                    if call.start <= index < call.stop:
                        if call.original_given:
                            dup = call.receivers >= 2
                        else:
                            call.original_given = True
                            counters.model_calls += 1
                            originals += 1
                        break
                if dup:
                    counters.samples_merged += 1
                duplicated.append(dup)
        finally:
            if own and unbilled is not None and not unbilled:
                self._unbilled.pop(key, None)
        return Response(data=data, cached=cached, duplicated=duplicated, usage=paid,
                        sample_usage=shares, key=key, model_calls=originals)


def encode_response(key: str, n: int, response: Any, model_name: str) -> list[bytes]:
    """A model's samples as stored records, each with its share of the call's usage (what the
    engine appends; ``cachesaver batches collect`` stores a batch line's answer through it too)."""
    if not isinstance(response, Response) or not isinstance(response.data, list):
        raise ModelOutputError(
            f"{model_name}.request() must return cachesaver.typedefs.Response with a "
            f"list in .data, got {type(response).__name__}"
        )
    samples = response.data
    if not samples:
        raise ModelOutputError(
            f"{model_name} returned no samples for n={n} (key {key}); return a "
            "Response whose data holds up to n samples"
        )
    usage = response.usage if isinstance(response.usage, Usage) else Usage()
    k = len(samples)
    shares = response.sample_usage
    if not (isinstance(shares, list) and len(shares) == k and all(isinstance(u, Usage) for u in shares)):
        shares = usage.split(k)  # a model that made several calls gives each call's split
    return [
        encode_sample(sample, share.prompt_tokens, share.completion_tokens, share.cost,
                      where=f"sample {i + 1} returned by {model_name} for key {key}")
        for i, (sample, share) in enumerate(zip(samples, shares))
    ]


def _holds(items: list[Pending], wanted: Pending) -> bool:
    """``wanted`` is one of ``items`` (by identity)."""
    for item in items:
        if item is wanted:
            return True
    return False


def _first_live(demands: list[Demand]) -> Optional[Pending]:
    """The live item with the smallest request_id: its request is sent to the model."""
    best: Optional[Pending] = None
    for demand in demands:
        for item in demand.items:
            if not item.future.done() and (best is None or item.request.request_id < best.request.request_id):
                best = item
    return best
