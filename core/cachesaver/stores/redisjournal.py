"""The batch journal of a Redis store: batch mode for a fleet of workers on one Redis.

Layout (``P`` = the store's prefix; every key shares the ``{batches}`` hash tag, so each
operation below touches one Redis Cluster slot and is atomic)::

    P:{batches}:all        ZSET    batch ids, scored by creation time
    P:{batches}:b:<id>     HASH    one batch: state, owner, created, provider_batch, input_file, info
    P:{batches}:l:<id>     HASH    its lines: custom_id -> JSON [key, n, state, first, estimate, cost]
    P:{batches}:m:<id>     HASH    its lines' request JSON (LineRecord.meta): custom_id -> meta
    P:{batches}:open:<key> SET     the open lines of a sample key: "<batch id> <custom_id>"

Writes are atomic (a MULTI/EXEC transaction or one script; see
:mod:`cachesaver.batchapi.journal` for what is recorded when). The store's ``clear`` removes the
journal with everything else of its prefix.

Liveness across hosts: a collector renews ``P:{batches}:alive:<owner>`` (expiring after the
store's ``lease_ttl``, like a generation lease) while it waits for batches. An owner on another
host whose key has expired is gone: its batch is collected by the next worker that misses one of
its keys, or by ``cachesaver batches collect`` (on this host, a process that exited is gone at
once, as on disk).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

from ..batchapi.journal import BatchRecord, LineRecord, count_lines

if TYPE_CHECKING:  # pragma: no cover
    from .redis import RedisStore

__all__ = ["RedisJournal"]

_FIELDS = ("state", "owner", "provider_batch", "input_file", "info")

# KEYS: batch hash. ARGV: old owner, new owner. 1 if taken over.
_TAKE_OVER_LUA = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
return 1
"""

