"""The bundle file: one zip archive (stdlib ``zipfile``, deflate), JSON only, never pickle.

Layout::

    samples/000000.jsonl    the samples of one key: its JSON records, one per line, in list order
    samples/000001.jsonl    ...one member per key, each compressed on its own, so damage is
                            located to one key
    manifest.json           what the bundle holds and what it stands for (below)
    zip comment             "cachesaver-bundle-sha256:" + SHA-256 of every byte before the digest

The manifest (``format``, ``version``) holds, per key, its canonical request (``meta``, the
JSON the store keeps and the key is the SHA-256 of: model, messages, params; the secret scanner
checked it when the bundle was written) and the SHA-256 of every sample record; the per-namespace ``consumption`` of the recorded runs; ``versions`` of the
package and the frameworks installed; a ``summary`` (see :mod:`.summary`); and
``content_sha256``, the SHA-256 of the canonical JSON of all of that. Reading checks, in this
order, and refuses with :class:`~cachesaver.errors.BundleError` naming what failed: the whole
file's digest, the archive's members (nothing missing, nothing extra: a planted file is
refused, never opened), the manifest's fields and digest, every sample's digest and record, that each key is
the SHA-256 of its canonical request (so a sample can only answer the request it was generated
for), and the summary recomputed from the samples. The same samples always give the same bytes.

Sizes are bounded (:mod:`.limits`: 16 MiB a sample, 256 MiB a key's member, 32 MiB the
manifest, 1 GiB in all, each raised by a ``CACHESAVER_BUNDLE_MAX_*_BYTES`` variable): checked
against the central directory before decompressing and again while streaming, so a zip bomb
or a padded manifest is refused at the cost of one sample's memory. The writer refuses to make
a bundle over them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import sys
import zipfile
from importlib import metadata
from typing import Any, Optional

import orjson

from .. import __version__
from ..codec import decode_sample
from ..errors import BundleError, CorruptSampleError
from .consumption import Consumption, check_positions
from .limits import Limits, iter_lines, read_member
from .summary import summarize

__all__ = ["FORMAT", "VERSION", "BundleContents", "encode_bundle", "decode_bundle", "file_sha256"]

FORMAT = "cachesaver-bundle"
#: Version 2 adds ``consumption.runs`` (each run's own consumption, so runs that reuse
#: namespace names are counted apart); version 1 bundles are still read (one run).
VERSION = 2
_READABLE = (1, 2)
MANIFEST = "manifest.json"
_SEAL = b"cachesaver-bundle-sha256:"
_DIGEST_LEN = 64
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_UNWRITTEN = " (nothing was written: readers would refuse it)"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MEMBER = re.compile(r"^samples/[0-9]{6,}\.jsonl$")
_VERSIONED = ("cachesaver-integrations", "litellm", "langchain-core", "diskcache", "redis")


@dataclasses.dataclass
class BundleContents:
    """A bundle in memory: per key its canonical request and sample records, and the runs."""

    samples: dict[str, list[bytes]]
    metas: dict[str, Optional[bytes]]
    consumption: Consumption
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    sha256: str = ""           # of the whole file, once written or read
    content_sha256: str = ""   # of the manifest's content

    @property
    def sample_count(self) -> int:
        return sum(len(v) for v in self.samples.values())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(data: bytes) -> str:
    """The SHA-256 of a bundle file's bytes (what an author publishes beside the paper)."""
    return sha256(data)


