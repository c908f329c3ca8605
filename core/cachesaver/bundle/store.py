"""``BundleStore``: a bundle opened as a read-only store, so replays and the CLI work on it.

``OnlineAPI(model=None, cache="paper.csbundle", offline=True)`` (or ``open_store(path)``)
reads the whole file once, checks every digest (:func:`.format.decode_bundle`) and serves only
verified samples from memory; the file is never written, so it may live on read-only media.
Shared-run ledgers (``run_id=``) are kept in memory. Any write raises ``ReadOnlyStoreError``,
and a pipeline on a read-only store is offline: a miss raises ``OfflineMissError``.
"""
from __future__ import annotations

import os
from typing import AsyncIterator, Optional, Sequence

from ..errors import BundleError, ReadOnlyStoreError
from ..stores.base import LedgerEntry, Store
from ..stores.memory import claim_in_memory
from .format import BundleContents, decode_bundle

__all__ = ["BundleStore", "read_bundle", "verify_bundle", "is_bundle_file"]


def read_bundle(path: "str | os.PathLike[str]") -> BundleContents:
    """Read and verify the bundle at ``path``; raise ``BundleError`` naming what failed."""
    where = os.fspath(path)
    try:
        with open(where, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise BundleError(f"cannot read bundle {where!r}: {exc.strerror or exc}") from None
    return decode_bundle(data, where)


class BundleStore(Store):
    """The samples of one bundle file, verified, read-only."""

    inline_io = True
    read_only = True
    is_bundle = True

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.location = os.fspath(path)
        self.contents = read_bundle(path)
        self._ledger: dict[tuple[str, str, str], int] = {}

    @property
    def summary(self) -> dict:
        return self.contents.summary

    @property
    def consumption(self):
        """What the recorded runs consumed (``{namespace: {key: count}}``)."""
        return self.contents.consumption

    def _refuse(self, what: str) -> ReadOnlyStoreError:
        return ReadOnlyStoreError(
            f"{what} refused: {self.location} is a bundle, which is read-only. Import it into a cache to "
            "extend the experiment (`cachesaver bundle import BUNDLE --cache DIR`)"
        )

    async def read(self, key: str, start: int, count: int) -> list[bytes]:
        return self.contents.samples.get(key, [])[start: start + count]

    def read_now(self, key: str, start: int, count: int) -> list[bytes]:
        # In memory and never written: hits are served on the caller's thread.
        return self.contents.samples.get(key, [])[start: start + count]

    async def append(self, key: str, samples: Sequence[bytes], meta: Optional[bytes] = None, *,
                     unbilled_run: Optional[str] = None) -> int:
        raise self._refuse(f"appending {len(samples)} sample(s) to key {key}")

    async def length(self, key: str) -> int:
        return len(self.contents.samples.get(key, ()))

    async def claim(self, run_id: str, namespace: str, key: str, count: int, *, partial: bool) -> tuple[int, list[bytes]]:
        # A shared run's ledger is kept in memory: the bundle itself is never written.
        return claim_in_memory(self.contents.samples, self._ledger, (run_id, namespace, key), count, partial)

    async def iter_keys(self) -> AsyncIterator[str]:
        for key in sorted(self.contents.samples):
            yield key

    async def get_meta(self, key: str) -> Optional[bytes]:
        return self.contents.metas.get(key)

    async def iter_ledger(self) -> AsyncIterator[LedgerEntry]:
        for (run_id, namespace, key), pos in sorted(self._ledger.items()):
            yield run_id, namespace, key, pos

    async def delete(self, key: str) -> int:
        raise self._refuse(f"deleting key {key}")

    async def clear(self) -> None:
        raise self._refuse("clearing")

    def __repr__(self) -> str:
        return f"BundleStore({self.location!r}, keys={len(self.contents.samples)}, samples={self.contents.sample_count})"


def verify_bundle(path: "str | os.PathLike[str]", *, sha256: "str | None" = None) -> BundleContents:
    """Check every digest, the manifest and the summary of the bundle at ``path``.

    ``sha256``: the file digest the author published; checked too. Returns the verified
    contents; raises :class:`~cachesaver.errors.BundleError` naming what failed.
    """
    contents = read_bundle(path)
    if sha256 is not None and contents.sha256 != sha256.strip().lower():
        raise BundleError(f"{path}: the file's SHA-256 is {contents.sha256}, not the published {sha256}; "
                          "this is not the bundle that was published")
    return contents


def is_bundle_file(path: "str | os.PathLike[str]") -> bool:
    """True if ``path`` is a file that starts like a zip archive (a bundle candidate)."""
    try:
        with open(path, "rb") as fh:
            return os.path.isfile(path) and fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False
