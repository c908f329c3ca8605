"""``HostedPipeline``: an engine pipeline that adapters call from any thread or event loop.

The call path every adapter shares:

1. **Full hit, synchronously, where the caller is.** For a private run on a memory or disk store
   the pipeline serves a hit on the calling thread (``OnlineAPI.try_now``): no hop to the
   engine's loop, no event loop needed at all. On a Redis store only a synchronous caller
   (:meth:`HostedPipeline.request_sync`, :meth:`HostedPipeline.hit_now`) does, with one blocking
   round trip; callers on an event loop go to the engine's loop (their loop never blocks on a
   socket), whose tick checks hits the same way. Async callers with a ``request_id`` first gather
   the requests of one event-loop tick on their own loop and check them in ``request_id``
   order, as the engine does on its own loop, so concurrent requests replay in the same order
   (G4); a request without one is ordered by arrival, ahead of the ids, so it is checked at
   once (an async hit then costs no turn of the caller's loop).
2. **Everything else on the engine host** (:mod:`cachesaver.runtime.host`): misses, merging,
   shared runs, async callers of remote stores. A request that missed on the synchronous path keeps its place in
   its (namespace, key) queue (a ``Reservation``), so a later request never overtakes it.

The pipeline is built lazily and rebuilt in a forked child (the parent's loop thread, locks and
store connections are not usable there; the child's private run starts afresh, a shared
``run_id`` keeps sharing its ledger through the store).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..admission import Reservation
from ..errors import InvalidRequestTypeError
from ..pipelines import OnlineAPI
from ..stores import Store
from ..typedefs import Request, Response
from .fanout import FanOutModel
from .host import EngineHost, get_host

__all__ = ["HostedPipeline", "PipelineSettings", "Begun", "Group", "Member"]



@dataclass(frozen=True)
class PipelineSettings:
    """What an adapter's pipeline is built from (the same settings give the same pipeline)."""

    store: Any
    batch_size: int = 64
    timeout: float = 0.02
    run_id: Optional[str] = None
    namespace: str = "default"
    extra: dict = field(default_factory=dict)  # more OnlineAPI keywords
    #: Bounds on the model's provider calls in flight (``max_fanout``, ``max_concurrent_calls``;
    #: see :meth:`FanOutModel.set_call_bounds`); unset ones keep the model's defaults.
    call_bounds: dict = field(default_factory=dict)

    def same_as(self, other: "PipelineSettings") -> bool:
        """Paths compare by value, store objects by identity."""
        paths = (str, os.PathLike)
        if isinstance(self.store, paths) and isinstance(other.store, paths):
            same_store = os.fspath(self.store) == os.fspath(other.store)
        else:
            same_store = self.store is other.store
        mine = (self.batch_size, self.timeout, self.run_id, self.namespace, self.extra, self.call_bounds)
        theirs = (other.batch_size, other.timeout, other.run_id, other.namespace, other.extra, other.call_bounds)
        return same_store and mine == theirs


@dataclass(eq=False)
class _Entry:
    """One request waiting for its turn: in its caller-loop tick, or in its group.

    ``order`` = (request_id, arrival or position): ids sort as the engine sorts them, and
    requests without one ("") come first, in arrival or position order.
    """

    request: Request
    order: tuple[str, int]
    ready: Any  # asyncio.Future (a tick on the caller's loop) or concurrent Future (a group)
    response: Optional[Response] = None
    error: Optional[BaseException] = None
    remote: "Optional[concurrent.futures.Future[Response]]" = None
    #: Checked on arrival (a request without an id), missed, and holding its place: its tick
    #: only starts it (or gives the place back if its caller left).
    reserved: Optional[Reservation] = None
    #: Served only if it is a full hit (:meth:`HostedPipeline.hit_async`): a miss gives its place
    #: back and is neither started nor failed (its caller sends it another way).
    hit_only: bool = False


