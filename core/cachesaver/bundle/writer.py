"""Write a bundle: exactly the samples a run consumed, from the store that holds them.

``info = await write_bundle("./.cachesaver", await pipeline.consumption(), "paper.csbundle")``

Per key the bundle holds samples ``0 .. m-1``, ``m`` the most any namespace consumed; nothing
else of the store (other experiments, extra samples) leaves the machine. Before anything is
written, every key's canonical request must hash to its key (a bundle that could not be
verified is never made) and is given to the secret scanner (:mod:`cachesaver.secrets`, G7): if
it flags a credential, the bundle is refused with the key, the JSON path and the detector, and
the fix; ``allow=`` names paths the author vouches are not credentials. The file is written to a
temporary name and renamed, so a failed write leaves nothing behind; the same samples always
give the same bytes.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any, Iterable, Mapping, Optional

import orjson

from ..codec import decode_sample
from ..errors import BundleError, BundleSecretError, CorruptSampleError
from ..opening import open_store
from ..secrets import find_secrets_in_metas, refusal_message
from ..stores import Store
from .consumption import Consumption
from .format import BundleContents, encode_bundle, installed_versions

__all__ = ["write_bundle", "write_contents", "collect", "check_metas"]


async def write_bundle(store: Any, consumption: Mapping[str, Mapping[str, int]], path: "str | os.PathLike[str]",
                       *, allow: Iterable[str] = ()) -> BundleContents:
    """Write the samples ``consumption`` names, read from ``store``, to the bundle ``path``.

    ``store`` is a Store or what ``cache=`` takes; ``consumption`` is what
    ``await pipeline.consumption()`` returns (or any ``{namespace: {key: count}}``); ``allow``:
    JSON paths (or ``*`` patterns) of request fields the scanner flags but that are not
    credentials. Returns the contents written, with ``.sha256`` (of the file) and ``.summary``.
    Raises ``BundleError`` if the store lacks a consumed sample or a canonical request does not
    hash to its key, and ``BundleSecretError`` (a ``BundleError``) naming key, path and detector
    if the scanner flags a credential; then nothing is written.
    """
    owned = not isinstance(store, Store)
    opened = open_store(store)
    try:
        contents = await collect(opened, consumption, allow=allow)
    finally:
        if owned:
            await opened.aclose()
    write_contents(contents, path)
    return contents


async def collect(store: Store, consumption: Mapping[str, Mapping[str, int]], *,
                  allow: Iterable[str] = ()) -> BundleContents:
    """Read what a bundle of ``consumption`` holds from ``store`` and check it may be published
    (see :func:`write_bundle` for what is checked and raised)."""
    if not isinstance(consumption, Consumption):
        consumption = Consumption(consumption)
    if not consumption:
        raise BundleError("the consumption is empty: the run handed out no samples, so there is nothing to bundle")
    samples: dict[str, list[bytes]] = {}
    metas: dict[str, Optional[bytes]] = {}
    where = store.location or type(store).__name__
    for key, need in consumption.needed().items():
        raws = [bytes(r) for r in await store.read(key, 0, need)]
        if len(raws) < need:
            raise BundleError(f"key {key}: the run consumed {need} samples but {where} holds {len(raws)}; "
                              "bundle from the store the run used")
        for i, raw in enumerate(raws):
            try:
                decode_sample(raw, key=key, index=i)
            except CorruptSampleError as exc:
                raise BundleError(f"{exc} (refusing to publish it)") from None
        meta = await store.get_meta(key)
        samples[key], metas[key] = raws, None if meta is None else bytes(meta)
    check_metas(metas, allow=allow)
    return BundleContents(samples, metas, consumption, installed_versions())


def write_contents(contents: BundleContents, path: "str | os.PathLike[str]") -> None:
    """Encode ``contents`` and write them to ``path`` atomically (temporary file, then rename)."""
    data = encode_bundle(contents)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".bundle-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_metas(metas: Mapping[str, Optional[bytes]], *, allow: Iterable[str] = ()) -> None:
    """Refuse canonical requests that may not be published: not JSON, not hashing to their key
    (``BundleError``), or holding what the secret scanner flags (``BundleSecretError``)."""
    for key, meta in metas.items():
        if meta is None:
            continue
        try:
            orjson.loads(meta)
        except orjson.JSONDecodeError:
            raise BundleError(f"the canonical request of key {key} is not JSON; remove the key (cachesaver prune)") from None
        if hashlib.sha256(meta).hexdigest() != key:
            raise BundleError(f"the canonical request stored for key {key} does not hash to that key (its SHA-256 "
                              "differs): the store was edited or written by another tool; remove the key "
                              "(cachesaver prune --key) and record it again")
    findings = find_secrets_in_metas(sorted(metas.items()), allow=allow)
    if findings:
        raise BundleSecretError(refusal_message(findings, "the bundle"), findings)
