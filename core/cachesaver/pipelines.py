"""The pipelines users build: ``OnlineAPI`` for API models, ``LocalAPI`` for local batch models.

OnlineAPI:  caller -> hit check -> Batcher -> Reorderer -> Deduplicator -> Cacher -> model.request
LocalAPI:   caller -> Cacher -> Batcher -> model.batch_request   (hardware batching of misses)

Requests that arrive in the same event-loop tick are checked against the store together, in
``request_id`` order; a request whose samples are all stored returns at once and never waits
out the batch window.

Synchronous hits: for a private run on a store with quick local reads (memory, disk) or
synchronous reads over the network (Redis: one blocking round trip), ``OnlineAPI.try_now``
serves a full hit on the *calling* thread, with no event loop at all; this is how adapters
answer hits without a hop to the engine's loop (``cachesaver.runtime``). A lock shared with the
cacher keeps ledger positions, billing flags and the per-(namespace, key) queue consistent
between that path and the loop. The engine's own tick sends the first hit attempt of each
(namespace, key) to a network store together (one round trip) and takes the positions read
under that lock, if no synchronous hit moved them meanwhile (else it claims again under the lock).
Only ``inline_hits`` (no network) are offered to callers on an event loop.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import uuid
from typing import Any, Awaitable, Optional, Union

from .admission import Queues, Reservation
from .batcher import Batcher
from .cacher import Cacher
from .checks import MAX_N, check_max_n, check_n, check_namespace, check_request_id
from .deduplicator import deduplicate
from .errors import (
    DuplicateRequestIdError,
    InvalidRequestError,
    InvalidRequestTypeError,
    ModelOutputError,
    PipelineClosedError,
)
from .keypolicy import model_identity
from .keys import keyed_json
from .ledger import Ledger, PrivateLedger, SharedLedger
from .opening import open_store
from .pending import Pending
from .reorderer import reorder
from .stats import Stats
from .stores import Store
from .typedefs import Batch, Request, Response, merge_responses

__all__ = ["OnlineAPI", "LocalAPI", "Pipeline", "Reservation"]

log = logging.getLogger("cachesaver.pipelines")

_AUTO_ID = "\x00auto-"
#: Misses per pipeline that look for samples stored under a request's key policy 1 key.
_LEGACY_CHECKS = 16


class Pipeline:
    """What both pipelines share: validation, the tick-level hit check, the run and shutdown."""

    def __init__(
        self,
        model: Any,
        cache: Any,
        batch_size: int = 1,
        timeout: float = 0.05,
        *,
        allow_batch_overflow: bool = False,
        run_id: Optional[str] = None,
        namespace: str = "default",
        offline: bool = False,
        model_id: Optional[str] = None,
        max_n: int = MAX_N,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidRequestError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise InvalidRequestError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise InvalidRequestTypeError(f"run_id must be a non-empty str or None, got {run_id!r}")
        #: The most samples one request may ask for (G2: one request's cost is bounded).
        self.max_n = check_max_n(max_n)
        self.model = model
        #: The model identity keyed into every request's key (see :meth:`model_id`).
        self._model_id = model_identity(model, model_id)
        if self._model_id is None and model is not None:
            log.warning(
                "%s declares no model identity, so its samples are keyed without the model and "
                "would be shared with any other model on the same store; set a model_id attribute "
                "on the model or pass OnlineAPI(..., model_id='provider/name')", type(model).__name__)
        # Misses first look for samples of the same request keyed before models were keyed
        # (key policy 1), to say how to carry them over; a few misses are enough to tell.
        self._legacy_checks = _LEGACY_CHECKS if isinstance(self._model_id, str) else 0
        self._owns_store = not isinstance(cache, Store)
        self.store: Store = open_store(cache)
        self.batch_size = batch_size
        self.timeout = float(timeout)
        self.allow_batch_overflow = allow_batch_overflow
        self.default_namespace = namespace
        self.shared_run = run_id is not None
        self.run_id = run_id if run_id is not None else f"private-{uuid.uuid4().hex}"
        self.ledger: Ledger = (
            SharedLedger(self.store, self.run_id) if self.shared_run else PrivateLedger(self.store, self.run_id)
        )
        self.stats = Stats()
        self._model_name = type(model).__name__
        # offline: serve stored samples only; a miss raises OfflineMissError, never calls the model.
        # A read-only store (a bundle) is always offline: it could not keep a generated sample.
        self.offline = bool(offline) or bool(getattr(self.store, "read_only", False))
        #: Whether ``try_now`` can serve hits synchronously (see the module docstring).
        self.sync_hits = self._offers_sync_hits()
        #: Whether those hits never wait on the network (memory, disk): callers on an event loop
        #: may take them on their loop; else (Redis) only synchronous callers do, and an async
        #: caller's request goes to the engine's loop, so its own loop never blocks on a socket.
        self.inline_hits = self.sync_hits and self.store.inline_io
        #: Admission: the (namespace, key) queues and the pipeline's only lock (cachesaver.admission).
        self.queues = Queues(threaded=self.sync_hits)
        self.cacher = Cacher(self.store, self.ledger, self._generate, self.stats, self._model_name,
                             lock=self.queues.lock, offline=self.offline, model_id=self._model_id,
                             max_call_n=self.max_n)
        self._inflight_ids: set[str] = set()
        self._tick: list[Pending] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count()
        self._tick_numbers = itertools.count(1)
        self._closed = False

    # -- entry -------------------------------------------------------------------------------
    async def request(self, request: Request, *, reservation: Optional["Reservation"] = None) -> Response:
        """Return ``request.n`` samples for ``request`` (see the module docstring for the path).

        ``reservation``: what ``OnlineAPI.try_now`` returned for this request when it missed;
        the request then keeps the place in its (namespace, key) queue that it took there.
        """
        try:
            item = self._admit(request, reservation)
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise
        if reservation is not None:
            item.reservation = reservation
        request = item.request
        self._inflight_ids.add(request.request_id)
        try:
            self._tick.append(item)
            if len(self._tick) == 1:
                await self._lead_tick()
            return await item.future
        except BaseException:
            # A caller that leaves gets no samples and consumes none, wherever it was cancelled
            # (a future already done, with the error raised here, stays as it is).
            item.future.cancel()
            raise
        finally:
            self._inflight_ids.discard(request.request_id)
            # The request is done: its place in its (namespace, key) queue is given back here,
            # by the caller, rather than by a done-callback on its future (a bound method and
            # a callback entry per miss, alive until it is served: the collector's work).
            if item.reservation is not None:
                item.reservation.release()

    @property
    def model_id(self) -> Optional[str]:
        """The model identity this pipeline keys (``None``: none declared; see
        :func:`cachesaver.keypolicy.model_identity`). A pipeline used as another pipeline's
        model declares it, so composed pipelines key the same model."""
        return self._model_id

    def key_of(self, request: Request) -> str:
        """The key this pipeline stores ``request``'s samples under (its model included)."""
        return keyed_json(request, self._model_id)[0]

    async def _note_legacy_key(self, request: Request) -> None:
        """Warn once if samples of ``request`` are stored under its key policy 1 key (before the
        model was keyed): they are not served under the new key until migrated."""
        self._legacy_checks -= 1
        try:
            found = await self.store.length(keyed_json(request)[0])
        except Exception:  # a hint only; the miss goes on
            return
        if found:
            self._legacy_checks = 0
            log.warning(
                "this store holds samples keyed before models were part of keys (key policy 1); "
                "they are not served to %r. Carry them over with: cachesaver migrate-keys --cache "
                "<store> --model %s", self._model_id, self._model_id)

    def _offers_sync_hits(self) -> bool:
        return False

    def _check(self, request: Request) -> None:
        """Validate a request's engine fields (each error names the field and the fix)."""
        if self._closed:
            raise PipelineClosedError("this pipeline is closed; create a new one")
        if not isinstance(request, Request):
            raise InvalidRequestTypeError(
                f"request must be a cachesaver.typedefs.Request, got {type(request).__name__}"
            )
        n, namespace = request.n, request.namespace
        if (type(n) is int and 1 <= n <= self.max_n and type(namespace) is str and namespace
                and type(request.request_id) is str):
            return  # the common case, without three calls on every hit
        check_n(n, "request.n", optional=False, limit=self.max_n)
        check_namespace(namespace, "request.namespace")
        check_request_id(request.request_id, "request.request_id", optional=False)

    def _admit(self, request: Request, reservation: Optional["Reservation"] = None) -> Pending:
        self._check(request)
        n = request.n
        explicit_id = bool(request.request_id)
        if not explicit_id:
            # Without an id a request's place is its arrival.
            request = dataclasses.replace(request, request_id=f"{_AUTO_ID}{next(self._ids):016d}")
        elif request.request_id in self._inflight_ids:
            raise DuplicateRequestIdError(
                f"request.request_id {request.request_id!r} is already in flight; give every "
                "concurrent request a unique request_id"
            )
        if reservation is not None and reservation.meta is not None:
            key, meta = reservation.slot[1], reservation.meta  # try_now hashed this request
        else:
            key, meta = keyed_json(request, self._model_id)
        counters = self.stats.ns(request.namespace)
        counters.requests += 1
        counters.samples_asked += n
        return Pending(request, key, asyncio.get_running_loop().create_future(), asyncio.current_task(),
                       meta=meta, explicit_id=explicit_id)

    async def _lead_tick(self) -> None:
        """The first request of a tick yields once so its siblings join, then checks them all.

        The check must finish even if the leader is cancelled, or its siblings would wait
        forever: stores that never suspend (memory, disk) run it inline, where no cancellation
        can land; the others run it in a task the leader only waits for.
        """
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self._spawn(self._check_tick(self._take_tick()))
            raise
        items = self._take_tick()
        # A shared run's check claims in the store (a write, which may wait off the loop for
        # another process): only a private run's check, reads alone, runs inline.
        if self.store.inline_io and not self.shared_run:
            await self._check_tick(items)
        else:
            await asyncio.shield(self._spawn(self._check_tick(items)))

    def _write_id_positions(self) -> Optional[Awaitable[None]]:
        """Write the request-id records gathered since the last write, in one store write: at
        once for stores that never suspend, else in a task on this loop (returned)."""
        unwritten = self.cacher.take_id_positions()
        if not unwritten:
            return None
        if self.store.inline_io:
            self.store.record_id_positions_now(unwritten)
            return None
        return self._spawn(self.store.record_id_positions(unwritten))

    def _take_tick(self) -> list[Pending]:
        self._write_id_positions()  # what the last ticks recorded
        items, self._tick = self._tick, []
        tick = next(self._tick_numbers)
        for item in items:
            item.tick = tick
        return reorder(items)

    async def _check_tick(self, items: list[Pending]) -> None:
        raise NotImplementedError

    # -- model calls -------------------------------------------------------------------------
    async def _generate(self, request: Request) -> Response:
        raise NotImplementedError

    # -- background tasks and shutdown -------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any]) -> "asyncio.Task[Any]":
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: "asyncio.Task[Any]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cachesaver pipeline task failed", exc_info=task.exception())

    def _flush_batchers(self) -> None:
        pass

    async def drain(self) -> None:
        """Return once the model calls in flight now have ended, their samples stored."""
        await self.cacher.calls.drain()

    def refuse_new_calls(self, reason: str) -> None:
        """Start no model call from now on (the process is exiting): requests that need one
        fail with :class:`PipelineClosedError` (``reason`` says why); calls already sent still
        finish and are stored, hits are still served."""
        self.cacher.calls.refuse(PipelineClosedError(reason))

    async def aclose(self) -> None:
        """Finish everything in flight, then release the store if the pipeline opened it."""
        if self._closed:
            return
        self._closed = True
        while True:
            if self._tick:
                await self._check_tick(self._take_tick())
            # Always flushed, even with no task running: a batch whose callers all left still
            # holds their requests and a timer on the loop that would keep this pipeline (and
            # its store) alive until the batch window ends.
            self._flush_batchers()
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            elif not self._tick:
                break
        written = self._write_id_positions()
        if written is not None:
            await written
        # Samples paid for whose append failed: one last bounded attempt, then a warning.
        await self.cacher.parked.aclose()
        if self._owns_store:
            await self.store.aclose()

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # -- a pipeline is a model too (the seed's BatchRequestModel interface) ------------------
    async def batch_request(self, batch: Batch) -> list[Response]:
        """One ``Response`` per request of ``batch``, in order, all served concurrently.

        With :meth:`request`, this makes every pipeline a ``SingleRequestModel`` and a
        ``BatchRequestModel``, so pipelines compose as the seed's do (for example an
        ``OnlineAPI`` in front of a ``LocalAPI``). The requests meet in one tick, so they are
        batched and merged like any concurrent requests. The first failure is raised, after
        every request has finished (none is left running).
        """
        if not isinstance(batch, Batch):
            raise InvalidRequestTypeError(
                f"batch must be a cachesaver.typedefs.Batch, got {type(batch).__name__}"
            )
        results = await asyncio.gather(*(self.request(r) for r in batch.requests), return_exceptions=True)
        responses: list[Response] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            responses.append(result)
        return responses

    async def consumption(self) -> "dict[str, dict[str, int]]":
        """What this run handed out so far: ``{namespace: {key: samples consumed}}``.

        The result is a :class:`cachesaver.bundle.Consumption` (a dict with ``.run_ids``,
        ``.needed()``, ``.save(path)``).

        A private run reads its in-memory ledger; a shared run (``run_id=``) reads the store's
        ledger rows of its run, so every process of the run is counted. Pass the result to
        :func:`cachesaver.bundle.write_bundle` to publish exactly these samples.
        """
        from .bundle.consumption import Consumption, private_run_label

        # A private run's id is random and means nothing elsewhere: it is named by what it
        # consumed instead, so the same run always bundles to the same bytes.
        positions = await self.ledger.consumption()
        if not self.shared_run:
            return Consumption(runs={private_run_label(positions): positions})
        return Consumption(runs={self.run_id: positions}, run_ids=[self.run_id])