class Begun:
    """A request checked against the store (:meth:`HostedPipeline.begin`)."""

    def __init__(self, hosted: "HostedPipeline", pipeline: OnlineAPI, response: Optional[Response],
                 reservation: Optional[Reservation]) -> None:
        self.response = response
        self._hosted = hosted
        self._pipeline = pipeline
        self._reservation = reservation
        # Never submitted (a stream nobody read): give the place back once this is collected.
        # Submitted: the request holds the place until it is done, whoever still refers to this
        # object (the caller may stop reading while its request goes on to take its sample).
        self._unsubmitted = weakref.finalize(self, reservation.release) if reservation is not None else None

    def submit(self, request: Request) -> "concurrent.futures.Future[Response]":
        if self.response is not None:
            done: concurrent.futures.Future[Response] = concurrent.futures.Future()
            done.set_result(self.response)
            return done
        reservation, self._reservation = self._reservation, None
        if self._unsubmitted is not None:
            self._unsubmitted.detach()
        return self._hosted._start_on_host(self._pipeline, [(request, reservation)])[0]


class Group:
    """Requests issued together (see :meth:`HostedPipeline.group`); thread-safe."""

    def __init__(self, hosted: "HostedPipeline", size: int) -> None:
        self._hosted = hosted
        self._size = size
        self._lock = threading.Lock()
        self._arrived: list[_Entry] = []
        self._accounted: set[int] = set()
        self._served = False

    def member(self, position: int) -> "Member":
        """The place of the request at ``position`` (0-based) of the batch."""
        return Member(self, position)

    def _arrive(self, position: int, request: Request) -> _Entry:
        entry = _Entry(request, (request.request_id, position), concurrent.futures.Future())
        due: Optional[list[_Entry]] = None
        with self._lock:
            late = self._served or position in self._accounted  # after its group, or twice
            if not late:
                self._accounted.add(position)
                self._arrived.append(entry)
                due = self._due()
        if late:
            self._hosted._serve_in_order([entry])  # on its own
        elif due:
            self._hosted._serve_in_order(due)  # the last to arrive serves the whole group
        return entry

    def _leave(self, position: int) -> None:
        with self._lock:
            if self._served or position in self._accounted:
                return
            self._accounted.add(position)
            due = self._due()
        if due:
            self._hosted._serve_in_order(due)

    def _due(self) -> Optional[list[_Entry]]:
        if len(self._accounted) < self._size:
            return None
        self._served = True
        return list(self._arrived)


@dataclass(frozen=True)
class Member:
    """One request's place in a :class:`Group`: it arrives with its request, or leaves (failed or
    cancelled before reaching the engine) so that the others stop waiting for it."""

    group: Group
    position: int

    def arrive(self, request: Request) -> _Entry:
        return self.group._arrive(self.position, request)

    def leave(self) -> None:
        self.group._leave(self.position)