def installed_versions() -> dict[str, str]:
    """Versions of this package and the frameworks installed (read from metadata, not imported)."""
    out = {"cachesaver": __version__, "python": ".".join(map(str, sys.version_info[:3]))}
    for dist in _VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _canonical(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def _member(index: int) -> str:
    return f"samples/{index:06d}.jsonl"


# -- writing ---------------------------------------------------------------------------------
def encode_bundle(contents: BundleContents) -> bytes:
    """The bundle file's bytes for ``contents`` (deterministic); sets ``contents``' digests."""
    limits = Limits.current()
    keys = sorted(contents.samples)
    entries: list[dict[str, Any]] = []
    total = 0
    for index, key in enumerate(keys):
        raws = contents.samples[key]
        for i, raw in enumerate(raws):
            if b"\n" in raw:
                raise BundleError(f"sample {i + 1} of key {key} holds a raw newline: not a CacheSaver record")
            if len(raw) > limits.sample:
                raise limits.refuse(f"sample {i + 1} of key {key}", f"{len(raw):,} bytes", "sample", _UNWRITTEN)
        size = sum(len(raw) for raw in raws) + max(len(raws) - 1, 0)
        if size > limits.member:
            raise limits.refuse(f"key {key} ({len(raws)} samples)", f"{size:,} bytes", "member", _UNWRITTEN)
        total += size
        meta = contents.metas.get(key)
        entries.append({
            "key": key,
            "member": _member(index),
            "meta": None if meta is None else meta.decode("utf-8"),
            "samples": [sha256(raw) for raw in raws],
        })
    contents.summary = summarize(contents.samples, contents.metas, contents.consumption)
    body = {
        "format": FORMAT,
        "version": VERSION,
        "versions": contents.versions,
        "summary": contents.summary,
        "consumption": {"run_ids": contents.consumption.run_ids, "namespaces": dict(contents.consumption),
                        "runs": contents.consumption.runs},
        "keys": entries,
    }
    contents.content_sha256 = sha256(_canonical(body))
    manifest = orjson.dumps({**body, "content_sha256": contents.content_sha256},
                            option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    if len(manifest) > limits.manifest:
        raise limits.refuse(f"the manifest of {len(keys)} keys", f"{len(manifest):,} bytes", "manifest", _UNWRITTEN)
    if total + len(manifest) > limits.total:
        raise limits.refuse("the bundle", f"{total + len(manifest):,} bytes", "total", _UNWRITTEN)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for entry in entries:
            _add(archive, entry["member"], b"\n".join(contents.samples[entry["key"]]))
        _add(archive, MANIFEST, manifest)
        archive.comment = _SEAL + b"0" * _DIGEST_LEN
    data = buf.getvalue()
    digest = sha256(data[:-_DIGEST_LEN]).encode()
    data = data[:-_DIGEST_LEN] + digest
    contents.sha256 = file_sha256(data)
    return data


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    archive.writestr(info, data, compresslevel=9)


# -- reading and verifying -------------------------------------------------------------------
def decode_bundle(data: bytes, where: str = "bundle") -> BundleContents:
    """Check everything (see the module docstring) and return the contents, or raise BundleError."""
    if not data.startswith(b"PK\x03\x04"):
        raise BundleError(f"{where} is not a CacheSaver bundle (not a zip archive); make one with `cachesaver bundle create`")
    seal_ok = _seal_ok(data)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any failure to parse the directory is damage
        raise BundleError(f"{where}: the archive structure is damaged ({type(exc).__name__}: {exc}); "
                          + ("" if seal_ok else "its SHA-256 seal does not match either: ") + "get a fresh copy") from None
    try:
        contents = _decode_members(archive, where)
    except BundleError as exc:
        if not seal_ok:
            raise BundleError(f"{exc} (and the file's SHA-256 seal does not match: it was modified)") from None
        raise
    if not seal_ok:
        raise BundleError(
            f"{where}: the file's SHA-256 seal (zip comment) does not match its bytes, although every "
            f"sample and the manifest check out: {_locate_damage(data, contents, archive)}; get a fresh copy"
        )
    contents.sha256 = file_sha256(data)
    return contents


def _locate_damage(data: bytes, contents: BundleContents, archive: zipfile.ZipFile) -> str:
    """Say where a file whose samples all check out differs from what the writer made.

    Such damage sits in bytes that change no sample (zip header fields, the padding bits of a
    compressed member). The encoding is deterministic, so re-encoding the verified contents
    usually reproduces the original file; the differing byte then names its member and key.
    """
    copy = dataclasses.replace(contents, samples=dict(contents.samples))
    try:
        original = encode_bundle(copy)
    except BundleError:
        original = b""
    if len(original) != len(data):
        return "the archive headers were modified"
    offset = next(i for i, (x, y) in enumerate(zip(original, data)) if x != y)
    keys = {_member(i): key for i, key in enumerate(sorted(contents.samples))}
    spans = sorted((info.header_offset, info.filename) for info in archive.infolist())
    owner = None
    for start, name in spans:
        if start <= offset:
            owner = name
    if owner is not None and offset < archive.start_dir:
        if owner in keys:
            return (f"byte {offset} inside the stored data of key {keys[owner]} (member {owner}) was modified "
                    "(it still decompresses to the same samples)")
        return f"byte {offset} inside member {owner} was modified"
    return f"byte {offset} in the archive's central directory or seal was modified"


def _seal_ok(data: bytes) -> bool:
    head = data[: -_DIGEST_LEN]
    if not head.endswith(_SEAL):
        return False
    return sha256(head).encode() == data[-_DIGEST_LEN:]


def _decode_members(archive: zipfile.ZipFile, where: str) -> BundleContents:
    limits = Limits.current()
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise BundleError(f"{where}: a member appears twice in the archive (planted); refused")
    declared = sum(info.file_size for info in infos)
    if declared > limits.total:
        raise limits.refuse(f"{where}: the archive", f"{declared:,} bytes uncompressed (declared)", "total",
                            " before decompressing it")
    if MANIFEST not in names:
        raise BundleError(f"{where}: no {MANIFEST} in the archive: not a CacheSaver bundle")
    raw_manifest = read_member(archive, archive.getinfo(MANIFEST), f"{where}: {MANIFEST}", limits, "manifest")
    budget = [limits.total - len(raw_manifest)]
    manifest = _manifest(raw_manifest, where)
    del raw_manifest
    entries = manifest["keys"]
    members = {entry["member"]: entry["key"] for entry in entries}
    for name in names:
        if name != MANIFEST and name not in members:
            raise BundleError(f"{where}: unexpected member {name!r}, not listed in the manifest (planted?); "
                              "refused without opening it")
    samples: dict[str, list[bytes]] = {}
    metas: dict[str, Optional[bytes]] = {}
    for entry in entries:
        key, member, hashes = entry["key"], entry["member"], entry["samples"]
        if member not in names:
            raise BundleError(f"{where}: key {key}: its member {member} is missing from the archive (removed)")
        lines: list[bytes] = []
        what = f"{where}: key {key} (member {member})"
        for i, line in enumerate(iter_lines(archive, archive.getinfo(member), what, limits, budget)):
            if i >= len(hashes):
                raise BundleError(f"{where}: key {key} holds more than {len(hashes)} samples, the number the "
                                  "manifest lists (a sample was added)")
            if sha256(line) != hashes[i]:
                raise BundleError(f"{where}: key {key} sample {i + 1}: SHA-256 mismatch (the sample was modified)")
            try:
                decode_sample(line, key=key, index=i)
            except CorruptSampleError as exc:
                raise BundleError(f"{where}: {exc}") from None
            lines.append(line)
        if len(lines) != len(hashes):
            raise BundleError(f"{where}: key {key} holds {len(lines)} samples but the manifest lists "
                              f"{len(hashes)} (a sample was removed or added)")
        meta = None if entry["meta"] is None else entry["meta"].encode("utf-8")
        if meta is not None and sha256(meta) != key:
            raise BundleError(f"{where}: key {key}: its canonical request (meta) hashes to {sha256(meta)}, not to "
                              "the key: the request or the key was edited, so its samples would answer another "
                              "request; refused")
        samples[key] = lines
        metas[key] = meta
    try:
        consumption = Consumption(manifest["consumption"]["namespaces"], run_ids=manifest["consumption"]["run_ids"],
                                  runs=manifest["consumption"].get("runs"))
    except ValueError as exc:
        raise BundleError(f"{where}: manifest {exc}") from None
    for namespace, keys in consumption.items():
        for key, count in keys.items():
            if key not in samples:
                raise BundleError(f"{where}: manifest consumption[{namespace!r}] names key {key}, which the bundle lacks")
            if count > len(samples[key]):
                raise BundleError(f"{where}: manifest consumption[{namespace!r}][{key}] = {count} but the bundle "
                                  f"holds {len(samples[key])} samples of that key")
    summary = summarize(samples, metas, consumption)
    if summary != manifest["summary"]:
        bad = sorted(f for f in set(summary) | set(manifest["summary"])
                     if summary.get(f) != manifest["summary"].get(f))
        raise BundleError(f"{where}: manifest summary field(s) {', '.join(bad)} do not match the samples (edited)")
    return BundleContents(samples, metas, consumption, manifest["versions"], summary,
                          content_sha256=manifest["content_sha256"])


def _manifest(raw: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"{where}: {MANIFEST} is not JSON ({exc}); refused") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{where}: {MANIFEST} is not a CacheSaver bundle manifest (format != {FORMAT!r})")
    if manifest.get("version") not in _READABLE:
        raise BundleError(f"{where}: bundle version {manifest.get('version')!r}; this CacheSaver reads version "
                          f"{VERSION}: upgrade cachesaver")
    claimed = manifest.pop("content_sha256", None)
    if not isinstance(claimed, str) or sha256(_canonical(manifest)) != claimed:
        raise BundleError(f"{where}: manifest content_sha256 does not match the manifest (edited); refused")
    manifest["content_sha256"] = claimed
    for field, kind in (("versions", dict), ("summary", dict), ("consumption", dict), ("keys", list)):
        if not isinstance(manifest.get(field), kind):
            raise BundleError(f"{where}: manifest field {field!r} must be a {kind.__name__}")
    consumption = manifest["consumption"]
    try:
        check_positions(consumption.get("namespaces"), "consumption.namespaces")
    except ValueError as exc:
        raise BundleError(f"{where}: manifest {exc}") from None
    if not isinstance(consumption.get("run_ids"), list) or not all(isinstance(r, str) for r in consumption["run_ids"]):
        raise BundleError(f"{where}: manifest consumption.run_ids must be a list of strings")
    seen_keys, seen_members = set(), set()
    for i, entry in enumerate(manifest["keys"]):
        if not isinstance(entry, dict):
            raise BundleError(f"{where}: manifest keys[{i}] must be an object")
        key, member, meta, hashes = entry.get("key"), entry.get("member"), entry.get("meta"), entry.get("samples")
        if not isinstance(key, str) or not key or key in seen_keys:
            raise BundleError(f"{where}: manifest keys[{i}].key must be a unique non-empty string")
        if not isinstance(member, str) or not _MEMBER.match(member) or member in seen_members:
            raise BundleError(f"{where}: manifest keys[{i}].member {member!r} (key {key}) is not a samples/NNNNNN.jsonl name")
        if meta is not None and not isinstance(meta, str):
            raise BundleError(f"{where}: manifest keys[{i}].meta (key {key}) must be a JSON string or null")
        if not isinstance(hashes, list) or not all(isinstance(h, str) and _HEX64.match(h) for h in hashes):
            raise BundleError(f"{where}: manifest keys[{i}].samples (key {key}) must be a list of SHA-256 hex digests")
        seen_keys.add(key)
        seen_members.add(member)
    return manifest
