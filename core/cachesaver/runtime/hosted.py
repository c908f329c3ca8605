"""``HostedPipeline``: an engine pipeline that adapters call from any thread or event loop.

The call path every adapter shares:

1. **Full hit, synchronously, where the caller is.** For a private run on a memory or disk store
   the pipeline serves a hit on the calling thread (``OnlineAPI.try_now``): no hop to the
   engine's loop, no event loop needed at all. Async callers first gather the requests of one
   event-loop tick on their own loop and check them in ``request_id`` order, as the engine does
   on its own loop, so concurrent requests replay in the same order (G4).
2. **Everything else on the engine host** (:mod:`cachesaver.runtime.host`): misses, merging,
   shared runs, remote stores. A request that missed on the synchronous path keeps its place in
   its (namespace, key) queue (a ``Reservation``), so a later request never overtakes it.

The pipeline is built lazily and rebuilt in a forked child (the parent's loop thread, locks and
store connections are not usable there; the child's private run starts afresh, a shared
``run_id`` keeps sharing its ledger through the store).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..pipelines import OnlineAPI, Reservation
from ..stores import Store
from ..typedefs import Request, Response
from .host import EngineHost, get_host

__all__ = ["HostedPipeline", "PipelineSettings"]

_AUTO = "\x00auto-"


@dataclass(frozen=True)
class PipelineSettings:
    """What an adapter's pipeline is built from (the same settings give the same pipeline)."""

    store: Any
    batch_size: int = 64
    timeout: float = 0.02
    run_id: Optional[str] = None
    namespace: str = "default"
    extra: dict = field(default_factory=dict)  # more OnlineAPI keywords

    def same_as(self, other: "PipelineSettings") -> bool:
        """Paths compare by value, store objects by identity."""
        paths = (str, os.PathLike)
        if isinstance(self.store, paths) and isinstance(other.store, paths):
            same_store = os.fspath(self.store) == os.fspath(other.store)
        else:
            same_store = self.store is other.store
        return same_store and (self.batch_size, self.timeout, self.run_id, self.namespace, self.extra) == (
            other.batch_size, other.timeout, other.run_id, other.namespace, other.extra)


@dataclass(eq=False)
class _Entry:
    """One async request waiting for its caller-loop tick to be checked."""

    request: Request
    order: tuple[str, int]
    ready: "asyncio.Future[None]"
    response: Optional[Response] = None
    error: Optional[BaseException] = None
    remote: "Optional[concurrent.futures.Future[Response]]" = None


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
        self.pipeline  # fail fast on bad settings (a bad store spec, a bad batch size)

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
        self.pipeline
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
        return OnlineAPI(model=self._model_factory(), cache=store, batch_size=s.batch_size,
                         timeout=s.timeout, run_id=s.run_id, namespace=s.namespace, **s.extra)

    # -- requests --------------------------------------------------------------------------------
    def request_sync(self, request: Request) -> Response:
        """Samples for ``request``, blocking this thread (a hit does not leave it)."""
        pipeline = self._open_pipeline()
        first = pipeline.try_now(request)
        if isinstance(first, Response):
            return first
        return self.host.run(self._on_host(pipeline, request, first))

    async def request_async(self, request: Request) -> Response:
        """Samples for ``request`` from any event loop (a hit stays on the caller's loop)."""
        pipeline = self._open_pipeline()
        if not pipeline.sync_hits:
            return await self.host.arun(pipeline.request(request))
        entry = self._join_tick(request)
        await entry.ready
        if entry.response is not None:
            return entry.response
        if entry.error is not None:
            raise entry.error
        assert entry.remote is not None
        return await asyncio.wrap_future(entry.remote)

    def submit(self, request: Request) -> "concurrent.futures.Future[Response]":
        """Start ``request`` now; the future settles from the engine's loop (streams use this).

        A hit settles it before this returns.
        """
        pipeline = self._open_pipeline()
        first = pipeline.try_now(request)
        if isinstance(first, Response):
            done: concurrent.futures.Future[Response] = concurrent.futures.Future()
            done.set_result(first)
            return done
        return self._start_on_host(pipeline, request, first)

    # -- one caller-loop tick (async callers) -----------------------------------------------------
    def _join_tick(self, request: Request) -> _Entry:
        loop = asyncio.get_running_loop()
        order = (request.request_id or _AUTO, next(self._arrivals))
        entry = _Entry(request, order, loop.create_future())
        entries = self._ticks.get(loop)
        if entries is None:
            self._ticks[loop] = [entry]
            loop.call_soon(self._check_tick, loop)
        else:
            entries.append(entry)
        return entry

    def _check_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve the tick's requests in ``request_id`` order (arrival order for those without)."""
        entries = self._ticks.pop(loop, [])
        entries.sort(key=lambda e: e.order)  # as the engine's reorder: ids without one first
        pipeline = self._pipeline
        for entry in entries:
            if entry.ready.done():  # the caller left before its turn: it takes nothing
                continue
            try:
                if pipeline is None or self._pid != os.getpid():
                    pipeline = self._open_pipeline()
                first = pipeline.try_now(entry.request)
                if isinstance(first, Response):
                    entry.response = first
                else:
                    entry.remote = self._start_on_host(pipeline, entry.request, first)
            except BaseException as exc:  # a bad request, a corrupt sample, a closed pipeline
                entry.error = exc
            entry.ready.set_result(None)

    # -- the engine host ----------------------------------------------------------------------------
    def _start_on_host(self, pipeline: OnlineAPI, request: Request,
                       reservation: Optional[Reservation]) -> "concurrent.futures.Future[Response]":
        try:
            return self.host.submit(self._on_host(pipeline, request, reservation))
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise

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


def _reopen(store: Any) -> Any:
    """What a forked child opens: a spec (path, URL) as given, a ``diskcache.Cache`` by its
    directory, a store object after it re-connected (``Store.after_fork``)."""
    if isinstance(store, Store):
        store.after_fork()
        return store
    directory = getattr(store, "directory", None)
    return directory if isinstance(directory, str) else store