class OnlineAPI(Pipeline):
    """Pipeline for API models: batches misses, merges identical ones, one call per key.

    ``OnlineAPI(model=model, cache=Cache("./caches/test"), batch_size=5, timeout=1)``:
    ``batch_size`` samples or ``timeout`` seconds close a batch of misses, whichever comes first.

    ``batch_api=BatchAPI(backend, ...)`` (:mod:`cachesaver.batchapi`): misses go through a
    provider Batch API (about half price; a call returns when its batch does), recorded in the
    store so that a restart collects a submitted batch instead of paying for it again.
    """

    def __init__(self, model: Any, cache: Any, batch_size: int = 1, timeout: float = 0.05, *,
                 batch_api: Any = None, **kwargs: Any) -> None:
        super().__init__(model, cache, batch_size, timeout, **kwargs)
        self._batches: Optional[Any] = None
        if batch_api is not None and not self.offline:
            from .batchapi import BatchAPI, BatchCollector

            if not isinstance(batch_api, BatchAPI):
                raise InvalidRequestTypeError(
                    f"batch_api must be a cachesaver.batchapi.BatchAPI, got {type(batch_api).__name__}")
            self._batches = BatchCollector(batch_api, self.store.batch_journal(), self.store.location, self.store)
            # A batch keeps its key's generation lease until the provider answers, which can
            # take hours: another process missing the key must wait for it, not give up after
            # the interactive limit and submit (and pay for) the same samples again (G2). A
            # holder that dies releases the lease: on disk at once (the kernel drops its lock),
            # on Redis when its ttl runs out (nothing renews it).
            self.store.lease_max_wait = math.inf
        if not self.offline and not callable(getattr(model, "request", None)) and not callable(getattr(model, "batch_request", None)):
            raise InvalidRequestTypeError(
                f"model {self._model_name} needs an async request(request) method "
                "(cachesaver.typedefs.SingleRequestModel)"
            )
        self._batcher: Batcher[Pending] = Batcher(
            self._handle_batch,
            batch_size=batch_size,
            timeout=self.timeout,
            allow_batch_overflow=self.allow_batch_overflow,
            size=lambda item: item.request.n,
            spawn=self._spawn,
        )

    def _offers_sync_hits(self) -> bool:
        store = self.store
        return ((store.inline_io or store.sync_reads) and not self.shared_run
                and type(store).read_now is not Store.read_now)

    # -- the synchronous hit path --------------------------------------------------------------
    def try_now(self, request: Request) -> Union[Response, Reservation, None]:
        """Serve ``request`` on the calling thread if all its samples are stored.

        Returns the ``Response`` of a full hit; on a miss, a :class:`Reservation` to pass to
        ``await request(request, reservation=...)`` on the engine's loop; ``None`` when this
        pipeline has no synchronous path (shared runs, remote stores): then just ``request()``.
        Raises what ``request()`` would raise for a bad request or a corrupt sample.
        """
        if not self.sync_hits:
            return None
        self._check(request)
        key, meta = keyed_json(request, self._model_id)
        slot = (request.namespace, key)
        queues = self.queues
        with queues.lock:  # type: ignore[union-attr]  # pipelines with sync_hits have one
            if self._closed:
                raise PipelineClosedError("this pipeline is closed; create a new one")
            if not queues.ahead(slot):
                response = self.cacher.hit_now(request, key, explicit_id=bool(request.request_id))
                if response is not None:
                    counters = self.stats.ns(request.namespace)
                    counters.requests += 1
                    counters.samples_asked += request.n
                    return response
            return queues.reserve(slot, meta)

    async def _check_tick(self, items: list[Pending]) -> None:
        """Each request of the tick, in order: a full hit, or a place in its (namespace, key)
        queue and a seat in the batch of misses. A request never overtakes an earlier one of its
        (namespace, key) that waits for the model (a replay gives them samples in that order,
        G4); a reserved request already holds its own place. On a store read over the network
        (Redis) the first hit attempt of each (namespace, key) goes to the store together with the
        others (:meth:`_first_hits`: one round trip). The lock (pipelines that also serve
        synchronous hits on callers' threads) is held where positions and places are checked and
        taken, never across an await."""
        queues = self.queues
        synchronous = queues.lock is not None
        first: "dict[Pending, Union[bool, Exception]]" = {}
        if not self.store.inline_io:
            try:
                first = await self._first_hits(items)
            except Exception as exc:  # (its calls answer per request; the tick is never left undone)
                log.warning("a tick's hit attempts failed together (%s); trying them one by one",
                            type(exc).__name__)
        misses = []
        for item in items:
            if item.future.done():
                continue
            slot = (item.request.namespace, item.key)
            try:
                if item in first:
                    outcome = first[item]
                    if isinstance(outcome, Exception):
                        raise outcome
                    if outcome:
                        continue
                    with queues.guard():
                        self._hold_place(item, slot)
                elif synchronous:
                    with queues.guard():
                        if self._hit_or_reserve_now(item, slot):
                            continue
                elif await self._hit_or_reserve(item, slot):
                    continue
            except Exception as exc:
                item.fail(exc)
                continue
            misses.append(item)
        # Added together, after the check: with a store that suspends, a batch window closing
        # mid-check would otherwise split one tick's requests of one key over two calls (G3).
        for item in misses:
            self._batcher.add(item)

    async def _first_hits(self, items: list[Pending]) -> "dict[Pending, Union[bool, Exception]]":
        """The hit attempts of the tick's first request of each (namespace, key) that is first
        in line, made together (:meth:`Cacher.try_hits`: one round trip on Redis, not one per
        request). Only those: a later request of the same (namespace, key) may try only once
        the earlier one is served, in order (G4). Nothing before them in the tick touches their
        queues, so each outcome is what the in-order check would have found. Returns
        {request: outcome} for :meth:`_check_tick`; empty when fewer than two would be tried
        (the single path costs the same)."""
        cacher = self.cacher
        if len(items) > 1:
            await cacher.load_ids(items)  # (requests with ids: their keys' records, read together)
        seen: set[tuple[str, str]] = set()
        batch: list[Pending] = []
        with self.queues.guard():
            for item in items:
                slot = (item.request.namespace, item.key)
                if slot in seen:
                    continue
                seen.add(slot)
                if not item.future.done() and cacher.batches_hits(item) and self._first_in_line(item, slot):
                    batch.append(item)
        if len(batch) < 2:
            return {}
        return dict(zip(batch, await cacher.try_hits(batch)))

    def _hit_or_reserve_now(self, item: Pending, slot: tuple[str, str]) -> bool:
        """True if ``item`` was served (or its caller left); else it holds a place (lock held)."""
        if self._first_in_line(item, slot) and self.cacher.try_hit_now(item):
            return True
        self._hold_place(item, slot)
        return False

    async def _hit_or_reserve(self, item: Pending, slot: tuple[str, str]) -> bool:
        """:meth:`_hit_or_reserve_now` for pipelines without a lock (every hit on this loop)."""
        if self._first_in_line(item, slot) and await self.cacher.try_hit(item):
            return True
        self._hold_place(item, slot)
        return False

    def _first_in_line(self, item: Pending, slot: tuple[str, str]) -> bool:
        """No earlier request of ``slot`` holds a place (a reserved request holds its own)."""
        return self.queues.ahead(slot) == (1 if item.reservation is not None else 0)

    def _hold_place(self, item: Pending, slot: tuple[str, str]) -> None:
        """Take ``item``'s place; :meth:`request` gives it back when the request is done. A
        caller that already left (its future done: :meth:`request` has ended) takes none."""
        if item.reservation is None and not item.future.done():
            item.reservation = self.queues.reserve(slot)

    async def _handle_batch(self, items: list[Pending]) -> None:
        await self.cacher.serve(deduplicate(reorder(items)))

    async def _generate(self, request: Request) -> Response:
        if self._legacy_checks > 0:
            await self._note_legacy_key(request)
        if self._batches is not None:
            return await self._batches.request(request)
        model = self.model
        if callable(getattr(model, "request", None)):
            return await model.request(request)
        responses = await model.batch_request(Batch([request]))
        return _only_response(responses, self._model_name)

    def _flush_batchers(self) -> None:
        self._batcher.flush()
        if self._batches is not None:
            self._batches.flush()

    async def aclose(self) -> None:
        await super().aclose()
        if self._batches is not None:
            await self._batches.aclose()