# KEYS: lines hash, open set of the line's key. ARGV: custom_id, new state, batch id, cost billed
# (repr of a float, or ''). Closes an open line (and takes it out of its key's open set); a
# closed line stays as it is. The cost is kept as text: cjson would round a number.
_CLOSE_LINE_LUA = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local line = cjson.decode(raw)
if line[3] ~= 'open' then return 0 end
line[3] = ARGV[2]
if ARGV[4] ~= '' then line[6] = ARGV[4] end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(line))
redis.call('SREM', KEYS[2], ARGV[3] .. ' ' .. ARGV[1])
return 1
"""


class RedisJournal:
    def __init__(self, store: "RedisStore") -> None:
        self._store = store
        self._base = f"{store.prefix}:{{batches}}:"

    def _batch_key(self, batch_id: str) -> str:
        return f"{self._base}b:{batch_id}"

    def _lines_key(self, batch_id: str) -> str:
        return f"{self._base}l:{batch_id}"

    def _meta_key(self, batch_id: str) -> str:
        return f"{self._base}m:{batch_id}"

    def _open_key(self, key: str) -> str:
        return f"{self._base}open:{key}"

    async def _client(self) -> Any:
        return (await self._store._ready()).redis

    def _error(self, exc: Exception, what: str) -> Exception:
        return self._store._error(exc, what)

    async def add(self, batch: BatchRecord, lines: "list[LineRecord]") -> None:
        from redis.exceptions import RedisError

        redis = await self._client()
        try:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._batch_key(batch.id), mapping=_batch_fields(batch))
                pipe.zadd(self._base + "all", {batch.id: batch.created})
                if lines:
                    pipe.hset(self._lines_key(batch.id), mapping={
                        line.custom_id: json.dumps([line.key, line.n, line.state, line.first, _number(line.estimate),
                                                    _number(line.cost)])
                        for line in lines})
                metas = {line.custom_id: line.meta for line in lines if line.meta is not None}
                if metas:
                    pipe.hset(self._meta_key(batch.id), mapping=metas)
                for line in lines:
                    if line.state == "open":
                        pipe.sadd(self._open_key(line.key), f"{batch.id} {line.custom_id}")
                await pipe.execute()
        except RedisError as exc:
            raise self._error(exc, f"recording batch {batch.id}") from exc

    async def update(self, batch_id: str, **fields: Any) -> None:
        from redis.exceptions import RedisError

        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown batch field(s) {sorted(unknown)}")
        values = {name: _field(name, value) for name, value in fields.items()}
        redis = await self._client()
        try:
            await redis.hset(self._batch_key(batch_id), mapping=values)
        except RedisError as exc:
            raise self._error(exc, f"updating batch {batch_id}") from exc

    async def take_over(self, batch_id: str, old_owner: str, new_owner: str) -> bool:
        from redis.exceptions import RedisError

        redis = await self._client()
        try:
            taken = await redis.eval(_TAKE_OVER_LUA, 1, self._batch_key(batch_id), old_owner, new_owner)
        except RedisError as exc:
            raise self._error(exc, f"taking over batch {batch_id}") from exc
        return bool(taken)

    async def open_lines(self, key: str) -> "list[tuple[BatchRecord, LineRecord]]":
        from redis.exceptions import RedisError

        redis = await self._client()
        try:
            members = await redis.smembers(self._open_key(key))
            found = []
            for member in sorted(m.decode() if isinstance(m, bytes) else m for m in members):
                batch_id, _, custom_id = member.partition(" ")
                record = _batch(batch_id, await redis.hgetall(self._batch_key(batch_id)))
                raw = await redis.hget(self._lines_key(batch_id), custom_id)
                if record is None or raw is None:
                    continue
                line = _line(batch_id, custom_id, raw)
                if line.state == "open":
                    found.append((record, line))
        except RedisError as exc:
            raise self._error(exc, f"reading the open batch lines of key {key}") from exc
        return sorted(found, key=lambda pair: (pair[0].created, pair[1].custom_id))

    async def close_line(self, batch_id: str, custom_id: str, state: str, cost: Optional[float] = None) -> None:
        from redis.exceptions import RedisError

        redis = await self._client()
        try:
            raw = await redis.hget(self._lines_key(batch_id), custom_id)
            if raw is None:
                return
            key = _line(batch_id, custom_id, raw).key
            await redis.eval(_CLOSE_LINE_LUA, 2, self._lines_key(batch_id), self._open_key(key),
                             custom_id, state, batch_id, "" if cost is None else repr(float(cost)))
        except RedisError as exc:
            raise self._error(exc, f"closing line {custom_id} of batch {batch_id}") from exc

    @property
    def heartbeat_every(self) -> float:
        """Seconds between a collector's renewals of its liveness key (a third of its life)."""
        return float(self._store.lease_ttl) / 3

    async def heartbeat(self, owner: str) -> None:
        """Say that collector ``owner`` is alive for the store's ``lease_ttl`` seconds more."""
        from redis.exceptions import RedisError

        redis = await self._client()
        try:
            await redis.set(f"{self._base}alive:{owner}", b"1", px=max(1, int(self._store.lease_ttl * 1000)))
        except RedisError as exc:
            raise self._error(exc, "renewing a batch collector's liveness") from exc

    async def alive(self, owner: str) -> bool:
        """Whether collector ``owner`` renewed its liveness within ``lease_ttl`` seconds."""
        from redis.exceptions import RedisError

        redis = await self._client()
        try:
            return bool(await redis.exists(f"{self._base}alive:{owner}"))
        except RedisError as exc:
            raise self._error(exc, "reading a batch collector's liveness") from exc

    async def owner(self, batch_id: str) -> Optional[str]:
        """The collector a batch has now (None: no such batch)."""
        from redis.exceptions import RedisError

        redis = await self._client()
        try:
            value = await redis.hget(self._batch_key(batch_id), "owner")
        except RedisError as exc:
            raise self._error(exc, f"reading the owner of batch {batch_id}") from exc
        return None if value is None else _text(value)

    async def lines(self, batch_id: str) -> "list[LineRecord]":
        from redis.exceptions import RedisError

        redis = await self._client()
        try:
            raws = await redis.hgetall(self._lines_key(batch_id))
            metas = {_text(c): m if isinstance(m, bytes) else str(m).encode() for c, m in (await redis.hgetall(self._meta_key(batch_id))).items()}
        except RedisError as exc:
            raise self._error(exc, f"reading the lines of batch {batch_id}") from exc
        lines = [_line(batch_id, _text(c), raw) for c, raw in raws.items()]
        for line in lines:
            line.meta = metas.get(line.custom_id)
        return sorted(lines, key=lambda line: line.custom_id)

    async def batches(self) -> "list[tuple[BatchRecord, dict[str, Any]]]":
        from redis.exceptions import RedisError

        redis = await self._client()
        out = []
        try:
            for raw_id in await redis.zrevrange(self._base + "all", 0, -1):
                batch_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                record = _batch(batch_id, await redis.hgetall(self._batch_key(batch_id)))
                if record is None:
                    continue
                lines = [_line(batch_id, c.decode() if isinstance(c, bytes) else c, raw)
                         for c, raw in (await redis.hgetall(self._lines_key(batch_id))).items()]
                out.append((record, count_lines((line.state, line.n, line.estimate, line.cost) for line in lines)))
        except RedisError as exc:
            raise self._error(exc, "listing batches") from exc
        return out


def _number(value: Optional[float]) -> Optional[str]:
    """A cost as JSON text: a number re-encoded by the close script's cjson would be rounded."""
    return None if value is None else repr(float(value))


def _field(name: str, value: Any) -> str:
    if name == "info":
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def _batch_fields(batch: BatchRecord) -> dict[str, str]:
    fields = {name: _field(name, getattr(batch, name)) for name in _FIELDS}
    fields["created"] = repr(float(batch.created))
    return fields


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _batch(batch_id: str, fields: "dict[Any, Any]") -> Optional[BatchRecord]:
    if not fields:
        return None
    got = {_text(k): _text(v) for k, v in fields.items()}
    return BatchRecord(id=batch_id, state=got.get("state", ""), owner=got.get("owner", ""),
                       created=float(got.get("created") or 0.0),
                       provider_batch=got.get("provider_batch") or None,
                       input_file=got.get("input_file") or None,
                       info=json.loads(got.get("info") or "{}"))


def _line(batch_id: str, custom_id: str, raw: Any) -> LineRecord:
    fields = json.loads(_text(raw))
    key, n, state, first = fields[:4]
    estimate, cost = (list(fields[4:6]) + [None, None])[:2]  # (lines written before they were kept)
    return LineRecord(batch_id, custom_id, key, int(n), state, first=int(first),
                      estimate=None if estimate is None else float(estimate),
                      cost=None if cost is None else float(cost))
