"""Reproducible experiment bundles: publish exactly the samples a run consumed.

::

    consumption = await pipeline.consumption()               # what the run handed out
    info = await write_bundle(pipeline.store, consumption, "paper.csbundle")
    verify_bundle("paper.csbundle")                          # every digest, or BundleError
    replay = OnlineAPI(model=None, cache="paper.csbundle", offline=True)

A bundle is one zip file (JSON only, never pickle) holding the consumed samples of every key,
their canonical requests, the per-namespace consumption, SHA-256 digests of every sample and of
the whole file, the versions used and a summary of what it stands for (see :mod:`.format`).
Anyone can verify it, replay it offline from read-only media with no API key, merge several
into one, or import one into a cache to extend the experiment.
"""
from __future__ import annotations

from .consumption import Consumption, consumption_of_runs
from .format import FORMAT, VERSION, BundleContents
from .merge import import_bundle, merge_bundles
from .store import BundleStore, read_bundle
from .summary import render_summary
from .writer import write_bundle

__all__ = [
    "Consumption",
    "consumption_of_runs",
    "write_bundle",
    "read_bundle",
    "verify_bundle",
    "merge_bundles",
    "import_bundle",
    "BundleStore",
    "BundleContents",
    "render_summary",
    "is_bundle_file",
    "FORMAT",
    "VERSION",
]


def verify_bundle(path, *, sha256: "str | None" = None) -> BundleContents:
    """Check every digest, the manifest and the summary of the bundle at ``path``.

    ``sha256``: the file digest the author published; checked too. Returns the verified
    contents; raises :class:`~cachesaver.errors.BundleError` naming what failed.
    """
    from ..errors import BundleError

    contents = read_bundle(path)
    if sha256 is not None and contents.sha256 != sha256.strip().lower():
        raise BundleError(f"{path}: the file's SHA-256 is {contents.sha256}, not the published {sha256}; "
                          "this is not the bundle that was published")
    return contents


def is_bundle_file(path) -> bool:
    """True if ``path`` is a file that starts like a zip archive (a bundle candidate)."""
    import os

    try:
        with open(path, "rb") as fh:
            return os.path.isfile(path) and fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False
