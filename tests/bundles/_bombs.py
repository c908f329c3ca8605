"""Hostile bundles built the way an attacker would: a valid manifest, a valid seal, and one
member (or the manifest) that inflates far past what the file's size suggests.

Deflate is streamed in 1 MiB chunks, so building a 300 MB bomb takes < 1 s and little memory.
"""
from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from typing import Iterable, Optional

import orjson

from cachesaver.bundle.summary import summarize
from cachesaver.codec import encode_sample

SEAL = b"cachesaver-bundle-sha256:"
MEMBER = "samples/000000.jsonl"
KEY = "k" * 64
MiB = 1 << 20


#: One valid sample record: a bundle holding only it verifies (the padded manifest aside).
RECORD = encode_sample("an answer")


def _manifest(samples: list[str], pad: int = 0) -> Iterable[bytes]:
    summary = summarize({KEY: [RECORD]}, {KEY: None}, {})
    body = {"format": "cachesaver-bundle", "version": 1, "versions": {}, "summary": summary,
            "consumption": {"run_ids": [], "namespaces": {}},
            "keys": [{"key": KEY, "member": MEMBER, "meta": None, "samples": samples}]}
    body["content_sha256"] = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    yield orjson.dumps(body)
    spaces = b" " * MiB
    for _ in range(pad // MiB):
        yield spaces


def _zeros(size: int) -> Iterable[bytes]:
    chunk = bytes(MiB)
    for _ in range(size // MiB):
        yield chunk


def _member(archive: zipfile.ZipFile, name: str, chunks: Iterable[bytes]) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w") as fh:
        for chunk in chunks:
            fh.write(chunk)


def _sealed(data: bytes) -> bytes:
    head = data[:-64]
    return head + hashlib.sha256(head).hexdigest().encode()


def _declare(data: bytes, name: str, size: int) -> bytes:
    """The archive with ``name``'s uncompressed size in the central directory set to ``size``."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        at = archive.start_dir  # the central directory's first entry
    while True:
        name_len = struct.unpack("<H", data[at + 28: at + 30])[0]
        if data[at + 46: at + 46 + name_len] == name.encode():
            return data[:at + 24] + struct.pack("<I", size) + data[at + 28:]
        extra, comment = struct.unpack("<HH", data[at + 30: at + 34])
        at += 46 + name_len + extra + comment


def write_bomb(path, *, member_bytes: int = 0, manifest_pad: int = 0, declared: Optional[int] = None) -> bytes:
    """A sealed bundle whose one key's member is ``member_bytes`` zeros (one enormous "sample")
    and whose manifest is followed by ``manifest_pad`` bytes of whitespace; ``declared``
    forges the member's size in the central directory. Returns the file's bytes."""
    with zipfile.ZipFile(path, "w", compresslevel=1) as archive:
        _member(archive, MEMBER, _zeros(member_bytes) if member_bytes else [RECORD])
        _member(archive, "manifest.json", _manifest([hashlib.sha256(RECORD).hexdigest()], manifest_pad))
        archive.comment = SEAL + b"0" * 64
    with open(path, "rb") as fh:
        data = fh.read()
    return forge(path, data, declared)


def forge(path, data: bytes, declared: Optional[int] = None) -> bytes:
    """Write ``data`` to ``path`` with the member's declared size forged (if given), resealed."""
    if declared is not None:
        data = _declare(data, MEMBER, declared)
    data = _sealed(data)
    with open(path, "wb") as fh:
        fh.write(data)
    return data


#: Run in a fresh interpreter: verify the bundle, report the outcome and the peak RSS (KiB).
PROBE = """
import json, resource, sys
import cachesaver.bundle, cachesaver.bundle.format, cachesaver.bundle.store
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    cachesaver.bundle.verify_bundle(sys.argv[1])
    outcome = "accepted"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {exc}"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "baseline_kib": base, "peak_kib": peak}))
"""
