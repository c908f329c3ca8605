"""The engine host: one background event loop per process on which every adapter's pipeline runs.

Why a loop of our own: an engine pipeline is bound to the event loop it runs on (its futures,
batch timers and per-key turns are asyncio objects), while frameworks call a model from
everywhere at once: sync ``completion``/``invoke`` on any thread (also *inside* a running loop,
where ``asyncio.run`` is impossible), thread pools, ``acompletion``/``ainvoke`` on whatever loop
the caller runs. Misses, merging and streams therefore run here; full hits usually never come
here at all (see :mod:`cachesaver.runtime.hosted`).

Lifecycle guarantees:

- started on first use, one per process;
- **fork-aware**: a child made by ``fork`` (multiprocessing's default on Linux before Python
  3.14) cannot use the parent's loop thread (it does not exist in the child) nor its locks, so
  :func:`get_host` starts a fresh host in the child; pipelines notice the new pid and rebuild;
- **clean exit**: at interpreter exit every registered owner is closed on the loop (committing
  what is in flight), then the ``on_close`` callbacks run (adapters close their HTTP clients),
  then the loop stops.
- **paid samples survive the exit** (also on Ctrl-C, and with daemon threads still calling):
  a model call already sent is either stored or was never sent. Two hooks, in this order:

  1. when the main thread ends (a ``threading`` exit hook: before ``concurrent.futures`` shuts
     its thread pools down, which inner models still need to read an answer, e.g.
     langchain-openai), the calls in flight at that moment are waited for until their samples
     are appended (:meth:`EngineHost.drain`). New calls may still start: non-daemon threads
     keep running after the main thread and are joined later.
  2. at interpreter exit (an ``atexit`` hook moved to run before every other one, in
     particular before litellm's, which closes the HTTP clients of every event loop), no new
     model call starts (requests that need one fail with ``PipelineClosedError``), the calls
     still in flight are waited for, and only then the adapters' clients are closed.

  Each wait is bounded by :data:`EXIT_TIMEOUT` seconds (read at exit; set
  ``cachesaver.runtime.host.EXIT_TIMEOUT`` to change it). A call still in flight after it is
  lost (paid, not stored); a second Ctrl-C during the wait gives up waiting at once.
- **daemon threads stay out of the way of the exit**: once the main thread has ended, a daemon
  thread waiting in :meth:`EngineHost.run` is not woken when its call ends (its samples are
  stored; Python abandons daemon threads at exit). Woken, it would run its caller's code, imports
  included, while the interpreter finalizes, and a daemon thread stopped holding the import lock
  hangs the exit for good (litellm's HTTP handlers import in ``__del__``). Non-daemon threads are
  woken as always: the interpreter joins them.
"""
from __future__ import annotations

import _thread
import asyncio
import atexit
import concurrent.futures
import concurrent.futures.thread  # noqa: F401  (its exit hook must be registered before ours)
import logging
import os
import threading
import weakref
from typing import Any, Awaitable, Callable, Coroutine, Optional, TypeVar

__all__ = ["EngineHost", "get_host", "SHUTDOWN_TIMEOUT", "EXIT_TIMEOUT"]

log = logging.getLogger("cachesaver.runtime.host")

T = TypeVar("T")

#: How long closing waits for in-flight work (pipelines committing, clients closing).
SHUTDOWN_TIMEOUT = 10.0
#: At exit, how long each of the two exit hooks waits for model calls in flight (see above).
EXIT_TIMEOUT = 10.0
#: Why a request fails that would start a model call once the interpreter exits.
_EXITING = (
    "the process is exiting: cachesaver starts no new model call (its samples could no longer "
    "be stored); calls already sent are finished and stored. Join the threads that call the "
    "model before the program ends"
)

_NESTED = (
    "a synchronous cachesaver call was made on cachesaver's own engine loop (e.g. from a "
    "callback of the inner model or of litellm); use the async API there"
)


