"""Write a bundle: exactly the samples a run consumed, from the store that holds them.

``info = await write_bundle("./.cachesaver", await pipeline.consumption(), "paper.csbundle")``

Per key the bundle holds samples ``0 .. m-1``, ``m`` the most any namespace consumed; nothing
else of the store (other experiments, extra samples) leaves the machine. A key's canonical
request is checked for anything that looks like a credential first (G7): such a bundle is
refused, never written. The file is written to a temporary name and renamed, so a failed
write leaves nothing behind; the same samples always give the same bytes.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping, Optional

import orjson

from ..codec import decode_sample
from ..errors import BundleError, CorruptSampleError
from ..secrets import holds_credentials, is_secret_name
from ..stores import Store, open_store
from .consumption import Consumption
from .format import BundleContents, encode_bundle, installed_versions

__all__ = ["write_bundle", "write_contents", "collect", "refuse_secrets"]

#: Fields holding prompt text: it may quote anything, so only parameters are checked there.
_TEXT_FIELDS = frozenset({"prompt", "content", "text", "messages"})


async def write_bundle(store: Any, consumption: Mapping[str, Mapping[str, int]], path: "str | os.PathLike[str]") -> BundleContents:
    """Write the samples ``consumption`` names, read from ``store``, to the bundle ``path``.

    ``store`` is a Store or what ``cache=`` takes; ``consumption`` is what
    ``await pipeline.consumption()`` returns (or any ``{namespace: {key: count}}``). Returns the
    contents written, with ``.sha256`` (of the file) and ``.summary``. Raises ``BundleError``
    if the store lacks a consumed sample or a request carries a credential.
    """
    owned = not isinstance(store, Store)
    opened = open_store(store)
    try:
        contents = await collect(opened, consumption)
    finally:
        if owned:
            await opened.aclose()
    write_contents(contents, path)
    return contents


async def collect(store: Store, consumption: Mapping[str, Mapping[str, int]]) -> BundleContents:
    """Read (and check) what a bundle of ``consumption`` holds from ``store``."""
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
        if meta is not None:
            meta = bytes(meta)
            refuse_secrets(meta, key)
        samples[key], metas[key] = raws, meta
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


def refuse_secrets(meta: bytes, key: str) -> None:
    try:
        obj = orjson.loads(meta)
    except orjson.JSONDecodeError:
        raise BundleError(f"the canonical request of key {key} is not JSON; remove the key (cachesaver prune)") from None
    found = _secret_path(obj, "$")
    if found:
        raise BundleError(
            f"the canonical request of key {key} holds what looks like a credential at {found}; a bundle is "
            "published, so it is refused. Re-run without passing credentials as request parameters"
        )


def _secret_path(value: Any, path: str) -> Optional[str]:
    if isinstance(value, dict):
        for name, item in value.items():
            if is_secret_name(name) and isinstance(item, str) and item:
                return f"{path}.{name}"
            found = _secret_path(item, f"{path}.{name}")
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _secret_path(item, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(value, str) and holds_credentials(value):
        # Prompt text may quote anything; every other string (URLs, headers, params) is checked.
        if path.rsplit(".", 1)[-1].split("[")[0] not in _TEXT_FIELDS:
            return path
    return None