class LocalAPI(Pipeline):
    """Pipeline for local models: checks the store first, batches only what must be generated.

    Misses become requests (``n`` = the missing count) that a Batcher groups into
    ``model.batch_request`` calls of up to ``batch_size`` samples.
    """

    def __init__(self, model: Any, cache: Any, batch_size: int = 1, timeout: float = 0.05, **kwargs: Any) -> None:
        super().__init__(model, cache, batch_size, timeout, **kwargs)
        if not self.offline and not callable(getattr(model, "batch_request", None)):
            raise InvalidRequestTypeError(
                f"model {self._model_name} needs an async batch_request(batch) method "
                "(cachesaver.typedefs.BatchRequestModel)"
            )
        self._batcher: Batcher[tuple[Request, asyncio.Future[Response]]] = Batcher(
            self._run_model_batch,
            batch_size=batch_size,
            timeout=self.timeout,
            allow_batch_overflow=self.allow_batch_overflow,
            size=lambda pair: pair[0].n,
            spawn=self._spawn,
        )

    async def _check_tick(self, items: list[Pending]) -> None:
        live = [item for item in items if not item.future.done()]
        if live:
            self._spawn(self.cacher.serve(deduplicate(live)))

    async def _generate(self, request: Request) -> Response:
        """The missing samples as ``request.n`` one-sample items of the hardware batch (as
        cachesaver 0.0.6 sends them), so a model that answers one sample per item fills its
        batch instead of being called ``n`` times in a row. Items that fail while others
        succeed cost only their own sample: the cacher asks again for the rest (G5)."""
        if self._legacy_checks > 0:
            await self._note_legacy_key(request)
        loop = asyncio.get_running_loop()
        parts = [request] if request.n == 1 else [
            dataclasses.replace(request, n=1, request_id=f"{request.request_id}/{i}") for i in range(request.n)]
        futures: list[asyncio.Future[Response]] = []
        for part in parts:
            future: asyncio.Future[Response] = loop.create_future()
            self._batcher.add((part, future))
            futures.append(future)
        if len(futures) == 1:
            return await futures[0]
        return _merged(await asyncio.gather(*futures, return_exceptions=True))

    async def _run_model_batch(self, pairs: list[tuple[Request, "asyncio.Future[Response]"]]) -> None:
        try:
            responses = await self.model.batch_request(Batch([request for request, _ in pairs]))
            if not isinstance(responses, list) or len(responses) != len(pairs):
                raise ModelOutputError(
                    f"{self._model_name}.batch_request() must return a list with one Response per "
                    f"request ({len(pairs)}), got {type(responses).__name__}"
                    + (f" of length {len(responses)}" if isinstance(responses, list) else "")
                )
        except Exception as exc:
            for _, future in pairs:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), response in zip(pairs, responses):
            if not future.done():
                future.set_result(response)

    def _flush_batchers(self) -> None:
        self._batcher.flush()


def _merged(results: list[Any]) -> Response:
    """One response from the responses of a request's one-sample items (failures left out; all
    failed: the first error)."""
    done = [r for r in results if not isinstance(r, BaseException)]
    if not done:
        raise results[0]
    return merge_responses(done)


def _only_response(responses: Any, model_name: str) -> Response:
    if not isinstance(responses, list) or len(responses) != 1:
        raise ModelOutputError(f"{model_name}.batch_request() must return one Response per request")
    return responses[0]