class EngineHost:
    """An asyncio loop running forever in a daemon thread, with thread-safe entry points."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._owners: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._on_close: list[Callable[[], Awaitable[None]]] = []
        #: A wait at exit was interrupted (a second Ctrl-C): the exit waits no more.
        self.gave_up = False
        #: The main thread has ended (the interpreter is exiting): see :meth:`run`.
        self.exiting = False
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name="cachesaver-engine", daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for task in tasks:
                    task.cancel()
                if tasks:
                    self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    # -- state -------------------------------------------------------------------------------
    @property
    def in_host_thread(self) -> bool:
        return threading.current_thread() is self.thread

    @property
    def alive(self) -> bool:
        return self.pid == os.getpid() and not self.loop.is_closed() and self.thread.is_alive()

    # -- entry points ------------------------------------------------------------------------
    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        """Schedule ``coro`` on the loop; cancelling the returned future cancels ``coro``."""
        if self.in_host_thread:
            coro.close()
            raise RuntimeError(_NESTED)
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and block this thread until it is done.

        Safe inside another thread's running event loop (it simply blocks, like any sync call);
        refused on the host thread, where it would wait for itself. Waits on a bare lock rather
        than a ``concurrent.futures.Future`` (a third cheaper). Interrupting the wait (Ctrl-C)
        cancels ``coro``.
        """
        if self.in_host_thread:
            coro.close()
            raise RuntimeError(_NESTED)
        done = _thread.allocate_lock()
        done.acquire()
        box: list["asyncio.Task[T]"] = []
        daemon = threading.current_thread().daemon

        def wake(_task: "asyncio.Task[T]") -> None:
            # A daemon thread whose call ends once the interpreter is exiting is not woken: its
            # samples are stored, and Python abandons daemon threads at exit anyway. Woken, it
            # would run the caller's code (and its imports) while the interpreter finalizes; a
            # daemon thread stopped holding the import lock deadlocks the exit (an object's
            # ``__del__`` that imports, as litellm's HTTP handlers do, then waits forever).
            if not (daemon and self.exiting):
                done.release()

        def start() -> None:
            task = self.loop.create_task(coro)
            box.append(task)
            task.add_done_callback(wake)

        self.loop.call_soon_threadsafe(start)
        try:
            done.acquire()
        except BaseException:
            self.call_soon(lambda: box and box[0].cancel())
            raise
        return box[0].result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the loop from another loop; cancelling the caller cancels ``coro``."""
        return await asyncio.wrap_future(self.submit(coro))

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop thread (dropped once the loop is closed)."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed at interpreter exit
            pass

    # -- lifecycle ---------------------------------------------------------------------------
    def track(self, owner: Any) -> None:
        """Close ``owner`` (``await owner.aclose()`` on the loop) at exit if nobody did."""
        self._owners.add(owner)

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``await callback()`` on the loop when it stops (after the owners are closed)."""
        if callback not in self._on_close:
            self._on_close.append(callback)

    def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until the model calls the owners have in flight now have
        ended and their samples are stored. Refused on the loop's own thread."""
        if not self.alive or self.in_host_thread:
            return
        drains = [owner.drain for owner in list(self._owners) if callable(getattr(owner, "drain", None))]

        async def drain_all() -> None:
            await asyncio.gather(*(drain() for drain in drains), return_exceptions=True)

        self._wait(drain_all(), timeout, "waiting for the model calls in flight")

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT, *, exiting: bool = False) -> None:
        """Close the owners, run the close callbacks, stop the loop and join its thread.

        ``exiting``: the interpreter exits, so owners start no new model call while they
        finish what is in flight (their ``refuse_new_calls``).
        """
        if not self.alive:
            return
        owners = list(self._owners)
        callbacks = list(self._on_close)
        if exiting:
            for owner in owners:
                refuse = getattr(owner, "refuse_new_calls", None)
                if callable(refuse):
                    self.call_soon(refuse, _EXITING)  # on the loop, before the closes below

        async def close_all() -> None:
            await asyncio.gather(*(owner.aclose() for owner in owners), return_exceptions=True)
            for callback in callbacks:
                try:
                    await callback()
                except Exception as exc:  # never fail a shutdown on one callback
                    log.debug("engine host close callback failed: %s", type(exc).__name__)

        if self.gave_up:
            timeout = 0.0
        if not self.in_host_thread:
            self._wait(close_all(), timeout, "closing the engine host's owners")
        self.call_soon(self.loop.stop)
        if not self.in_host_thread:
            try:
                self.thread.join(timeout)
            except KeyboardInterrupt:
                log.debug("stopping the engine host was interrupted")

    def _wait(self, coro: Coroutine[Any, Any, None], timeout: float, what: str) -> None:
        """Run ``coro`` on the loop and wait at most ``timeout``; never raises (best effort:
        in-flight calls may outlive the timeout; Ctrl-C gives up the wait)."""
        try:
            self.submit(coro).result(timeout)
        except KeyboardInterrupt:
            self.gave_up = True
            log.debug("%s was interrupted", what)
        except Exception as exc:
            log.debug("%s failed: %s", what, type(exc).__name__)


_lock = threading.Lock()
_host: Optional[EngineHost] = None


def get_host() -> EngineHost:
    """The process's engine host, started on first use (and afresh in a forked child)."""
    global _host
    host = _host
    if host is not None and host.pid == os.getpid():
        return host
    with _lock:
        if _host is None or _host.pid != os.getpid() or _host.loop.is_closed():
            _host = EngineHost()
            _first_at_exit()  # ahead of exit hooks registered so far (where threading has none)
        return _host


def _forget_after_fork() -> None:
    """In a forked child: the parent's host thread does not exist here, and its locks may be
    held by threads that do not exist either. Start from nothing."""
    global _host, _lock
    _host = None
    _lock = threading.Lock()


def _drain_at_exit() -> None:
    """The main thread ended: store what is in flight while thread pools still work, and make
    the interpreter-exit hook run before every other one (litellm's client cleanup included,
    whenever litellm registered it)."""
    _first_at_exit()
    host = _host
    if host is not None and host.alive:
        host.exiting = True
        host.drain(EXIT_TIMEOUT)


def _stop_at_exit() -> None:
    host = _host
    if host is not None and host.alive:
        host.exiting = True
        host.stop(EXIT_TIMEOUT, exiting=True)


def _first_at_exit() -> None:
    """(Re-)register :func:`_stop_at_exit` as the last ``atexit`` hook, which runs first."""
    atexit.unregister(_stop_at_exit)
    atexit.register(_stop_at_exit)


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(_stop_at_exit)
_register_thread_exit = getattr(threading, "_register_atexit", None)
if _register_thread_exit is not None:  # CPython >= 3.9 (private API; else the atexit hook only)
    _register_thread_exit(_drain_at_exit)