class HostedPipeline:
    """One adapter instance's engine pipeline (one run), hosted on the process's engine loop.

    ``model_factory()`` builds the engine model (called again in a forked child);
    ``settings`` says how to build the pipeline. Thread-safe; usable from any loop.
    """

    def __init__(self, model_factory: Callable[[], Any], settings: PipelineSettings) -> None:
        self.settings = settings
        self._model_factory = model_factory
        self._build_lock = threading.Lock()
        self._pid = -1
        self._pipeline: Optional[OnlineAPI] = None
        self._host: Optional[EngineHost] = None
        self._ticks: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Entry]]" = weakref.WeakKeyDictionary()
        self._arrivals = itertools.count()
        self.closed = False
        _ = self.pipeline  # fail fast on bad settings (a bad store spec, a bad batch size)

    # -- the pipeline of this process ------------------------------------------------------------
    @property
    def pipeline(self) -> OnlineAPI:
        """The engine pipeline (built on first use, and afresh in a forked child)."""
        pipeline = self._pipeline
        if pipeline is not None and (self._pid == os.getpid() or self.closed):
            return pipeline
        with self._build_lock:
            if self._pipeline is None or (self._pid != os.getpid() and not self.closed):
                self._pipeline = self._build()
                self._host = get_host()
                self._host.track(self)
                self._pid = os.getpid()
            return self._pipeline

    @property
    def host(self) -> EngineHost:
        _ = self.pipeline  # built (or rebuilt after fork) with its host
        assert self._host is not None
        return self._host

    @property
    def model(self) -> Any:
        return self.pipeline.model

    def _build(self) -> OnlineAPI:
        s = self.settings
        store = s.store
        if self._pipeline is not None:  # a forked child: fresh connections to the same store
            store = _reopen(store)
        model = self._model_factory()
        if s.call_bounds:
            if not isinstance(model, FanOutModel):
                raise InvalidRequestTypeError(
                    f"max_fanout/max_concurrent_calls bound a FanOutModel's calls; {type(model).__name__} is not one")
            model.set_call_bounds(**s.call_bounds)
        return OnlineAPI(model=model, cache=store, batch_size=s.batch_size,
                         timeout=s.timeout, run_id=s.run_id, namespace=s.namespace, **s.extra)

    # -- requests --------------------------------------------------------------------------------
    def request_sync(self, request: Request, member: Optional["Member"] = None) -> Response:
        """Samples for ``request``, blocking this thread (a hit does not leave it).

        ``member``: the request's place in a :meth:`group` (it waits for the group's turn).
        """
        if member is not None:
            return _settle_sync(member.arrive(request))
        pipeline = self._open_pipeline()
        first = pipeline.try_now(request)
        if isinstance(first, Response):
            return first
        return self.host.run(self._on_host(pipeline, request, first))

    async def request_async(self, request: Request, member: Optional["Member"] = None) -> Response:
        """Samples for ``request`` from any event loop (a hit stays on the caller's loop)."""
        if member is not None:
            entry = member.arrive(request)
            await _turn(asyncio.wrap_future(entry.ready), entry)
            return await _settle_async(entry)
        pipeline = self._open_pipeline()
        if not pipeline.inline_hits:
            return await self.host.arun(pipeline.request(request))
        if request.request_id:
            entry = self._join_tick(request)
        else:
            # Without an id a request's place is its arrival, ahead of every id in its tick
            # (the order the tick sorts into): it is checked now, and a hit costs no loop turn.
            first = pipeline.try_now(request)
            if isinstance(first, Response):
                return first
            entry = self._join_tick(request, first)  # a miss starts with its tick's misses (G3)
        await _turn(entry.ready, entry)
        return await _settle_async(entry)

    def hit_now(self, request: Request) -> Optional[Response]:
        """The full hit for ``request`` served on this thread, or None, holding no place.

        For adapters that answer hits before their framework's pipeline and send misses the
        framework's normal way: a hit takes its samples exactly as :meth:`request_sync` would
        (same ledger positions, same flags); a miss leaves no trace, so the request it becomes
        on the normal path is checked afresh. None also when this pipeline has no synchronous
        hits (shared runs, remote stores).
        """
        pipeline = self._open_pipeline()
        first = pipeline.try_now(request)
        if isinstance(first, Response):
            return first
        if first is not None:
            first.release()
        return None

    async def hit_async(self, request: Request) -> Optional[Response]:
        """:meth:`hit_now` for async callers, in the order :meth:`request_async` checks hits: a
        request with an id waits for its caller-loop tick and is checked with that tick's
        requests in id order (G4); one without an id is checked at once."""
        pipeline = self._open_pipeline()
        if not pipeline.inline_hits:  # (a read over the network would block the caller's loop)
            return None
        if not request.request_id:
            return self.hit_now(request)
        entry = self._join_tick(request, hit_only=True)
        await _turn(entry.ready, entry)
        if entry.error is not None:
            raise entry.error
        return entry.response

    def submit(self, request: Request) -> "concurrent.futures.Future[Response]":
        """Start ``request`` now; the future settles from the engine's loop (streams use this).

        A hit settles it before this returns (stores whose hits need no network).
        """
        pipeline = self._open_pipeline()
        first = _try_inline(pipeline, request)
        if isinstance(first, Response):
            done: concurrent.futures.Future[Response] = concurrent.futures.Future()
            done.set_result(first)
            return done
        return self._start_on_host(pipeline, [(request, first)])[0]

    def begin(self, request: Request) -> "Begun":
        """Check ``request`` against the store now, start it later: a stream whose caller must
        know at once whether it is a hit (to send headers), but can only attach its live-chunk
        sink where it will be consumed. ``begun.response`` is set for a hit; otherwise
        ``begun.submit(request)`` (the same request, a sink attached) starts it on the engine's
        loop in the place the check took."""
        pipeline = self._open_pipeline()
        first = _try_inline(pipeline, request)
        if isinstance(first, Response):
            return Begun(self, pipeline, first, None)
        return Begun(self, pipeline, None, first)

    def group(self, size: int) -> "Group":
        """``size`` requests issued together by a framework (a batch), from any threads or tasks:
        they are served together, in request-id then position order, once each has arrived
        or left, so which of them gets which sample never depends on scheduling (G4)."""
        return Group(self, size)

    # -- serving requests in order ----------------------------------------------------------------
    def _join_tick(self, request: Request, reserved: Optional[Reservation] = None,
                   hit_only: bool = False) -> _Entry:
        loop = asyncio.get_running_loop()
        entry = _Entry(request, (request.request_id, next(self._arrivals)), loop.create_future(),
                       reserved=reserved, hit_only=hit_only)
        entries = self._ticks.get(loop)
        if entries is None:
            self._ticks[loop] = [entry]
            loop.call_soon(self._check_tick, loop)
        else:
            entries.append(entry)
        return entry

    def _check_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """The requests of one caller-loop tick, as the engine serves one of its own ticks."""
        self._serve_in_order(self._ticks.pop(loop, []))

    def _serve_in_order(self, entries: list[_Entry]) -> None:
        """Hits now, on this thread; misses together to the engine's loop, in the same order
        (requests without an id first, by arrival, as the engine's reorder puts them).

        No caller is released before every request here has taken its samples: a released
        caller's thread may go on to issue the next group, which must not claim in between.
        """
        entries.sort(key=lambda e: e.order)
        try:
            pipeline = self._open_pipeline()
        except BaseException as exc:
            for entry in entries:
                entry.error = exc
                if entry.reserved is not None:
                    entry.reserved.release()
            return _release(entries)
        misses: list[tuple[_Entry, Optional[Reservation]]] = []
        for entry in entries:
            if entry.ready.done():  # the caller left before its turn: it takes nothing
                if entry.reserved is not None:
                    entry.reserved.release()
                continue
            if entry.reserved is not None:  # checked on arrival: a miss
                misses.append((entry, entry.reserved))
                continue
            try:
                first = _try_inline(pipeline, entry.request)
            except BaseException as exc:  # a bad request, a corrupt sample, a closed pipeline
                entry.error = exc
                continue
            if isinstance(first, Response):
                entry.response = first
            elif entry.hit_only:  # its caller sends it the normal way: no place kept
                if first is not None:
                    first.release()
            else:
                misses.append((entry, first))
        if misses:
            try:
                remotes = self._start_on_host(pipeline, [(entry.request, res) for entry, res in misses])
            except BaseException as exc:
                for entry, _ in misses:
                    entry.error = exc
            else:
                for (entry, _), remote in zip(misses, remotes):
                    entry.remote = remote
        _release(entries)

    # -- the engine host ----------------------------------------------------------------------------
    def _start_on_host(self, pipeline: OnlineAPI, items: list[tuple[Request, Optional[Reservation]]],
                       ) -> "list[concurrent.futures.Future[Response]]":
        """Start ``items`` on the engine's loop in one step, so they meet in one engine tick in
        this order. Cancelling a returned future cancels its request (it then takes nothing)."""
        outs: list[concurrent.futures.Future[Response]] = [concurrent.futures.Future() for _ in items]

        async def start() -> None:
            for (request, reservation), out in zip(items, outs):
                if out.cancelled():  # its caller left meanwhile
                    if reservation is not None:
                        reservation.release()
                    continue
                task = asyncio.ensure_future(pipeline.request(request, reservation=reservation))
                task.add_done_callback(functools.partial(_copy, out=out))
                out.add_done_callback(functools.partial(_cancel_with, task=task, host=host))

        host = self.host
        try:
            host.submit(start())
        except BaseException:
            for _, reservation in items:
                if reservation is not None:
                    reservation.release()
            raise
        return outs

    @staticmethod
    async def _on_host(pipeline: OnlineAPI, request: Request, reservation: Optional[Reservation]) -> Response:
        return await pipeline.request(request, reservation=reservation)

    def _open_pipeline(self) -> OnlineAPI:
        if self.closed:
            from ..errors import PipelineClosedError

            raise PipelineClosedError("this cachesaver model/provider is closed; create a new one")
        return self.pipeline

    # -- what the run did ---------------------------------------------------------------------------
    def consumption(self) -> Any:
        """What this run handed out so far (``Pipeline.consumption``), read on the engine's loop
        so that shared runs on remote stores work too; callable from any thread or loop."""
        pipeline = self._open_pipeline()
        host = self.host
        if host.in_host_thread:
            raise RuntimeError("HostedPipeline.consumption() waits for the engine's loop; "
                               "on that loop use `await pipeline.consumption()`")
        return host.run(pipeline.consumption())

    # -- lifecycle ---------------------------------------------------------------------------------
    async def drain(self) -> None:
        """(On the engine's loop.) Return once the model calls in flight now are stored."""
        pipeline = self._pipeline
        if pipeline is not None and self._pid == os.getpid():
            await pipeline.drain()

    def refuse_new_calls(self, reason: str) -> None:
        """(On the engine's loop.) Close to new requests and start no new model call; calls
        already sent finish and are stored (the process is exiting)."""
        self.closed = True
        pipeline = self._pipeline
        if pipeline is not None and self._pid == os.getpid():
            pipeline.refuse_new_calls(reason)

    async def aclose(self) -> None:
        """Finish what is in flight, then release the store (if it was opened from a spec)."""
        self.closed = True
        pipeline = self._pipeline
        if pipeline is None or self._pid != os.getpid():
            return
        host = self._host
        if host is not None and not host.in_host_thread and host.alive:
            await host.arun(pipeline.aclose())
        else:
            await pipeline.aclose()

    def close(self, timeout: Optional[float] = None) -> bool:
        """Sync :meth:`aclose`; False if in-flight calls outlived ``timeout`` (they finish on
        their own). Refused on the engine's loop, where it would wait for itself."""
        self.closed = True
        pipeline = self._pipeline
        host = self._host
        if pipeline is None or self._pid != os.getpid() or host is None or not host.alive:
            return True
        future = host.submit(pipeline.aclose())
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return True


