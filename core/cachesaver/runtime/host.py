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
"""
from __future__ import annotations

import _thread
import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
import weakref
from typing import Any, Awaitable, Callable, Coroutine, Optional, TypeVar

__all__ = ["EngineHost", "get_host", "SHUTDOWN_TIMEOUT"]

log = logging.getLogger("cachesaver.runtime.host")

T = TypeVar("T")

#: How long closing waits for in-flight work (pipelines committing, clients closing).
SHUTDOWN_TIMEOUT = 10.0

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

        def start() -> None:
            task = self.loop.create_task(coro)
            box.append(task)
            task.add_done_callback(lambda _task: done.release())

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

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Close the owners, run the close callbacks, stop the loop and join its thread."""
        if not self.alive:
            return
        owners = list(self._owners)
        callbacks = list(self._on_close)

        async def close_all() -> None:
            await asyncio.gather(*(owner.aclose() for owner in owners), return_exceptions=True)
            for callback in callbacks:
                try:
                    await callback()
                except Exception as exc:  # never fail a shutdown on one callback
                    log.debug("engine host close callback failed: %s", type(exc).__name__)

        if not self.in_host_thread:
            try:
                self.submit(close_all()).result(timeout)
            except Exception as exc:  # best effort: in-flight calls may outlive the timeout
                log.debug("closing the engine host's owners failed: %s", type(exc).__name__)
        self.call_soon(self.loop.stop)
        if not self.in_host_thread:
            self.thread.join(timeout)


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
        return _host


def _forget_after_fork() -> None:
    """In a forked child: the parent's host thread does not exist here, and its locks may be
    held by threads that do not exist either. Start from nothing."""
    global _host, _lock
    _host = None
    _lock = threading.Lock()


def _stop_at_exit() -> None:
    host = _host
    if host is not None and host.alive:
        host.stop()


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(_stop_at_exit)
