"""The one background event loop on which every ``CacheSaverChatModel`` pipeline runs.

Why one loop in a thread rather than a pipeline per caller loop: an engine pipeline is bound to
the event loop it first runs on, and its ledger is what keeps a namespace from receiving a sample
twice (G1). LangChain calls a chat model from everywhere at once: ``invoke`` on any thread (also
*inside* a running loop, where ``asyncio.run`` is impossible), ``batch`` from a thread pool,
``ainvoke``/``astream`` on whatever loop the caller runs, LangGraph nodes on either. With one
private loop every entry point hops to the same pipeline (one ledger per model instance), and the
inner model's async HTTP client is only ever used from that one long-lived loop. A hop costs a
few tens of microseconds; a hit is dominated by LangChain's own callback machinery.
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
from typing import Any, Coroutine, Optional, TypeVar

__all__ = ["EngineLoop", "engine_loop", "register_closer"]

log = logging.getLogger("cachesaver.langchain.loop")

T = TypeVar("T")

#: How long interpreter exit waits for pipelines to close (stores flushed, connections closed).
SHUTDOWN_TIMEOUT = 5.0


class EngineLoop:
    """An asyncio loop running forever in a daemon thread, with thread-safe entry points."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(ready,), name="cachesaver-langchain", daemon=True
        )
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        """Schedule ``coro`` on the loop; the returned future is safe to wait on from any thread."""
        if self.in_loop_thread:
            coro.close()
            raise RuntimeError(_NESTED)
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and block this thread until it is done.

        Every sync cache hit makes this round trip, so it waits on a bare lock rather than a
        ``concurrent.futures.Future`` (a third cheaper). Interrupting the wait cancels ``coro``.
        """
        if self.in_loop_thread:
            coro.close()
            raise RuntimeError(_NESTED)
        done = _thread.allocate_lock()
        done.acquire()
        box: list[asyncio.Task[T]] = []

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
        if self.in_loop_thread:
            coro.close()
            raise RuntimeError(_NESTED)
        caller = asyncio.get_running_loop()
        result: asyncio.Future[T] = caller.create_future()
        box: list[asyncio.Task[T]] = []

        def settle(task: "asyncio.Task[T]") -> None:
            if result.done():
                return
            if task.cancelled():
                result.cancel()
            elif task.exception() is not None:
                result.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                result.set_result(task.result())

        def start() -> None:
            task = self.loop.create_task(coro)
            box.append(task)
            task.add_done_callback(lambda t: _call_soon_threadsafe(caller, settle, t))

        self.loop.call_soon_threadsafe(start)
        try:
            return await result
        except asyncio.CancelledError:
            self.call_soon(lambda: box and box[0].cancel())
            raise

    def call_soon(self, callback: Any, *args: Any) -> None:
        """Run ``callback(*args)`` on the loop thread (silently dropped once the loop is closed)."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed at interpreter exit
            pass

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.call_soon(self.loop.stop)
        if not self.in_loop_thread:
            self.thread.join(SHUTDOWN_TIMEOUT)


_NESTED = (
    "CacheSaverChatModel was called from inside its own background loop (e.g. from a callback "
    "of the inner model); call it from your own code instead"
)


def _call_soon_threadsafe(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the caller's loop is closed: nobody is waiting
        pass


_lock = threading.Lock()
_shared: Optional[EngineLoop] = None
_closers: "weakref.WeakSet[Any]" = weakref.WeakSet()


def engine_loop() -> EngineLoop:
    """The process-wide loop, started on first use (and again in a forked child)."""
    global _shared
    shared = _shared
    if shared is not None and shared.pid == os.getpid():
        return shared
    with _lock:
        if _shared is None or _shared.pid != os.getpid():
            _shared = EngineLoop()
        return _shared


def register_closer(owner: Any) -> None:
    """Remember ``owner`` (it has ``async aclose()``) so interpreter exit closes it cleanly."""
    _closers.add(owner)


@atexit.register
def _shutdown() -> None:
    shared = _shared
    if shared is None or shared.pid != os.getpid() or shared.loop.is_closed():
        return
    owners = list(_closers)

    async def close_all() -> None:
        await asyncio.gather(*(owner.aclose() for owner in owners), return_exceptions=True)

    if owners:
        try:
            shared.submit(close_all()).result(SHUTDOWN_TIMEOUT)
        except Exception as exc:  # pragma: no cover - best effort at exit
            log.debug("closing cachesaver pipelines at exit failed: %r", exc)
    shared.stop()