def _try_inline(pipeline: OnlineAPI, request: Request) -> "Response | Reservation | None":
    """``pipeline.try_now(request)`` where its hits never wait on the network; else None (the
    request goes to the engine's loop). For paths that may run on a caller's event loop."""
    return pipeline.try_now(request) if pipeline.inline_hits else None


def _reopen(store: Any) -> Any:
    """What a forked child opens: a spec (path, URL) as given, a ``diskcache.Cache`` by its
    directory, a store object after it re-connected (``Store.after_fork``)."""
    if isinstance(store, Store):
        store.after_fork()
        return store
    directory = getattr(store, "directory", None)
    return directory if isinstance(directory, str) else store


def _set(ready: Any) -> None:
    try:
        ready.set_result(None)
    except (asyncio.InvalidStateError, concurrent.futures.InvalidStateError):
        pass  # its caller left: what it would have taken was not claimed for it


def _cancel_with(future: "concurrent.futures.Future[Response]", task: "asyncio.Task[Response]",
                 host: EngineHost) -> None:
    """A caller's future was cancelled: cancel its engine task too (on the engine's loop)."""
    if future.cancelled():
        host.call_soon(task.cancel)


def _copy(task: "asyncio.Task[Response]", out: "concurrent.futures.Future[Response]") -> None:
    if out.done():
        return
    if task.cancelled():
        out.cancel()
    elif task.exception() is not None:
        out.set_exception(task.exception())
    else:
        out.set_result(task.result())


def _settle_sync(entry: _Entry) -> Response:
    entry.ready.result()
    if entry.response is not None:
        return entry.response
    if entry.error is not None:
        raise entry.error
    assert entry.remote is not None
    return entry.remote.result()


async def _turn(ready: "asyncio.Future[None]", entry: _Entry) -> None:
    """Wait for ``entry``'s turn. A caller cancelled here may already have been started on the
    engine (its turn came, its task had not resumed yet): that request is cancelled too, so it
    takes no sample and makes no call for nobody."""
    try:
        await ready
    except asyncio.CancelledError:
        if entry.remote is not None:
            entry.remote.cancel()
        raise


async def _settle_async(entry: _Entry) -> Response:
    if entry.response is not None:
        return entry.response
    if entry.error is not None:
        raise entry.error
    assert entry.remote is not None
    return await asyncio.wrap_future(entry.remote)


def _release(entries: list[_Entry]) -> None:
    for entry in entries:
        _set(entry.ready)
