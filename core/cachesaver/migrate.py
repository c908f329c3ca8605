"""Carry engine samples over from key policy 1 (no model in the key) to policy 2.

Key policy 2 (:mod:`cachesaver.keypolicy`) keys the identity of an engine pipeline's model. A
cache an ``OnlineAPI``/``LocalAPI`` wrote before that holds its samples under keys without the
model, which a pipeline whose model declares one no longer finds (it logs a warning that points
here). :func:`migrate_keys` copies each such key's samples, in order, to the key its request has
with ``model_id`` added, and stores the new canonical request beside them::

    report = await migrate_keys("./caches/test", "gpt-4o-mini")          # or: cachesaver migrate-keys

Which keys: ``keys=`` names them exactly; otherwise every key whose stored request names no model
at its top level. A request names its model when it has a ``cachesaver_model`` field (policy 2
engine keys), a ``model`` field (litellm adapter requests, and engine ``Request`` subclasses with
a ``model`` field) or a ``format`` field (the LangChain adapter's requests, whose model is among
their parameters): adapters always keyed their model, so their keys need nothing. A policy 1
cache that several models wrote cannot be split by model after the fact; migrate it only if
one model wrote it, or name its keys.

Never destructive by default: the old keys stay (``move=True`` deletes each one after its samples
are copied), a target key that already holds samples is left alone (nothing is mixed or
duplicated), and ``dry_run=True`` only reports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import orjson

from .errors import InvalidRequestTypeError
from .keypolicy import MODEL_FIELD
from .keys import canonical_json, make_key
from .opening import open_store
from .stores import Store

__all__ = ["migrate_keys", "MigrationReport", "NAMES_A_MODEL"]

#: Top-level request fields that mean the request already names its model (module docstring).
NAMES_A_MODEL = frozenset({MODEL_FIELD, "model", "format"})


@dataclass
class MigrationReport:
    """What :func:`migrate_keys` did (or, with ``dry_run``, would do)."""

    #: ``(old key, new key, samples)`` per key carried over.
    moved: list[tuple[str, str, int]] = field(default_factory=list)
    #: Keys left as they are because their request already names a model.
    already_keyed: int = 0
    #: Keys whose target already held samples (left alone).
    target_taken: list[str] = field(default_factory=list)
    #: Keys without a stored request (nothing to re-key from).
    no_request: list[str] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(count for _, _, count in self.moved)


async def migrate_keys(store: Any, model_id: str, *, keys: Optional[Iterable[str]] = None,
                       move: bool = False, dry_run: bool = False) -> MigrationReport:
    """Copy policy 1 engine keys of ``store`` to their policy 2 keys for ``model_id``.

    ``store`` is a Store or what ``cache=`` takes. Returns a :class:`MigrationReport`.
    """
    if not isinstance(model_id, str) or not model_id:
        raise InvalidRequestTypeError(
            f"model_id must be the non-empty model name the pipeline declares (e.g. 'gpt-4o-mini'), got {model_id!r}"
        )
    owned = not isinstance(store, Store)
    opened = open_store(store)
    report = MigrationReport()
    try:
        chosen = None if keys is None else list(keys)
        candidates = chosen if chosen is not None else [key async for key in opened.iter_keys()]
        for key in sorted(candidates):
            await _migrate_one(opened, key, model_id, report, named=chosen is not None,
                               move=move, dry_run=dry_run)
    finally:
        if owned:
            await opened.aclose()
    return report


async def _migrate_one(store: Store, key: str, model_id: str, report: MigrationReport, *,
                       named: bool, move: bool, dry_run: bool) -> None:
    meta = await store.get_meta(key)
    if meta is None:
        report.no_request.append(key)
        return
    request = orjson.loads(bytes(meta))
    if not isinstance(request, dict) or (not named and NAMES_A_MODEL & request.keys()) or MODEL_FIELD in request:
        report.already_keyed += 1
        return
    new_meta = canonical_json({**request, MODEL_FIELD: model_id})
    new_key = make_key(orjson.loads(new_meta))
    if await store.length(new_key):
        report.target_taken.append(key)
        return
    count = await store.length(key)
    if not dry_run and count:
        samples = [bytes(raw) for raw in await store.read(key, 0, count)]
        await store.append(new_key, samples, new_meta)
        if move:
            await store.delete(key)
    report.moved.append((key, new_key, count))
