"""Combine bundles, and import a bundle into a normal cache to extend the experiment.

``merge_bundles(["table1.csbundle", "table2.csbundle"], "paper.csbundle")``: the union of the
keys; where two bundles hold one key, their sample lists must agree sample by sample on the
common prefix (they come from one store), and the longer one is kept; consumption is the
union. Bundles of diverged caches are refused naming the key and sample, and so is a merged
bundle whose canonical requests the secret scanner flags (bundles made by other tools or older
versions are checked again, :func:`.writer.check_metas`).

``await import_bundle("paper.csbundle", "./.cachesaver")``: appends only what the cache lacks
and refuses a conflicting sample before writing anything (the rules of
:mod:`cachesaver.transfer`: all keys or none), so an imported
experiment extended with new namespaces pays only for the new samples.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from ..errors import BundleError
from ..transfer import SampleApplier, TransferReport, opened_store
from .format import BundleContents, installed_versions
from .store import read_bundle
from .writer import check_metas, write_contents

__all__ = ["merge_bundles", "import_bundle"]


def merge_bundles(paths: Iterable["str | os.PathLike[str]"], out: "str | os.PathLike[str]", *,
                  allow: Iterable[str] = ()) -> BundleContents:
    """Verify every bundle in ``paths`` and write their union to ``out``.

    ``allow``: JSON paths (or patterns) the scanner flags that are not credentials. Raises
    ``BundleError`` (``BundleSecretError`` for a flagged credential); then nothing is written.
    """
    files: list[str] = [os.fspath(p) for p in paths]
    if not files:
        raise BundleError("merge needs at least one bundle")
    merged: BundleContents | None = None
    origin: dict[str, str] = {}
    for path in files:
        contents = read_bundle(path)
        if merged is None:
            merged = BundleContents(dict(contents.samples), dict(contents.metas), contents.consumption)
            origin = {key: path for key in contents.samples}
            continue
        for key, raws in contents.samples.items():
            have = merged.samples.get(key)
            if have is None:
                merged.samples[key], merged.metas[key], origin[key] = raws, contents.metas.get(key), path
                continue
            for i, (a, b) in enumerate(zip(have, raws)):
                if a != b:
                    raise BundleError(f"key {key} sample {i + 1} differs between {origin[key]} and {path}: the bundles "
                                      "come from diverged caches and cannot be merged")
            if merged.metas.get(key) is None:
                merged.metas[key] = contents.metas.get(key)
            if len(raws) > len(have):
                merged.samples[key], origin[key] = raws, path
        merged.consumption = merged.consumption.merged(contents.consumption)
    assert merged is not None
    check_metas(merged.metas, allow=allow)  # bundles made by other tools are checked too (G7)
    merged.versions = installed_versions()
    write_contents(merged, out)
    return merged


async def import_bundle(bundle: "str | os.PathLike[str]", store: Any) -> TransferReport:
    """Add a verified bundle's samples to ``store`` (a Store, path or URL); never duplicates."""
    contents = read_bundle(bundle)
    report = TransferReport()

    def lines():
        for key in sorted(contents.samples):
            meta = contents.metas.get(key)
            yield key, {"key": key, "start": 0, "meta": None if meta is None else meta.decode("utf-8"),
                        "samples": [raw.decode("utf-8") for raw in contents.samples[key]]}

    async with opened_store(store) as target:
        checker = SampleApplier(target, TransferReport(), ledger=False)
        for key, line in lines():  # every conflict is found before the first write: all or nothing
            await checker.check(line, f"{os.fspath(bundle)}: key {key}")
        applier = SampleApplier(target, report, ledger=False)
        for key, line in lines():
            await applier.apply(line, f"{os.fspath(bundle)}: key {key}")
    return report
