"""Batch mode's model: the engine's misses go to a provider Batch API instead of one call each.

The engine plans misses exactly as in interactive mode (one call per key, ``n`` = the missing
count, merged across namespaces, under the key's generation lease); in batch mode that call is a
*line* of a provider batch. :class:`BatchCollector` is what the pipeline calls instead of the
model:

1. a miss of key K first looks in the store's journal for an open line of K whose collector is
   gone (a process that died after submitting) and collects that batch: nothing is submitted
   again;
2. otherwise its line joins the window of its group (provider, endpoint, credentials, model);
   a window is submitted when it holds ``max_lines`` lines or ``max_bytes`` bytes, or
   ``window`` seconds after its first line;
3. submission records the batch and its lines (key, n) in the journal *before* the upload, the
   file id before the batch is created, the batch id as soon as creation returns;
4. one task per batch polls with backoff; when the batch ends, each answered line goes back to
   its waiting call (the engine appends its samples, bills them, then the line is marked
   ``stored``); a line the provider answered with an error fails exactly the requests of that
   call (G5); an expired batch resubmits only its lines without an answer.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Hashable, Optional

from ..codec import decode_sample
from ..errors import CacheSaverError, InvalidRequestError
from ..generation import current_generation
from ..typedefs import Request, Response
from .backend import ENDED, BatchBackend, BatchLineError, BatchNotAnsweredError, BatchUnsupportedError, LineResult
from .journal import LIVE, BatchJournal, BatchRecord, BatchTakenOverError, LineRecord, collector_gone, owner_token

if TYPE_CHECKING:  # (the stores import this package for their journals: no import at run time)
    from ..stores.base import Store

__all__ = ["BatchAPI", "BatchCollector"]

log = logging.getLogger("cachesaver.batchapi")


@dataclasses.dataclass(frozen=True)
class BatchAPI:
    """Batch mode for a pipeline's misses: ``OnlineAPI(model, cache, batch_api=BatchAPI(backend))``.

    ``window``: seconds a batch stays open for more lines after its first; ``max_lines`` and
    ``max_bytes``: a batch file's limits (OpenAI: 50,000 requests, 200 MB); ``poll``: the first
    wait between status checks, growing by ``backoff`` up to ``max_poll``; ``resubmit_expired``:
    an expired batch's unanswered lines go into a new batch (else they fail).
    """

    backend: Any
    window: float = 1.0
    max_lines: int = 50_000
    max_bytes: int = 190_000_000
    poll: float = 1.0
    max_poll: float = 60.0
    backoff: float = 1.5
    resubmit_expired: bool = True

    def __post_init__(self) -> None:
        for name in ("window", "poll", "max_poll"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidRequestError(f"BatchAPI.{name} must be a number of seconds >= 0, got {value!r}")
        for name in ("max_lines", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidRequestError(f"BatchAPI.{name} must be an int >= 1, got {value!r}")
        if isinstance(self.backoff, bool) or not isinstance(self.backoff, (int, float)) or self.backoff < 1:
            raise InvalidRequestError(f"BatchAPI.backoff must be a number >= 1, got {self.backoff!r}")


@dataclasses.dataclass(eq=False)
class _Line:
    custom_id: str
    key: str
    n: int
    request: Request
    body: bytes
    future: "asyncio.Future[LineResult]"
    first: int = -1  # where its samples are planned to go (LineRecord.first)
    meta: Optional[bytes] = None       # LineRecord.meta


@dataclasses.dataclass(eq=False)
class _Window:
    lines: list = dataclasses.field(default_factory=list)
    size: int = 0
    timer: Optional[asyncio.TimerHandle] = None


class BatchCollector:
    """Turns the engine's model calls into batch lines (see the module docstring)."""

    def __init__(self, options: BatchAPI, journal: Optional[BatchJournal], store_location: str,
                 store: "Optional[Store]" = None) -> None:
        if journal is None:
            raise BatchUnsupportedError(
                f"batch_api: the store at {store_location} keeps no batch journal, so a submitted "
                "batch could be lost or paid twice; use a directory store (the default) or 'memory'")
        self.options = options
        #: Read to check adopted lines against what is already stored (see _stored_already).
        self.store = store
        self.backend: BatchBackend = options.backend
        self.journal = journal
        self.owner = owner_token(uuid.uuid4().hex[:8])
        LIVE.add(self.owner)
        self._windows: dict[Hashable, _Window] = {}
        #: Per batch collected by this process: the task polling it and its lines' futures.
        self._polls: dict[str, "asyncio.Task[None]"] = {}
        self._waiting: dict[str, dict[str, "asyncio.Future[LineResult]"]] = {}
        #: Lines this process submitted and still waits for (to resubmit them if their batch expires).
        self._lines: dict[str, _Line] = {}
        self._tasks: set["asyncio.Task[Any]"] = set()
        self._heartbeat: "Optional[asyncio.Future[None]]" = None
        #: Counters: batches submitted and adopted (collected for a gone process), lines sent.
        self.submitted = 0
        self.adopted = 0
        self.lines_sent = 0

    # -- the engine's model call ---------------------------------------------------------------
    async def request(self, request: Request) -> Response:
        """``request.n`` samples of ``request`` through a batch (one line, or an adopted one)."""
        self.backend.check(request)
        generation = current_generation()
        key = generation.key if generation is not None else ""
        if key:
            adopted = await self._adopt(key, request)
            if adopted is not None:
                return adopted
        line = self._line(key, request)
        return await self._answer(line.future, key)

    async def _answer(self, future: "asyncio.Future[LineResult]", key: str) -> Response:
        result = await asyncio.shield(future)  # a caller leaving does not forget the line
        if result.samples is None:
            raise BatchLineError(f"the provider answered batch line {result.custom_id} (key {key}) with "
                                 f"an error: {result.error}; nothing was stored, asking again submits it again")
        generation = current_generation()
        if generation is not None:  # the line is done once the engine has appended its samples
            batch_id, custom_id, cost = result.batch, result.custom_id, result.usage.cost
            generation.when_stored(lambda _start: self.journal.close_line(batch_id, custom_id, "stored", cost))
        return Response(data=list(result.samples), usage=result.usage)

    # -- adoption (a restart collects what a gone process submitted) ---------------------------
    async def _adopt(self, key: str, request: Request) -> Optional[Response]:
        for batch, line in await self.journal.open_lines(key):
            if batch.owner != self.owner and not await collector_gone(self.journal, batch.owner, self.owner):
                continue
            if batch.owner != self.owner:
                await self._beat()  # alive before it owns the batch (another host must not take it back)
                if not await self.journal.take_over(batch.id, batch.owner, self.owner):
                    continue
            if batch.owner != self.owner:
                self.adopted += 1
                log.info("collecting batch %s (%s) submitted by a process that is gone",
                         batch.id, batch.provider_batch)
            provider_batch = batch.provider_batch
            if provider_batch is None and batch.input_file is not None:
                provider_batch = await self.backend.find(request, batch.input_file)
                if provider_batch is not None:
                    await self.journal.update(batch.id, provider_batch=provider_batch, state="submitted")
            if provider_batch is None:  # never created: nothing was paid
                await self.journal.close_line(batch.id, line.custom_id, "lost")
                await self.journal.update(batch.id, state="abandoned")
                continue
            futures = self._waiting.setdefault(batch.id, {})
            future = futures.get(line.custom_id)
            if future is None:
                future = futures[line.custom_id] = asyncio.get_running_loop().create_future()
            if batch.id not in self._polls:
                self._start_poll(batch.id, provider_batch, request)
            if line.first >= 0 and self.store is not None and await self._stored_already(key, line, future):
                continue  # the process that died appended them: they are in the list already
            try:
                return await self._answer(future, key)
            except BatchNotAnsweredError:
                continue  # expired or cancelled before answering: submit anew
        return None

    async def _stored_already(self, key: str, line: LineRecord, future: "asyncio.Future[LineResult]") -> bool:
        """Whether an adopted line's samples are already in ``key``'s list at the index it was
        planned for: its process died after appending them and before marking the line stored.
        Then the line is marked stored here; appending its samples again would put the same
        samples in the list twice (a namespace would be handed one answer twice, G1)."""
        try:
            result = await asyncio.shield(future)
        except BatchNotAnsweredError:
            return False
        if result.samples is None:
            return False
        assert self.store is not None
        stored = await self.store.read(key, line.first, len(result.samples))
        if len(stored) != len(result.samples):
            return False
        try:
            same = [decode_sample(raw, key=key, index=line.first + i).data for i, raw in enumerate(stored)] \
                == list(result.samples)
        except CacheSaverError:
            return False
        if same:
            await self.journal.close_line(line.batch, line.custom_id, "stored", result.usage.cost)
            log.info("batch line %s of key %s was stored by the process that submitted it", line.custom_id, key)
        return same

    # -- windows -------------------------------------------------------------------------------
    def _line(self, key: str, request: Request) -> _Line:
        custom_id = uuid.uuid4().hex
        body = self.backend.line(custom_id, request, request.n)
        generation = current_generation()
        first = generation.first_index if generation is not None and generation.key == key else -1
        meta = generation.meta if generation is not None and generation.key == key else None
        line = _Line(custom_id, key, request.n, request, body, asyncio.get_running_loop().create_future(), first,
                     meta)
        self._enqueue(line)
        return line

    def _enqueue(self, line: _Line) -> None:
        group = self.backend.group(line.request)
        window = self._windows.get(group)
        options = self.options
        if window is not None and (len(window.lines) >= options.max_lines
                                   or window.size + len(line.body) > options.max_bytes):
            self._close_window(group)
            window = None
        if window is None:
            window = self._windows[group] = _Window()
            window.timer = asyncio.get_running_loop().call_later(options.window, self._close_window, group)
        window.lines.append(line)
        window.size += len(line.body)
        if len(window.lines) >= options.max_lines:
            self._close_window(group)

    def _close_window(self, group: Hashable) -> None:
        window = self._windows.pop(group, None)
        if window is None or not window.lines:
            return
        if window.timer is not None:
            window.timer.cancel()
        self._spawn(self._submit(window.lines))

    def flush(self) -> None:
        """Submit every open window now (the pipeline is closing)."""
        for group in list(self._windows):
            self._close_window(group)

    # -- submission ----------------------------------------------------------------------------
    async def _submit(self, lines: "list[_Line]") -> None:
        request = lines[0].request
        batch = BatchRecord(id=uuid.uuid4().hex, state="submitting", owner=self.owner, created=time.time(),
                            info=dict(self.backend.describe(request), lines=len(lines),
                                      samples=sum(line.n for line in lines)))
        futures = self._waiting.setdefault(batch.id, {})
        for line in lines:
            futures[line.custom_id] = line.future
            self._lines[line.custom_id] = line
        try:
            # Estimated when the window closes (not as lines join it: the window's age is not spent
            # on it), in a thread: counting tokens costs ~0.2 ms a line, and the first count loads
            # the tokenizer (~0.5 s); the loop serves hits meanwhile.
            estimate = getattr(self.backend, "estimate", None)  # (optional: see BatchBackend)
            estimates = await asyncio.to_thread(lambda: [estimate(ln.request, ln.n) for ln in lines]) \
                if estimate is not None else [None] * len(lines)
            await self._beat()  # the batch is recorded as owned by a collector known to be alive
            await self.journal.add(batch, [LineRecord(batch.id, ln.custom_id, ln.key, ln.n, first=ln.first, meta=ln.meta,
                                                      estimate=cost) for ln, cost in zip(lines, estimates)])
            input_file = await self.backend.upload(request, b"".join(line.body for line in lines))
            await self.journal.update(batch.id, input_file=input_file)
            provider_batch = await self.backend.create(request, input_file, batch.id)
            await self.journal.update(batch.id, provider_batch=provider_batch, state="submitted")
        except Exception as exc:
            # Nothing was created (or we cannot know, and the record stays for a restart's find).
            log.debug("batch submission failed: %s", type(exc).__name__)
            if not _created_maybe(exc):
                for line in lines:
                    await _quietly(self.journal.close_line(batch.id, line.custom_id, "lost"))
                await _quietly(self.journal.update(batch.id, state="abandoned"))
            self._waiting.pop(batch.id, None)
            for line in lines:
                self._lines.pop(line.custom_id, None)
                if not line.future.done():
                    line.future.set_exception(exc)
            return
        self.submitted += 1
        self.lines_sent += len(lines)
        self._start_poll(batch.id, provider_batch, request)

    # -- polling -------------------------------------------------------------------------------
    def _start_poll(self, batch_id: str, provider_batch: str, request: Request) -> None:
        self._polls[batch_id] = self._spawn(self._poll(batch_id, provider_batch, request))
        if self._heartbeat is None and hasattr(self.journal, "heartbeat"):
            self._heartbeat = asyncio.ensure_future(self._keep_alive())

    # -- liveness (journals that keep it: a collector of another host that stops renewing it
    # is gone, and its batches are collected by another process) ------------------------------
    async def _beat(self) -> None:
        beat = getattr(self.journal, "heartbeat", None)
        if beat is not None:
            await beat(self.owner)

    async def _keep_alive(self) -> None:
        """Renew this collector's liveness while it polls batches."""
        try:
            while self._polls:
                try:
                    await self._beat()
                except Exception as exc:  # the next renewal may succeed; past the TTL, others take over
                    log.warning("could not renew the batch collector's liveness: %s", exc)
                await asyncio.sleep(self.journal.heartbeat_every)  # type: ignore[attr-defined]
        finally:
            self._heartbeat = None

    async def _poll(self, batch_id: str, provider_batch: str, request: Request) -> None:
        futures = self._waiting.get(batch_id, {})
        try:
            wait = self.options.poll
            while True:
                status = await self.backend.status(request, provider_batch)
                if status.state in ENDED:
                    break
                await asyncio.sleep(wait)
                wait = min(wait * self.options.backoff, self.options.max_poll)
            results = await self.backend.results(request, status)
            owner = getattr(self.journal, "owner", None)
            if owner is not None and await owner(batch_id) != self.owner:
                # Taken over while this process did not renew its liveness: the new owner
                # stores the answers (stored twice otherwise).
                raise BatchTakenOverError(f"batch {batch_id} was taken over by another process (this one did "
                                          "not renew its liveness in time), which stores its answers; ask again")
            await self.journal.update(batch_id, state=status.state)
        except Exception as exc:  # the batch is still recorded: a later miss collects it again
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._polls.pop(batch_id, None)
        resubmit = []
        for custom_id, future in futures.items():
            result = results.get(custom_id)
            if result is not None and result.samples is None:
                await _quietly(self.journal.close_line(batch_id, custom_id, "failed"))
            elif result is None:
                await _quietly(self.journal.close_line(batch_id, custom_id, "lost"))
            line = self._lines.pop(custom_id, None)
            if future.done():
                continue
            if result is not None:
                future.set_result(dataclasses.replace(result, batch=batch_id, custom_id=custom_id))
            else:
                resubmit.append((custom_id, future, line))
        self._waiting.pop(batch_id, None)
        self._not_answered(batch_id, status.state, status.message, resubmit)

    def _not_answered(self, batch_id: str, state: str, message: str,
                      lines: "list[tuple[str, asyncio.Future[LineResult], Optional[_Line]]]") -> None:
        """Lines an ended batch left unanswered: an expired batch's go into a new batch."""
        if not lines:
            return
        if state == "expired" and self.options.resubmit_expired:
            for custom_id, future, line in lines:
                if line is None:  # an adopted line: its caller submits it again
                    future.set_exception(BatchNotAnsweredError(
                        f"batch {batch_id} expired before answering line {custom_id}; ask again to resubmit it"))
                    continue
                # The same waiter's future goes with the line into the new batch.
                fresh_id = uuid.uuid4().hex
                self._enqueue(dataclasses.replace(
                    line, custom_id=fresh_id, body=self.backend.line(fresh_id, line.request, line.n), future=future))
            return
        for _custom_id, future, _line in lines:
            future.set_exception(BatchNotAnsweredError(
                f"batch {batch_id} ended {state!r} without answering this line"
                + (f" ({message})" if message else "") + "; nothing was stored, asking again submits it again"))

    # -- lifecycle -----------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> "asyncio.Task[Any]":
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Submit what waits in a window; batches still pending stay in the journal (a later
        process collects them)."""
        self.flush()
        submitting = [t for t in self._tasks if t not in self._polls.values()]
        if submitting:
            await asyncio.gather(*submitting, return_exceptions=True)
        for task in list(self._polls.values()):
            task.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        LIVE.discard(self.owner)


def _created_maybe(exc: Exception) -> bool:
    """A failure after which the batch may exist at the provider (a timeout or lost reply)."""
    return isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError))


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception as exc:  # the journal is best effort once the provider has answered
        log.warning("could not update the batch journal: %s", exc)
