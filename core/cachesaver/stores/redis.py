"""Redis store: one sample cache (and one shared-run ledger) for workers on many machines.

``RedisStore("redis://host:6379/0")``, or ``cache="redis://host:6379/0?prefix=exp1"`` wherever a
store is accepted. Needs the ``redis`` extra (redis-py's asyncio client).

Layout (``P`` = the prefix, ``K`` = the cache key; the ``{K}`` hash tag puts every key of one
sample list in one Redis Cluster slot, so each script below touches a single slot)::

    P:{K}:s   LIST    the samples, JSON records (RPUSH is O(1); LRANGE reads)
    P:{K}:m   STRING  canonical request JSON (set once)
    P:{K}:l   HASH    shared-run ledger: field = JSON [run_id, namespace], value = position
    P:{K}:c   HASH    last claim token per ledger field (makes a retried claim idempotent)
    P:{K}:t   LIST    last append tokens (makes a retried append idempotent)
    P:{K}:g   STRING  generation lease (expires unless renewed)
    P:{K}:i   HASH    where request ids took their samples: field = JSON [namespace, request_id],
                      value = JSON [first position, count], set once (HSETNX)
    P:{K}:h   SET     shared-run positions below the ledger's left free (member: field|position)
    P:{K}:u   SET     shared-run samples generated and not yet billed (member: <index>:r<run_id>)

Every append and every claim is one Lua script: atomic, and one round trip. A hit costs one
round trip (LRANGE for a private run, the claim script for a shared run). The commands that the
engine issues for many keys at once (a tick's hit attempts, leases, appends and claims) share
one round trip: one pipeline per phase (see :class:`_Client`), each script still atomic on
its own key's slot. A private run's hit for a synchronous caller is that LRANGE sent from the
caller's thread through a synchronous client beside the asyncio ones
(:meth:`RedisStore.read_now`): no hop to the engine's loop.

Failures: a Redis that is down or slow raises :class:`~cachesaver.errors.StoreError` naming the
server (never its password) and the fix. redis-py retries a command a few times on connection
errors first (``retries=``); scripts carry a token so a retried append or claim whose first
reply was lost is not applied twice. Each operation is applied entirely or not at all.

Values are bytes written by :mod:`cachesaver.codec` (JSON), never pickles (G7).
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import itertools
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Optional, Sequence, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

try:
    import redis as syncredis
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import (
        AuthenticationError,
        NoScriptError,
        RedisError,
        ResponseError,
    )
    from redis.exceptions import (
        ConnectionError as RedisConnectionError,
    )
    from redis.exceptions import (
        TimeoutError as RedisTimeoutError,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "RedisStore needs redis-py: pip install 'cachesaver-integrations[redis]'"
    ) from exc

from ..errors import InvalidRequestError, StoreError
from .base import LedgerEntry, Store
from .urls import redact_url

__all__ = ["RedisStore", "Lease", "DEFAULT_PREFIX"]

log = logging.getLogger("cachesaver.stores.redis")

DEFAULT_PREFIX = "cachesaver"
#: Append tokens remembered per key: a retried append is recognised among this many.
_APPEND_TOKENS_KEPT = 16
#: Samples per RPUSH inside the append script (Lua's unpack() limit is ~8000 values).
_PUSH_CHUNK = 4000
_SCAN_COUNT = 1000

# KEYS: samples, meta, append tokens, unbilled, lease. ARGV: token, has_meta ('1'/'0'), meta,
# unbilled run ('' = none), lease token to end ('' = none), samples... The lease ends (if that
# token still holds it) on a retried append too: the retry answers what the first one did.
_APPEND_LUA = f"""
local function release()
  if ARGV[5] ~= '' and redis.call('GET', KEYS[5]) == ARGV[5] then redis.call('DEL', KEYS[5]) end
