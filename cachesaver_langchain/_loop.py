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
            raise RuntimeError(
                "CacheSaverChatModel was called from inside its own background loop (e.g. from "
                "a callback of the inner model); call it from your own code instead"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: Optional[float] = None) -> T:
        """Run ``coro`` on the loop and block this thread until it is done."""
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
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
            shared.run(close_all(), timeout=SHUTDOWN_TIMEOUT)
        except Exception as exc:  # pragma: no cover - best effort at exit
            log.debug("closing cachesaver pipelines at exit failed: %r", exc)
    shared.stop()
