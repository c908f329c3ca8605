"""One background event loop that owns every engine pipeline of this adapter.

Why: an engine pipeline is bound to the event loop it first runs on (its futures and locks are
asyncio objects), while litellm calls our handler from many places at once: ``acompletion`` on
the user's loop, sync ``completion`` on any thread (possibly *inside* a running loop, where
``asyncio.run`` is impossible), Router worker tasks. Running the pipelines on one private loop
thread and hopping to it (~50 us per round trip) makes all of these work with one ledger, so
sync and async callers of one namespace never get the same sample twice.

The loop is reference-counted: the provider and each ``CacheSaverRouter`` acquire it, and the
last release (or interpreter exit) stops it after closing what ran on it.
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
import weakref
from typing import Any, Awaitable, Callable, Coroutine, Optional, TypeVar

__all__ = ["LoopThread", "acquire_loop", "release_loop", "track"]

log = logging.getLogger("cachesaver.litellm.loop")

T = TypeVar("T")

#: How long shutdown waits for in-flight work (closing pipelines, HTTP clients).
SHUTDOWN_TIMEOUT = 10.0


class LoopThread:
    """An asyncio loop running forever in a daemon thread, with thread-safe entry points."""

    def __init__(self, name: str = "cachesaver-litellm") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                self._cancel_leftovers()
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.run_until_complete(self.loop.shutdown_default_executor())
            finally:
                self.loop.close()

    def _cancel_leftovers(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the background loop from any other loop (cancellation propagates)."""
        if self.in_loop_thread:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the background loop and block this thread until it is done.

        Safe inside a running event loop of *another* thread-owner (the caller's loop simply
        blocks, like any sync call); refused on the background thread itself, where it would
        wait for itself forever.
        """
        if self.in_loop_thread:
            coro.close()
            raise RuntimeError(
                "a synchronous cachesaver call was made from the cachesaver background loop "
                "(e.g. inside a litellm callback); use the async API (litellm.acompletion) there"
            )
        future = self.submit(coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def call(self, fn: Callable[[], Awaitable[T]], timeout: Optional[float] = SHUTDOWN_TIMEOUT) -> T:
        """Run ``await fn()`` on the loop from a plain thread, with a timeout (shutdown paths)."""
        async def runner() -> T:
            return await fn()

        if self.in_loop_thread:
            raise RuntimeError("LoopThread.call() cannot be used from the loop thread")
        return self.submit(runner()).result(timeout)

    def stop(self) -> None:
        """Stop the loop and join its thread; idempotent."""
        if self.loop.is_closed():
            return
        if self.in_loop_thread:  # cannot join ourselves: stop after this callback returns
            self.loop.stop()
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            return
        self.thread.join(SHUTDOWN_TIMEOUT)


_lock = threading.Lock()
_shared: Optional[LoopThread] = None
_users = 0
_atexit_registered = False
# Objects with an ``async aclose()`` whose pipeline lives on the shared loop; closed at exit.
_open: "weakref.WeakSet[Any]" = weakref.WeakSet()


def track(owner: Any) -> None:
    """Close ``owner`` (``await owner.aclose()``) at interpreter exit if the user did not."""
    _open.add(owner)


def acquire_loop() -> LoopThread:
    """The shared background loop, started on first use."""
    global _shared, _users, _atexit_registered
    with _lock:
        if _shared is None or _shared.loop.is_closed():
            _shared = LoopThread()
        _users += 1
        if not _atexit_registered:
            atexit.register(_shutdown_at_exit)
            _atexit_registered = True
        return _shared


def release_loop(loop_thread: LoopThread) -> None:
    """Drop one user; the last one closes litellm's HTTP clients bound to the loop and stops it."""
    global _shared, _users
    with _lock:
        if loop_thread is not _shared:
            return
        _users -= 1
        if _users > 0:
            return
        _shared = None
        _users = 0
    _close_loop(loop_thread)


def _close_loop(loop_thread: LoopThread) -> None:
    if loop_thread.loop.is_closed():
        return
    try:
        loop_thread.call(_close_litellm_clients)
    except Exception as exc:  # best effort: never fail a shutdown because a client would not close
        log.debug("closing litellm clients on the cachesaver loop failed: %r", exc)
    loop_thread.stop()


async def _close_litellm_clients() -> None:
    """Close aiohttp/httpx clients litellm cached for *this* loop (else: 'Unclosed client session').

    litellm keys its client cache by event loop, so the clients made by inner calls on our loop
    belong to us; clients of other loops are left alone.
    """
    import litellm

    cache = getattr(litellm, "in_memory_llm_clients_cache", None)
    cache_dict = getattr(cache, "cache_dict", None)
    if not isinstance(cache_dict, dict):
        return
    token = _loop_token()
    for key, client in list(cache_dict.items()):
        if token is None or not str(key).endswith(f"-{token}"):
            continue
        await _aclose_client(client)
        cache_dict.pop(key, None)
        ttl = getattr(cache, "ttl_dict", None)
        if isinstance(ttl, dict):
            ttl.pop(key, None)


def _loop_token() -> Optional[str]:
    try:
        from litellm.caching.evicted_client_closer import running_loop_token
    except ImportError:  # pragma: no cover - other litellm layouts
        return None
    token = running_loop_token()
    return None if token is None else str(token)


async def _aclose_client(client: Any) -> None:
    for attr in ("aclose", "close"):
        method = getattr(client, attr, None)
        if method is None:
            continue
        try:
            result = method()
            if asyncio.iscoroutine(result):
                await result
        except Exception as exc:
            log.debug("closing %s failed: %r", type(client).__name__, exc)
        return
    inner = getattr(client, "client", None) or getattr(client, "_client", None)
    if inner is not None and inner is not client:
        await _aclose_client(inner)


def _shutdown_at_exit() -> None:
    global _shared, _users
    with _lock:
        loop_thread, _shared, _users = _shared, None, 0
    if loop_thread is None:
        return
    for owner in list(_open):
        try:
            loop_thread.call(owner.aclose)
        except Exception as exc:  # keep closing the others
            log.debug("closing %r at exit failed: %r", owner, exc)
    _close_loop(loop_thread)