end
local mark = ARGV[1] .. ' '
for _, entry in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  if string.sub(entry, 1, #mark) == mark then
    release()
    return tonumber(string.sub(entry, #mark + 1))
  end
end
local start = redis.call('LLEN', KEYS[1])
for i = 6, #ARGV, {_PUSH_CHUNK} do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + {_PUSH_CHUNK - 1}, #ARGV)))
end
if ARGV[2] == '1' then redis.call('SET', KEYS[2], ARGV[3], 'NX') end
if ARGV[4] ~= '' then
  for i = 0, #ARGV - 6 do redis.call('SADD', KEYS[4], (start + i) .. ':' .. ARGV[4]) end
end
redis.call('LPUSH', KEYS[3], mark .. start)
redis.call('LTRIM', KEYS[3], 0, {_APPEND_TOKENS_KEPT - 1})
release()
return start
"""

# KEYS: samples, ledger, claim tokens, unbilled. ARGV: field, count, partial ('1'/'0'), token
# ('' = none), run whose billing records to take ('' = none). Returns {position before,
# {samples taken}, {indices billed}}; a retried claim (same token) returns its first answer.
_CLAIM_LUA = """
local field, count, token, run = ARGV[1], tonumber(ARGV[2]), ARGV[4], ARGV[5]
if token ~= '' then
  local last = redis.call('HGET', KEYS[3], field)
  local mark = token .. ' '
  if last and string.sub(last, 1, #mark) == mark then
    local words = {}
    for word in string.gmatch(string.sub(last, #mark + 1), '%S+') do words[#words + 1] = tonumber(word) end
    local pos, got = words[1], words[2]
    return {pos, redis.call('LRANGE', KEYS[1], pos, pos + got - 1), {unpack(words, 3)}}
  end
end
local pos = tonumber(redis.call('HGET', KEYS[2], field) or '0')
if count <= 0 then return {pos, {}, {}} end
local taken = redis.call('LRANGE', KEYS[1], pos, pos + count - 1)
local got = #taken
if got == 0 or (got < count and ARGV[3] ~= '1') then return {pos, {}, {}} end
redis.call('HSET', KEYS[2], field, pos + got)
local billed = {}
if run ~= '' then
  for p = pos, pos + got - 1 do
    if redis.call('SREM', KEYS[4], p .. ':' .. run) == 1 then billed[#billed + 1] = p end
  end
end
if token ~= '' then
  redis.call('HSET', KEYS[3], field, token .. ' ' .. pos .. ' ' .. got .. ' ' .. table.concat(billed, ' '))
end
return {pos, taken, billed}
"""

# KEYS: samples, ledger, holes. ARGV: ledger field, first position, count. Takes exactly those
# positions if all are stored and free (at or beyond the ledger position, or holes below it);
# returns the samples, or nothing.
_CLAIM_AT_LUA = """
local field, pos, count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if pos < 0 or count <= 0 or pos + count > redis.call('LLEN', KEYS[1]) then return {} end
local cur = tonumber(redis.call('HGET', KEYS[2], field) or '0')
for p = pos, pos + count - 1 do
  if p < cur and redis.call('SISMEMBER', KEYS[3], field .. '|' .. p) == 0 then return {} end
end
for p = pos, math.min(pos + count, cur) - 1 do redis.call('SREM', KEYS[3], field .. '|' .. p) end
for p = cur, pos - 1 do redis.call('SADD', KEYS[3], field .. '|' .. p) end
if pos + count > cur then redis.call('HSET', KEYS[2], field, pos + count) end
return redis.call('LRANGE', KEYS[1], pos, pos + count - 1)
"""

# KEYS: samples, meta. Returns {samples, bytes of the samples, meta or nil}: what ``cachesaver
# stats`` needs of a key, summed here so the samples never cross the network. LRANGE in chunks
# keeps the script's own memory bounded by the chunk, not the list.
_SIZES_CHUNK = 1000
_SIZES_LUA = f"""
local n = redis.call('LLEN', KEYS[1])
local size = 0
for i = 0, n - 1, {_SIZES_CHUNK} do
  for _, v in ipairs(redis.call('LRANGE', KEYS[1], i, i + {_SIZES_CHUNK - 1})) do size = size + #v end
end
return {{n, size, redis.call('GET', KEYS[2])}}
"""

# KEYS: samples, meta, ledger, claim tokens, append tokens, request-id positions, holes,
# billing records. Returns samples removed.
_DELETE_LUA = """
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', unpack(KEYS))
return n
"""

# KEYS: lease, samples (optional), ledger (optional). ARGV: token, ttl ms, orphan token ('' =
# none), ledger fields... Idempotent for the holder (a retried acquire succeeds); takes over an
# orphan: our own earlier lease whose release failed. Returns {1, list length, {ledger position
# of each field}} when held (what the holder plans with: no second round trip), {0, 0} when
# someone else holds it.
_LEASE_ACQUIRE_LUA = """
local cur = redis.call('GET', KEYS[1])
local function held()
  local out = {1, KEYS[2] and redis.call('LLEN', KEYS[2]) or -1}
  if #ARGV > 3 then out[3] = redis.call('HMGET', KEYS[3], unpack(ARGV, 4)) end
  return out
end
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return held() end
if cur and cur ~= ARGV[3] then return {0, 0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return held()
"""
_LEASE_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_LEASE_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: Leases held by the current task (and seen by the tasks it starts while holding them): a
#: nested acquisition of a key whose lease is still held is re-entrant instead of waiting for
#: itself (a self-deadlock until max_wait).
_HELD: "contextvars.ContextVar[dict[tuple[str, str, str], Lease]]" = contextvars.ContextVar(
    "cachesaver_redis_leases")

#: Connections per event loop, and how long a command waits for a free one (seconds).
_MAX_CONNECTIONS = 64
_POOL_WAIT = 60.0

# Options this store reads from the URL query (the rest go to redis-py).
_OWN_QUERY = ("prefix", "retries", "lease_ttl", "cluster")
_TIMEOUT_QUERY = ("socket_timeout", "socket_connect_timeout")


@dataclass
class Lease:
    """What :meth:`RedisStore.generation_lease` yields.

    ``acquired`` is False when the wait gave up (``max_wait``) or the lease was lost; the caller
    then generates anyway: the lease only prevents over-generation, correctness never needs it.
    """

    key: str
    token: str
    acquired: bool = False
    waited: float = 0.0
    released: bool = False
    #: The sample list's length when the lease was taken (None: not known). The engine plans
    #: with it instead of asking again.
    length: Optional[int] = None
    #: The ledger positions of the namespaces asked for, in the shared run asked for, read with
    #: the lease (None: not asked, or not known).
    positions: Optional[dict[str, int]] = None
    #: True when this is the lease an enclosing body of the same task holds (re-entrance): only
    #: that body ends it.
    nested: bool = False
    #: True once an append ended it (:meth:`RedisStore.append_and_release`).
    ended: bool = False
    #: What renews it while the body runs (stopped when the last append is sent).
    renewer: Optional["_Renewal"] = dataclasses.field(default=None, repr=False, compare=False)


#: One command for :meth:`_Client.run`: a registered script (or a command name such as
#: ``"LRANGE"``), its keys and its arguments.
_Op = tuple[Any, Sequence[Any], Sequence[Any]]


class _Client:
    """A redis-py client and its scripts, bound to one event loop (redis-py's asyncio rule).

    Commands go through :meth:`run`, which sends the commands that the loop's tasks issue in
    one turn of the loop as one pipeline: when the engine serves many keys at once (a tick's
    batch of misses), each key's task takes its lease, appends and claims at about the same
    moment, and those go to Redis in one round trip per phase instead of one per key. Each
    command is still one script (or command) of its own, atomic on its own keys, so a
    pipeline may mix keys of any hash slots (on a cluster, redis-py sends each node its part).
    """

    def __init__(self, store: "RedisStore", loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.redis = store._make_client()
        register = self.redis.register_script
        self.append = register(_APPEND_LUA)
        self.claim = register(_CLAIM_LUA)
        self.claim_at = register(_CLAIM_AT_LUA)
        self.delete = register(_DELETE_LUA)
        self.sizes = register(_SIZES_LUA)
        self.lease_acquire = register(_LEASE_ACQUIRE_LUA)
        self.lease_renew = register(_LEASE_RENEW_LUA)
        self.lease_release = register(_LEASE_RELEASE_LUA)
        self.checked = False
        #: The commands issued this turn of the loop, behind the one that leads them (None: no
        #: command is gathering others now).
        self._gathering: "Optional[list[tuple[_Op, asyncio.Future[Any]]]]" = None
        self._sending: "set[asyncio.Task[None]]" = set()

    async def run(self, op: _Op) -> Any:
        """Send ``op`` with whatever else this loop issues in the same turn; return its reply.

        The first command of a turn leads: it lets the loop run the other ready tasks once
        (their commands join it), then sends its own alone exactly as before when nobody joined,
        or all of them as one pipeline. Each caller gets its own reply, or its own error (a
        script error of one key fails only that caller; a lost connection fails every caller of
        the pipeline, each with what it sent). The pipeline is sent by a task of its own: a
        caller cancelled before it is sent sends nothing; one cancelled while it is in flight
        stops waiting, the others still get their replies (its command may still run, as a
        command whose reply is lost does anyway).
        """
        joining = self._gathering
        if joining is not None:
            future: asyncio.Future[Any] = self.loop.create_future()
            joining.append((op, future))
            return await future
        gathered: "list[tuple[_Op, asyncio.Future[Any]]]" = []
        self._gathering = gathered
        try:
            await asyncio.sleep(0)  # the other tasks ready now issue their commands
        except BaseException:
            # Cancelled before sending: this command is not sent, the others are.
            self._gathering = None
            if gathered:
                self._send_later(gathered)
            raise
        self._gathering = None
        if not gathered:
            return await self._one(op)
        future = self.loop.create_future()
        gathered.insert(0, (op, future))
        self._send_later(gathered)
        return await future

    def _send_later(self, gathered: "list[tuple[_Op, asyncio.Future[Any]]]") -> None:
        task = self.loop.create_task(self._send(gathered))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, gathered: "list[tuple[_Op, asyncio.Future[Any]]]") -> None:
        # A caller that left before its command was sent: the command is not sent.
        gathered = [(op, future) for op, future in gathered if not future.done()]
        if not gathered:
            return
        try:
            replies = await self.pipelined([op for op, _ in gathered])
        except Exception as exc:
            for _, future in gathered:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # (cancelled: the loop is closing)
            for _, future in gathered:
                future.cancel()
            raise
        for (_, future), reply in zip(gathered, replies):
            if not future.done():
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def _one(self, op: _Op) -> Any:
        """``op`` on its own (a script through redis-py's script call, which reloads it if the
        server lost it)."""
        command, keys, args = op
        if isinstance(command, str):
            return await self.redis.execute_command(command, *keys, *args)
        return await command(keys=keys, args=args)

    async def pipelined(self, ops: Sequence[_Op], *, reload: bool = True) -> list[Any]:
        """``ops`` in one pipeline (not a transaction: each is atomic on its own): the reply of
        each, or the error Redis answered it with. Raises what fails the whole pipeline (a lost
        connection, after redis-py's retries, which send it again as they would one command:
        the append and claim scripts carry tokens, so none is applied twice).
        A script the server does not know (restarted, flushed) is loaded and its commands sent
        again: a command answered ``NOSCRIPT`` did not run."""
        if len(ops) == 1:
            try:
                return [await self._one(ops[0])]
            except ResponseError as exc:
                return [exc]
        pipe = self.redis.pipeline(transaction=False)
        for command, keys, args in ops:
            if isinstance(command, str):
                pipe.execute_command(command, *keys, *args)
            else:
                pipe.execute_command("EVALSHA", command.sha, len(keys), *keys, *args)
        replies = list(await pipe.execute(raise_on_error=False))
        unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unknown and reload:
            scripts = {id(ops[i][0]): ops[i][0] for i in unknown}
            for script in scripts.values():
                await self.redis.script_load(script.script)
            again = await self.pipelined([ops[i] for i in unknown], reload=False)
            for i, reply in zip(unknown, again):
                replies[i] = reply
        return replies


class RedisStore(Store):
    """Sample lists and shared ledgers in Redis, shared by processes on any number of machines.

    ``url``: ``redis://[[user]:password@]host:port/db``, ``rediss://`` (TLS) or ``unix://``.
    Query options: ``prefix``, ``socket_timeout``, ``socket_connect_timeout``, ``retries``,
    ``lease_ttl``, ``cluster=1``, plus any redis-py option. An explicit keyword wins over the URL.

    - ``prefix``: every Redis key this store writes starts with ``prefix:`` (``clear`` removes
      only those), so one server can hold several caches.
    - ``socket_timeout`` / ``connect_timeout``: seconds before a silent server is an error.
    - ``retries``: how often redis-py retries a command after a connection error or timeout
      before :class:`StoreError` reaches the caller (safe: appends and claims are idempotent).
    - ``lease_ttl``: seconds a :meth:`generation_lease` lives without renewal (a crashed holder
      blocks other workers at most this long).
    - ``cluster=True``: connect with ``redis.asyncio.RedisCluster`` (all keys of one sample list
      share a hash slot).

    The store can be used from several event loops (one redis-py client per loop, created on
    first use). Close it with ``await store.aclose()`` on the loop that used it.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: Optional[str] = None,
        socket_timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        retries: Optional[int] = None,
        lease_ttl: Optional[float] = None,
        cluster: Optional[bool] = None,
        **client_kwargs: Any,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidRequestError(
                f"url must be a 'redis://host:port/db' (or rediss://, unix://) string, got {_redact(url)!r}"
            )
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - redis-py reads it too, and its error would quote the password
        except ValueError:
            raise InvalidRequestError(
                f"url: no valid host:port in {_redact(url)!r}; percent-encode '@', '/', ':' in the "
                "password (urllib.parse.quote(password, safe=''))"
            ) from None
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        own = {name: query.pop(name) for name in _OWN_QUERY + _TIMEOUT_QUERY if name in query}
        self._url = urlunsplit(parts._replace(query=urlencode(query)))
        self.location = _redact(self._url)

        self.prefix = _check_prefix(prefix if prefix is not None else own.get("prefix", DEFAULT_PREFIX))
        self.socket_timeout = _number(
            "socket_timeout", socket_timeout, own.get("socket_timeout"), 5.0, minimum=0.001)
        self.connect_timeout = _number(
            "connect_timeout", connect_timeout, own.get("socket_connect_timeout"), 2.0, minimum=0.001)
        self.retries = int(_number("retries", retries, own.get("retries"), 2, minimum=0))
        self.lease_ttl = _number("lease_ttl", lease_ttl, own.get("lease_ttl"), 10.0, minimum=0.01)
        if cluster is None:
            cluster = own.get("cluster", "0").lower() in ("1", "true", "yes", "on")
        self.cluster = bool(cluster)
        self._client_kwargs = client_kwargs
        self._clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Client]" = (
            weakref.WeakKeyDictionary())
        self._clients_lock = threading.Lock()
        #: The synchronous client (thread-safe, its own pool), made on the first synchronous read.
        self._sync: Any = None
        self._tokens = itertools.count()
        self._token_base = f"{os.getpid():x}.{os.urandom(4).hex()}."
        # Leases we could not release (Redis was down): the next acquire here takes them over
        # instead of waiting for them to expire.
        self._orphans: dict[str, str] = {}
        #: Seconds a miss waits for another worker's generation lease of a key (None: 60 x the
        #: lease ttl). Batch mode waits without a limit: a batch holds it until the provider
        #: answers, and a holder that dies stops renewing it, so it expires within the ttl.
        self.lease_max_wait: Optional[float] = None
        # Claims whose reply never came (Redis frozen or unreachable past the retries): the
        # script may still run once Redis is back, taking positions nobody received. Per
        # (run, namespace, key): (token, count). See _claim.
        self._unanswered: dict[tuple[str, str, str], tuple[str, int]] = {}
        self._closed = False

    # -- connection --------------------------------------------------------------------------
    def _make_client(self) -> Any:
        return self._build_client(aioredis, Retry, ExponentialBackoff)

    def _make_sync_client(self) -> Any:
        """:meth:`_make_client`'s options for redis-py's synchronous client."""
        from redis.backoff import ExponentialBackoff as SyncBackoff
        from redis.retry import Retry as SyncRetry

        return self._build_client(syncredis, SyncRetry, SyncBackoff)

    def _build_client(self, module: Any, retry: Any, backoff: Any) -> Any:
        """A client of redis-py's ``module`` (asyncio or synchronous) with this store's options."""
        kwargs = dict(
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.connect_timeout,
            retry=retry(backoff(cap=0.5, base=0.05), self.retries),
            decode_responses=False,
        )
        kwargs.update(self._client_kwargs)
        if self.cluster:
            return module.RedisCluster.from_url(self._url, **kwargs)
        # A blocking pool: a batch touching more keys than there are connections waits for a
        # free one instead of failing the excess callers with "Too many connections".
        kwargs.setdefault("max_connections", _MAX_CONNECTIONS)
        kwargs.setdefault("timeout", _POOL_WAIT)
        pool = module.BlockingConnectionPool.from_url(self._url, **kwargs)
        return module.Redis.from_pool(pool)

    def _sync_client(self) -> Any:
        """The synchronous client, for reads from any thread without an event loop."""
        client = self._sync
        if client is None:
            with self._clients_lock:
                if self._closed:
                    raise StoreError(f"the Redis store at {self.location} is closed; open a new one")
                client = self._sync
                if client is None:
                    client = self._sync = self._make_sync_client()
        return client

    def _close_sync(self) -> None:
        with self._clients_lock:
            client, self._sync = self._sync, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                client.close()

    def _client(self) -> _Client:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            if self._closed:
                raise StoreError(f"the Redis store at {self.location} is closed; open a new one")
            with self._clients_lock:
                for old_loop in [lp for lp in self._clients if lp.is_closed()]:
                    _drop_sockets(self._clients.pop(old_loop).redis)
                client = self._clients.get(loop)
                if client is None:
                    client = self._clients[loop] = _Client(self, loop)
        return client

    async def _ready(self) -> _Client:
        """The loop's client; on its first use, warn if the server may evict our keys."""
        client = self._client()
        if not client.checked:
            client.checked = True
            try:
                info = await client.redis.info("memory")
            except ResponseError:  # INFO disabled (some managed services): nothing to check
                return client
            except RedisError as exc:
                client.checked = False
                raise self._error(exc, "connecting") from exc
            nodes = info.values() if self.cluster and all(isinstance(v, dict) for v in info.values()) else [info]
            for node in nodes:
                policy = str(node.get("maxmemory_policy", "noeviction"))
                if policy.startswith("allkeys"):
                    log.warning(
                        "Redis at %s has maxmemory-policy=%s: it may evict stored samples under "
                        "memory pressure; set maxmemory-policy noeviction (or volatile-*) for a cache "
                        "that must not lose samples", self.location, policy)
        return client

    def _error(self, exc: BaseException, what: str, *, maybe_applied: bool = False) -> StoreError:
        """The error for a failed command. ``maybe_applied``: an append or claim (a script with
        a token) whose reply was lost to a timeout or a dropped connection may still run once
        Redis is back; the message says so instead of promising it was not applied."""
        if isinstance(exc, AuthenticationError):
            fix = "check the username/password in the URL"
        elif isinstance(exc, RedisTimeoutError):
            fix = (f"Redis did not answer within socket_timeout={self.socket_timeout}s; check the "
                   "server, or raise the timeout (RedisStore(url, socket_timeout=...) or "
                   "'?socket_timeout=...' in the URL)")
        elif isinstance(exc, RedisConnectionError):
            fix = "check that redis-server runs there and that host, port and db in the URL are right"
        elif isinstance(exc, ResponseError):
            fix = "the server refused the command (out of memory? a read-only replica?)"
        else:
            fix = "see the redis-py error above"
        if maybe_applied and isinstance(exc, (RedisTimeoutError, RedisConnectionError)):
            outcome = ("The command may still run once Redis is back (it was sent; its reply was "
                       "lost), entirely or not at all; retrying the request is safe: samples "
                       "stored are reused, a claim is not taken twice")
        else:
            outcome = "The operation was applied entirely or not at all; retry once Redis is back"
        return StoreError(f"Redis store at {self.location} failed while {what}: {exc}. {fix}. {outcome}.")

    def _base(self, key: str) -> str:
        """``P:{K}:`` for ``key``; rejects keys that would break the hash tag."""
        if not isinstance(key, str) or not key or key[0] == "}":
            raise InvalidRequestError(
                f"store key {key!r} must be a non-empty str not starting with '}}' "
                "(it becomes the Redis Cluster hash tag); use cachesaver.keys.make_key()"
            )
        return f"{self.prefix}:{{{key}}}:"

    def _token(self) -> str:
        return f"{self._token_base}{next(self._tokens)}"

    # -- sample lists ------------------------------------------------------------------------
    async def read(self, key: str, start: int, count: int) -> list[bytes]:
        base = self._base(key)
        if start < 0:
            raise InvalidRequestError(f"read start must be >= 0, got {start}")
        if count <= 0:
            return []
        client = await self._ready()
        try:
            return await client.run(("LRANGE", (base + "s",), (start, start + count - 1)))
        except RedisError as exc:
            raise self._error(exc, f"reading key {key}") from exc

    async def _replies(self, ops: "list[_Op]") -> list[Any]:
        """Each of ``ops``' replies, sent as one pipeline (none sent for no ops); an error that
        failed the whole pipeline is every op's reply."""
        if not ops:
            return []
        try:
            client = await self._ready()
            return list(await client.pipelined(ops))
        except (StoreError, RedisError) as exc:
            return [exc] * len(ops)

    async def _bulk(self, items: Sequence[Any], op_of: "Callable[[Any], Optional[_Op]]",
                    done: "Callable[[Any], Any]", what_of: "Callable[[Any], str]",
                    empty: "Callable[[], Any]") -> list[Any]:
        """One op per item, all in one pipeline, each item's answer in order: ``done(reply)``,
        or the error that failed it alone (a Redis error named by ``what_of(item)``). ``op_of``
        returns None for an item with nothing to send (its answer is ``empty()``) and raises
        :class:`InvalidRequestError` for a bad one (that error is its answer)."""
        out: list[Any] = []
        ops: list[_Op] = []
        sent: list[int] = []
        for i, item in enumerate(items):
            try:
                op = op_of(item)
            except InvalidRequestError as exc:
                out.append(exc)
                continue
            out.append(empty())
            if op is not None:
                ops.append(op)
                sent.append(i)
        for i, reply in zip(sent, await self._replies(ops)):
            if isinstance(reply, RedisError):
                out[i] = self._error(reply, what_of(items[i]))
            elif isinstance(reply, Exception):
                out[i] = reply
            else:
                out[i] = done(reply)
        return out

    async def read_many(self, reads: Sequence[tuple[str, int, int]]) -> "list[Union[list[bytes], Exception]]":
        """Every read's LRANGE in one pipeline: one round trip for a tick's hit attempts,
        whatever their keys' hash slots."""
        def op_of(read: tuple[str, int, int]) -> Optional[_Op]:
            key, start, count = read
            base = self._base(key)
            if start < 0:
                raise InvalidRequestError(f"read start must be >= 0, got {start}")
            return ("LRANGE", (base + "s",), (start, start + count - 1)) if count > 0 else None

        return await self._bulk(reads, op_of, list, lambda read: f"reading key {read[0]}", list)

    #: Reads work synchronously from any thread (one blocking round trip): a private run's hit
    #: for a synchronous caller stays on its thread (see :attr:`Store.sync_reads`).
    sync_reads = True

    def read_now(self, key: str, start: int, count: int) -> list[bytes]:
        """:meth:`read` as one blocking LRANGE from the calling thread (the synchronous hit)."""
        base = self._base(key)
        if start < 0:
            raise InvalidRequestError(f"read start must be >= 0, got {start}")
        if count <= 0:
            return []
        try:
            return self._sync_client().lrange(base + "s", start, start + count - 1)
        except RedisError as exc:
            raise self._error(exc, f"reading key {key}") from exc

    def append_token(self) -> str:
        """A token for :meth:`append`: an append sent again with its first attempt's token
        (the engine's re-send of samples whose append timed out) is applied once, whichever of
        the two runs first; the other returns the first's index. Recognised among the last
        ``_APPEND_TOKENS_KEPT`` appends of the key."""
        return self._token()

    async def append(self, key: str, samples: Sequence[bytes], meta: Optional[bytes] = None, *,
                     unbilled_run: Optional[str] = None, token: Optional[str] = None) -> int:
        return await self._append(key, samples, meta, unbilled_run, None, token)

    append_ends_lease = True  # the append script can end the generation lease (one round trip)

    async def append_and_release(self, key: str, samples: Sequence[bytes], meta: Optional[bytes],
                                 lease: Any, *, unbilled_run: Optional[str] = None,
                                 token: Optional[str] = None) -> int:
        """:meth:`append`, and end ``lease`` (held on ``key``) in the same script: a miss's last
        append and the lease's release are one round trip. A lease that was lost, or that a
        nesting holder keeps, is left alone (then it ends as usual when its body exits). If the
        append fails, the lease is not marked ended: the body's exit releases it, or (Redis
        frozen) it expires within ``lease_ttl``, and a late-running first attempt ends it too."""
        own = (isinstance(lease, Lease) and lease.key == key and lease.acquired and not lease.nested
               and not lease.released)
        if own and lease.renewer is not None:
            # The body ends with this append: no renewal may race the release (a renewal
            # answered after it would report the lease lost).
            lease.renewer.stop()
        start = await self._append(key, samples, meta, unbilled_run, lease if own else None, token)
        if own:
            lease.ended = True  # the body's exit sends no second release
        return start

    async def _append(self, key: str, samples: Sequence[bytes], meta: Optional[bytes],
                      unbilled_run: Optional[str], lease: Optional[Lease],
                      token: Optional[str] = None) -> int:
        base = self._base(key)
        values = [_as_bytes(raw, f"sample {i + 1} of {len(samples)} appended to key {key}") for i, raw in enumerate(samples)]
        meta_arg = b"" if meta is None else _as_bytes(meta, f"meta for key {key}")
        # Without a lease to end: our own earlier lease of the key whose release failed (Redis
        # was out) is ended by this append, so other workers do not wait for it to expire
        # (the engine's re-send of the samples that lease's body generated comes this way).
        orphan = self._orphans.get(key, "") if lease is None else ""
        client = await self._ready()
        try:
            start = await client.run((
                client.append,
                (base + "s", base + "m", base + "t", base + "u", base + "g"),
                (token or self._token(), "0" if meta is None else "1", meta_arg,
                 "" if unbilled_run is None else _run_arg(unbilled_run),
                 lease.token if lease is not None else orphan, *values),
            ))
        except RedisError as exc:
            raise self._error(exc, f"appending {len(values)} samples to key {key}", maybe_applied=True) from exc
        if orphan and self._orphans.get(key) == orphan:
            del self._orphans[key]
        return int(start)

    async def length(self, key: str) -> int:
        base = self._base(key)
        client = await self._ready()
        try:
            return int(await client.run(("LLEN", (base + "s",), ())))
        except RedisError as exc:
            raise self._error(exc, f"reading the length of key {key}") from exc

    # -- where request ids took their samples ------------------------------------------------
    keeps_id_positions = True

    async def id_positions(self, key: str) -> dict[tuple[str, str], tuple[int, int]]:
        base = self._base(key)
        client = await self._ready()
        try:
            entries = await client.run(("HGETALL", (base + "i",), ()))
        except RedisError as exc:
            raise self._error(exc, f"reading request-id positions of key {key}") from exc
        return _id_records(entries)

    async def id_positions_many(self, keys: Sequence[str]
                                ) -> "list[Union[dict[tuple[str, str], tuple[int, int]], Exception]]":
        """Every key's records hash (``P:{K}:i``) in one pipeline."""
        return await self._bulk(keys, lambda key: ("HGETALL", (self._base(key) + "i",), ()), _id_records,
                                lambda key: f"reading request-id positions of key {key}", dict)

    def id_positions_now(self, key: str) -> dict[tuple[str, str], tuple[int, int]]:
        """:meth:`id_positions` as one blocking HGETALL from the calling thread."""
        base = self._base(key)
        try:
            entries = self._sync_client().hgetall(base + "i")
        except RedisError as exc:
            raise self._error(exc, f"reading request-id positions of key {key}") from exc
        return _id_records(entries)

    async def record_id_positions(self, taken: Sequence[tuple[str, str, str, int, int]]) -> None:
        """One HSETNX per record, all in one pipeline (each is atomic on its own key's hash,
        so keys of any cluster slots share it). Best effort: a record not written only means a
        later replay of it goes by arrival order."""
        if not taken:
            return
        ops: list[_Op] = []
        try:
            for namespace, key, request_id, pos, count in taken:
                ops.append(("HSETNX", (self._base(key) + "i",),
                            (orjson.dumps([namespace, request_id]), orjson.dumps([pos, count]))))
            client = await self._ready()
            replies = await client.pipelined(ops)
        except (RedisError, StoreError, InvalidRequestError) as exc:
            log.debug("%d request-id positions not recorded: %s", len(taken), type(exc).__name__)
            return
        failed = [reply for reply in replies if isinstance(reply, Exception)]
        if failed:
            log.debug("%d request-id positions not recorded: %s", len(failed), type(failed[0]).__name__)

    # -- shared ledgers ----------------------------------------------------------------------
    async def claim(
        self, run_id: str, namespace: str, key: str, count: int, *, partial: bool
    ) -> tuple[int, list[bytes]]:
        pos, taken, _ = await self._claim(run_id, namespace, key, count, partial=partial, bill=False)
        return pos, taken

    keeps_billing = True

    async def claim_billed(self, run_id: str, namespace: str, key: str, count: int) -> tuple[int, list[bytes], list[int]]:
        return await self._claim(run_id, namespace, key, count, partial=False, bill=True)

    async def claim_many(self, run_id: str, claims: Sequence[tuple[str, str, int]], *,
                         billed: bool) -> "list[Union[tuple[int, list[bytes], list[int]], Exception]]":
        """The claim scripts of every ``(namespace, key, count)`` in one pipeline: one round
        trip for a tick's hit attempts, whatever their keys' hash slots. Each script is the
        one :meth:`claim_billed` runs (its own token: a retried pipeline takes nothing twice);
        a claim whose reply is lost is remembered as :meth:`_claim` remembers it. A slot with
        such a claim pending is claimed on its own, after the others."""
        out: "list[Union[tuple[int, list[bytes], list[int]], Exception]]" = [[] for _ in claims]  # type: ignore[misc]
        try:
            client = await self._ready()
        except StoreError as exc:
            return [exc for _ in claims]
        ops: list[_Op] = []
        sent: list[tuple[int, str]] = []  # (index, token)
        alone: list[int] = []
        run = _run_arg(run_id) if billed else ""
        for i, (namespace, key, count) in enumerate(claims):
            try:
                base = self._base(key)
            except InvalidRequestError as exc:
                out[i] = exc
                continue
            if count > 0 and (run_id, namespace, key) in self._unanswered:
                alone.append(i)
                continue
            token = self._token() if count > 0 else ""
            ops.append((client.claim, (base + "s", base + "l", base + "c", base + "u"),
                        (orjson.dumps([run_id, namespace]), count, "0", token, run)))
            sent.append((i, token))
        for (i, token), reply in zip(sent, await self._replies(ops)):
            namespace, key, count = claims[i]
            if isinstance(reply, RedisError):
                out[i] = self._claim_error(reply, (run_id, namespace, key), token, count)
            elif isinstance(reply, Exception):
                out[i] = reply
            else:
                out[i] = _claimed(reply)
        for i in alone:
            namespace, key, count = claims[i]
            try:
                out[i] = await self._claim(run_id, namespace, key, count, partial=False, bill=billed)
            except Exception as exc:
                out[i] = exc
        return out

    async def _claim(self, run_id: str, namespace: str, key: str, count: int, *, partial: bool,
                     bill: bool) -> tuple[int, list[bytes], list[int]]:
        """One script: the claim and (``bill``) the billing records of what it takes.

        A claim whose reply was lost past the retries (a frozen or unreachable Redis) may run
        when Redis is back: its positions are then consumed in the run and were delivered to
        nobody. The next claim of the same count in that (run, namespace, key) from this store
        takes them (:meth:`_unanswered_claim`), so a retried request gets the samples the lost
        claim took and the run's ledger has no gap (a replay of the run stays exact, G4).
        """
        base = self._base(key)
        field = orjson.dumps([run_id, namespace])
        client = await self._ready()
        slot = (run_id, namespace, key)
        if count > 0 and slot in self._unanswered:
            earlier = await self._unanswered_claim(client, base, field, slot, count)
            if earlier is not None:
                return earlier
        token = self._token() if count > 0 else ""
        try:
            reply = await client.run((
                client.claim, (base + "s", base + "l", base + "c", base + "u"),
                (field, count, "1" if partial else "0", token, _run_arg(run_id) if bill else ""),
            ))
        except RedisError as exc:
            raise self._claim_error(exc, slot, token, count) from exc
        return _claimed(reply)

    def _claim_error(self, exc: RedisError, slot: tuple[str, str, str], token: str, count: int) -> StoreError:
        """The error of a claim script of ``slot`` (run, namespace, key) that failed; one whose
        reply was lost may still run, so it is remembered (see :meth:`_claim`)."""
        if token and isinstance(exc, (RedisTimeoutError, RedisConnectionError)):
            self._unanswered[slot] = (token, count)
        return self._error(exc, f"claiming {count} samples of key {slot[2]} for {slot[1]!r}",
                           maybe_applied=bool(token))

    async def _unanswered_claim(self, client: "_Client", base: str, field: bytes,
                                slot: tuple[str, str, str], count: int) -> Optional[tuple[int, list[bytes], list[int]]]:
        """What an earlier claim of ``slot`` whose reply was lost took, if it ran and took
        ``count`` samples (then they are this claim's); None otherwise. The claim-token record
        (``P:{K}:c``) says whether it ran: it is written by the same script."""
        token, earlier_count = self._unanswered[slot]
        try:
            record = await client.redis.hget(base + "c", field)
        except RedisError as exc:
            raise self._error(exc, f"checking an earlier claim of key {slot[2]} for {slot[1]!r}") from exc
        words = record.decode().split() if isinstance(record, bytes) else []
        if not words or words[0] != token:
            # It never ran, or a later claim of the slot (another process) replaced its record:
            # then what it took stays skipped in this run, as before this check existed.
            del self._unanswered[slot]
            return None
        pos, got, billed = int(words[1]), int(words[2]), [int(w) for w in words[3:]]
        if got != count:
            # Taken for a request of another size: those positions stay skipped in this run.
            log.warning("%d samples of key %s claimed for %r by a claim whose reply was lost are "
                        "not delivered (the next request asks for %d)", got, slot[2], slot[1], count)
            del self._unanswered[slot]
            return None
        try:
            taken = await client.redis.lrange(base + "s", pos, pos + got - 1)
        except RedisError as exc:
            raise self._error(exc, f"reading key {slot[2]}") from exc
        del self._unanswered[slot]
        return pos, list(taken), billed

    async def claim_at(self, run_id: str, namespace: str, key: str, pos: int, count: int) -> list[bytes]:
        """One script (atomic). A reply lost after the script ran leaves the positions taken and
        unanswered: the caller then takes others (never a sample twice, G1)."""
        base = self._base(key)
        field = orjson.dumps([run_id, namespace])
        client = await self._ready()
        try:
            taken = await client.run((client.claim_at, (base + "s", base + "l", base + "h"), (field, pos, count)))
        except RedisError as exc:
            raise self._error(exc, f"claiming samples {pos + 1}..{pos + count} of key {key} for {namespace!r}") from exc
        return list(taken)

    async def claim_at_many(self, run_id: str, claims: Sequence[tuple[str, str, int, int]]
                            ) -> "list[Union[list[bytes], Exception]]":
        """The :meth:`claim_at` script of every ``(namespace, key, position, count)`` in one
        pipeline (a tick's replays by request id)."""
        try:
            client = await self._ready()
        except StoreError as exc:
            return [exc for _ in claims]

        def op_of(claim: tuple[str, str, int, int]) -> _Op:
            namespace, key, pos, count = claim
            base = self._base(key)
            return (client.claim_at, (base + "s", base + "l", base + "h"),
                    (orjson.dumps([run_id, namespace]), pos, count))

        def what_of(claim: tuple[str, str, int, int]) -> str:
            namespace, key, pos, count = claim
            return f"claiming samples {pos + 1}..{pos + count} of key {key} for {namespace!r}"

        return await self._bulk(claims, op_of, list, what_of, list)

    # -- generation lease --------------------------------------------------------------------
    lease_reports_length = True  # the acquire script returns LLEN (Lease.length)
    lease_reports_positions = True  # ... and, asked for, a shared run's ledger positions

    @contextlib.asynccontextmanager
    async def generation_lease(
        self, key: str, ttl: Optional[float] = None, *, max_wait: Optional[float] = None,
        run_id: Optional[str] = None, namespaces: Sequence[str] = (),
    ) -> AsyncIterator[Lease]:
        """Hold ``key``'s generation lease across processes while the body runs.

        Why: two workers that miss the same key at the same time would both ask the model for
        the missing samples (over-generation). Whoever holds the lease generates; the others wait,
        then re-read the list length and usually find nothing left to generate.

        The lease expires ``ttl`` seconds (default ``lease_ttl``) after its last renewal; a
        background task renews it every ``ttl/3`` while the body runs, so a long model call keeps
        it and a crashed holder loses it. After ``max_wait`` seconds (default: ``60 * ttl``) a
        waiter gives up and yields ``Lease(acquired=False)``: generating twice is better than
        waiting forever. Correctness (G1, G6) never depends on the lease.
        Re-entrant: inside a body that holds ``key``'s lease, acquiring it again yields at once.
        ``run_id`` and ``namespaces``: the held lease also says those namespaces' ledger
        positions in that shared run (``Lease.positions``), read with the lease in one script.
        Raises :class:`StoreError` if Redis is unreachable while acquiring.
        """
        base = self._base(key)
        ttl = self.lease_ttl if ttl is None else float(ttl)
        if ttl <= 0:
            raise InvalidRequestError(f"lease ttl must be > 0 seconds, got {ttl}")
        if max_wait is None:
            max_wait = 60 * ttl if self.lease_max_wait is None else float(self.lease_max_wait)
        max_wait = float(max_wait)
        ident = (self._url, self.prefix, key)
        held = _HELD.get({})  # copied on write, never changed in place
        outer = held.get(ident)
        if outer is not None and not outer.released and not outer.ended:
            # The enclosing body's lease, as a view that cannot end it; its length is unknown
            # here (the enclosing body may have appended since it was taken).
            yield Lease(key=key, token=outer.token, acquired=outer.acquired, nested=True)
            return
        lease = Lease(key=key, token=self._token())
        lease_key = base + "g"
        ttl_ms = max(1, int(ttl * 1000))
        wanted = list(dict.fromkeys(namespaces)) if run_id is not None else []
        fields = [orjson.dumps([run_id, namespace]) for namespace in wanted]
        client = await self._ready()
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = min(0.002, ttl / 20)
        while True:
            try:
                got, length, *found = await client.run((
                    client.lease_acquire, (lease_key, base + "s", base + "l"),
                    (lease.token, ttl_ms, self._orphans.get(key, ""), *fields)))
            except RedisError as exc:
                raise self._error(exc, f"acquiring the generation lease of key {key}") from exc
            lease.waited = loop.time() - started
            if got:
                lease.acquired = True
                lease.length = int(length)
                if found:
                    lease.positions = {ns: int(pos) if pos is not None else 0
                                       for ns, pos in zip(wanted, found[0])}
                self._orphans.pop(key, None)
                break
            if lease.waited >= max_wait:
                log.warning("gave up waiting %.1fs for the generation lease of key %s; "
                            "generating without it", lease.waited, key)
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05, ttl / 4)
        renewer = _Renewal(client, lease, lease_key, ttl, ttl_ms, loop) if lease.acquired else None
        lease.renewer = renewer
        marker = _HELD.set({**held, ident: lease}) if lease.acquired else None
        try:
            yield lease
        finally:
            if marker is not None:
                try:
                    _HELD.reset(marker)
                except ValueError:  # exited in another context (a collected generator)
                    pass
            if renewer is not None:
                renewing = renewer.stop()
                if renewing is not None:
                    with contextlib.suppress(asyncio.CancelledError):
                        await renewing
            lease.released = True
            lease.renewer = None
            if lease.acquired and not lease.ended:
                try:
                    await client.run((client.lease_release, (lease_key,), (lease.token,)))
                except RedisError as exc:  # it expires by itself, or our next acquire takes it
                    self._orphans[key] = lease.token
                    log.warning("could not release the generation lease of key %s (%s); it "
                                "expires within %.1fs", key, exc, ttl)

    # -- administration ----------------------------------------------------------------------
    async def _scan(self, kind: str, *, once: bool = True) -> AsyncIterator[tuple[str, bytes]]:
        """Yield ``(cache key, redis key)`` for every ``P:{K}:<kind>`` key. ``once``: each key
        once (a set of every key seen is kept: SCAN may return a key twice while Redis resizes
        its key table); without it memory stays bounded and such a key may come twice."""
        client = await self._ready()
        head = f"{self.prefix}:{{".encode()
        tail = f"}}:{kind}".encode()
        pattern = _glob_escape(self.prefix) + ":{*}:" + kind
        seen: set[bytes] = set()
        try:
            async for raw in client.redis.scan_iter(match=pattern, count=_SCAN_COUNT):
                if raw in seen or not (raw.startswith(head) and raw.endswith(tail)):
                    continue
                if once:
                    seen.add(raw)
                yield raw[len(head): -len(tail)].decode(), raw
        except RedisError as exc:
            raise self._error(exc, f"scanning keys under prefix {self.prefix!r}") from exc

    async def iter_keys(self) -> AsyncIterator[str]:
        async for key, _ in self._scan("s"):
            yield key

    async def iter_key_sizes(self) -> AsyncIterator[tuple[str, int, int, Optional[bytes]]]:
        """``(key, samples, bytes of its samples, meta)`` per key, read a SCAN batch at a time:
        the sample-list keys of one SCAN batch (``P:{K}:s``) go out as one pipeline of the
        sizes script (count, byte sum and meta of one key, computed in Redis: the samples are
        not sent), so N keys cost about N / 1000 round trips plus the SCAN calls, instead of
        three per key (the default). Memory holds one batch. Each key's figures are read
        atomically; a key deleted between SCAN and its batch is left out. :meth:`key_totals`
        (the default, which derives the model from the meta) streams these.

        Unlike :meth:`iter_keys`, no set of every key seen is kept (memory would grow with
        the store): SCAN returns a key twice only when Redis resizes its key table during the
        scan, so a key may then be counted twice; duplicates within a batch are dropped."""
        client = await self._ready()
        try:
            # Loaded once (on every node of a cluster), then called by its digest: a
            # pipeline of EVALSHA is one round trip per batch (per node on a cluster).
            await client.redis.script_load(_SIZES_LUA)
        except RedisError as exc:
            raise self._error(exc, f"summing the keys under prefix {self.prefix!r}") from exc
        batch: dict[str, bytes] = {}
        async for key, raw in self._scan("s", once=False):
            batch[key] = raw
            if len(batch) >= _SCAN_COUNT:
                for row in await self._sizes(client, batch):
                    yield row
                batch = {}
        if batch:
            for row in await self._sizes(client, batch):
                yield row

    async def _sizes(self, client: _Client, names: "dict[str, bytes]") -> list[tuple[str, int, int, Optional[bytes]]]:
        """The sizes script on each sample list in ``names`` (cache key: its Redis key), in one
        pipeline."""
        pipe = client.redis.pipeline(transaction=False)
        for raw in names.values():
            pipe.evalsha(client.sizes.sha, 2, raw, raw[:-1] + b"m")  # P:{K}:s -> P:{K}:m
        try:
            replies = await pipe.execute()
        except RedisError as exc:
            raise self._error(exc, f"summing the keys under prefix {self.prefix!r}") from exc
        return [(key, int(n), int(size), meta) for key, (n, size, meta) in zip(names, replies)
                if int(n) > 0]  # an empty list does not exist in Redis: deleted since SCAN

    async def get_meta(self, key: str) -> Optional[bytes]:
        base = self._base(key)
        client = await self._ready()
        try:
            return await client.redis.get(base + "m")
        except RedisError as exc:
            raise self._error(exc, f"reading the meta of key {key}") from exc

    async def iter_ledger(self) -> AsyncIterator[LedgerEntry]:
        client = await self._ready()
        async for key, redis_key in self._scan("l"):
            try:
                entries = await client.redis.hgetall(redis_key)
            except RedisError as exc:
                raise self._error(exc, f"reading the ledger of key {key}") from exc
            for field, pos in entries.items():
                try:
                    run_id, namespace = orjson.loads(field)
                    position = int(pos)
                    if not (isinstance(run_id, str) and isinstance(namespace, str)) or position < 0:
                        raise ValueError("not [run, namespace] and a count")
                except (orjson.JSONDecodeError, ValueError, TypeError):
                    log.warning("skipping ledger entry %r of key %s: not written by CacheSaver", field, key)
                    continue
                yield run_id, namespace, key, position

    async def delete(self, key: str) -> int:
        base = self._base(key)
        client = await self._ready()
        try:
            return int(await client.delete(keys=[base + s for s in ("s", "m", "l", "c", "t", "i", "h", "u")]))
        except RedisError as exc:
            raise self._error(exc, f"deleting key {key}") from exc

    async def clear(self) -> None:
        """Delete every key of this store, ``P:{K}:<kind>``, and nothing else.

        The match is ``P:{*`` (not ``P:*``): prefixes cannot contain braces, so no key of another
        prefix starts with ``P:{``, while the cache of prefix ``P:v2`` (``P:v2:{K}:s``) does
        start with ``P:``.
        """
        client = await self._ready()
        head = f"{self.prefix}:{{".encode()
        pattern = _glob_escape(self.prefix) + ":{*"
        try:
            batch: list[bytes] = []
            async for raw in client.redis.scan_iter(match=pattern, count=_SCAN_COUNT):
                if not raw.startswith(head):
                    continue
                batch.append(raw)
                if len(batch) >= _SCAN_COUNT:
                    await self._unlink(client, batch)
                    batch = []
            if batch:
                await self._unlink(client, batch)
        except RedisError as exc:
            raise self._error(exc, f"clearing prefix {self.prefix!r}") from exc

    async def _unlink(self, client: _Client, names: list[bytes]) -> None:
        # RedisCluster splits a multi-key UNLINK by slot itself.
        await client.redis.unlink(*names)

    # -- batch mode ---------------------------------------------------------------------------
    def batch_journal(self) -> Any:
        """The batch journal under this store's prefix (:mod:`.redisjournal`)."""
        from .redisjournal import RedisJournal

        return RedisJournal(self)

    # -- closing -----------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close this loop's client (and drop clients of loops that are gone)."""
        self._closed = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - aclose is awaited
            loop = None
        self._close_sync()
        with self._clients_lock:
            clients = list(self._clients.items())
            self._clients.clear()
        for client_loop, client in clients:
            if client_loop is loop:
                with contextlib.suppress(RedisError, OSError, RuntimeError):
                    await client.redis.aclose()
            else:
                _close_elsewhere(client_loop, client.redis)

    def close(self) -> None:
        """Synchronous close, for code without a running loop (fixtures, ``atexit``)."""
        self._closed = True
        self._close_sync()
        with self._clients_lock:
            clients = list(self._clients.items())
            self._clients.clear()
        for client_loop, client in clients:
            _close_elsewhere(client_loop, client.redis)

    def __repr__(self) -> str:
        return f"RedisStore({self.location!r}, prefix={self.prefix!r})"


class _Renewal:
    """Renews a held lease every ``ttl/3`` while its body runs, so a long model call keeps it
    and a crashed holder loses it. A timer between renewals, not a task that sleeps: most
    bodies end before the first renewal, and stopping a timer costs no turn of the loop."""

    def __init__(self, client: _Client, lease: Lease, lease_key: str, ttl: float, ttl_ms: int,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.client, self.lease, self.lease_key = client, lease, lease_key
        self.interval, self.ttl_ms, self.loop = ttl / 3, ttl_ms, loop
        self.stopped = False
        self.task: "Optional[asyncio.Task[None]]" = None
        self.timer: Optional[asyncio.TimerHandle] = loop.call_later(self.interval, self._fire)

    def _fire(self) -> None:
        self.timer = None
        if not self.stopped:
            self.task = self.loop.create_task(self._renew())

    async def _renew(self) -> None:
        lease = self.lease
        try:
            kept = await self.client.lease_renew(keys=[self.lease_key], args=[lease.token, self.ttl_ms])
        except RedisError as exc:
            kept = 0
            log.warning("could not renew the generation lease of key %s: %s", lease.key, exc)
        self.task = None
        if self.stopped:
            return
        if not kept:
            log.warning("lost the generation lease of key %s; another worker may generate "
                        "the same samples", lease.key)
            lease.acquired = False
            return
        self.timer = self.loop.call_later(self.interval, self._fire)

    def stop(self) -> "Optional[asyncio.Task[None]]":
        """Renew no more; returns a renewal still in flight (cancelled), for the caller to await."""
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        task = self.task  # kept: whoever stops it last awaits it
        if task is not None:
            task.cancel()
        return task


# -- helpers ---------------------------------------------------------------------------------
def _close_elsewhere(loop: asyncio.AbstractEventLoop, redis_client: Any) -> None:
    """Close a client that belongs to ``loop`` from outside it, without leaking sockets."""
    if loop.is_closed():
        _drop_sockets(redis_client)
        return
    if loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            future = asyncio.run_coroutine_threadsafe(redis_client.aclose(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout=5)
        else:  # pragma: no cover - sync close() called from inside the loop
            loop.create_task(redis_client.aclose())
        return
    try:
        loop.run_until_complete(redis_client.aclose())
    except Exception:  # pragma: no cover - best effort
        _drop_sockets(redis_client)


def _drop_sockets(redis_client: Any) -> None:
    """Close the raw sockets of a client whose event loop is closed (no loop to await on)."""
    pool = getattr(redis_client, "connection_pool", None)
    conns = list(getattr(pool, "_available_connections", [])) + list(getattr(pool, "_in_use_connections", []))
    for conn in conns:
        writer = getattr(conn, "_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is not None:
            # abort() marks the transport closing (so __del__ does not warn), then fails to
            # schedule its callback on the closed loop; close the socket ourselves.
            with contextlib.suppress(Exception):
                transport.abort()
            sock = getattr(transport, "_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
                transport._sock = None
        with contextlib.suppress(AttributeError):
            conn._writer = conn._reader = None


def _id_records(entries: Any) -> dict[tuple[str, str], tuple[int, int]]:
    """The request-id records of one key's hash; entries not written by CacheSaver are left
    out (a record is only a hint)."""
    if isinstance(entries, list):  # (a reply without redis-py's HGETALL callback: field, value, ...)
        entries = dict(zip(entries[::2], entries[1::2]))
    if not isinstance(entries, dict):
        return {}
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for field, value in entries.items():
        try:
            namespace, request_id = orjson.loads(field)
            pos, count = orjson.loads(value)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            continue  # not written by CacheSaver: ignored (it is only a hint)
        if (isinstance(namespace, str) and isinstance(request_id, str) and type(pos) is int
                and type(count) is int and pos >= 0 and count > 0):
            out[(namespace, request_id)] = (pos, count)
    return out


def _claimed(reply: Any) -> tuple[int, list[bytes], list[int]]:
    """The claim script's reply: (first position, samples taken, indices billed to the claim)."""
    pos, taken, billed = reply
    return int(pos), list(taken), [int(i) for i in billed]


def _run_arg(run_id: str) -> str:
    """A run id as the scripts' billing-record argument: never empty ('' means no run there)."""
    return "r" + run_id


def _as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes (a JSON record from cachesaver.codec), not {type(value).__name__}")


def _check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
        raise InvalidRequestError(
            f"prefix must be a non-empty str without '{{' or '}}' (they would break Redis Cluster "
            f"hash tags), got {prefix!r}"
        )
    return prefix


def _number(name: str, explicit: Any, from_url: Optional[str], default: float, *, minimum: float = 0.0) -> float:
    value: Any = explicit if explicit is not None else (from_url if from_url is not None else default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{name} must be a number, got {value!r}") from None
    if not number >= minimum:
        raise InvalidRequestError(f"{name} must be >= {minimum}, got {value!r}")
    return number


def _glob_escape(text: str) -> str:
    out = []
    for ch in text:
        if ch in "*?[]\\":
            out.append("\\")
        out.append(ch)
    return "".join(out)


def _redact(url: str) -> str:
    """The URL without its credentials (for errors, logs, ``repr`` and the CLI: G7)."""
    return redact_url(url)
