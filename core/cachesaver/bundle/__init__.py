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

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

#: Public names and the module of this package that defines each. They load on first use
#: (PEP 562), so importing one part (``BundleStore`` to open a bundle) does not import the
#: others (writing, merging): the stores and the JSONL transfer stay below the bundles.
_EXPORTS = {
    "Consumption": "consumption",
    "consumption_of_runs": "consumption",
    "write_bundle": "writer",
    "read_bundle": "store",
    "verify_bundle": "store",
    "merge_bundles": "merge",
    "import_bundle": "merge",
    "BundleStore": "store",
    "BundleContents": "format",
    "render_summary": "summary",
    "is_bundle_file": "store",
    "FORMAT": "format",
    "VERSION": "format",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .consumption import Consumption, consumption_of_runs
    from .format import FORMAT, VERSION, BundleContents
    from .merge import import_bundle, merge_bundles
    from .store import BundleStore, is_bundle_file, read_bundle, verify_bundle
    from .summary import render_summary
    from .writer import write_bundle
