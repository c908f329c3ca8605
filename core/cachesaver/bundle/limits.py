"""How big a bundle may be, and reading its members without trusting what they claim.

A bundle comes from someone else, and a zip member can claim any size and decompress to far
more than its file (a zip bomb: 150 kB of deflate is 150 MB of zeros). So reading refuses, with
a :class:`~cachesaver.errors.BundleError` naming the member, its size, the limit and the
variable that raises it:

=================  ==========  ================================  =====================================
limit              default     what                              raise it with
=================  ==========  ================================  =====================================
one sample         16 MiB      one sample record (a line)        ``CACHESAVER_BUNDLE_MAX_SAMPLE_BYTES``
one key's member   256 MiB     all the samples of one key        ``CACHESAVER_BUNDLE_MAX_MEMBER_BYTES``
manifest           32 MiB      ``manifest.json`` (metadata)      ``CACHESAVER_BUNDLE_MAX_MANIFEST_BYTES``
whole bundle       1 GiB       every member, decompressed        ``CACHESAVER_BUNDLE_MAX_TOTAL_BYTES``
=================  ==========  ================================  =====================================

Each limit is checked twice: against the size the zip central directory declares
(``ZipInfo.file_size``), before anything is decompressed, and against the bytes actually
decompressed, counted while streaming (a member whose declared size lies is refused as it
inflates, never inflated whole). Members are read in chunks and split into samples as they
come, so refusing a bomb costs at most one sample limit of memory, not the archive's claimed
size. Only deflate and stored members are read: bzip2 and lzma decompress a whole chunk at a
time with no output bound. The writer refuses to make a bundle these limits would refuse.
"""
from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Iterator

from ..errors import BundleError

__all__ = ["Limits", "read_member", "iter_lines"]

_ENV = "CACHESAVER_BUNDLE_MAX_{}_BYTES"
_CHUNK = 1 << 16
_READABLE = (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED)


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


@dataclasses.dataclass(frozen=True)
class Limits:
    """The size limits of one read or write (defaults above; the environment may raise them)."""

    sample: int = 16 << 20
    member: int = 256 << 20
    manifest: int = 32 << 20
    total: int = 1 << 30

    @classmethod
    def current(cls) -> "Limits":
        """The defaults, each overridden by its ``CACHESAVER_BUNDLE_MAX_*_BYTES`` if set."""
        values = {}
        for field in dataclasses.fields(cls):
            name = _ENV.format(field.name.upper())
            text = os.environ.get(name)
            if text is None or not text.strip():
                continue
            try:
                value = int(text.strip().replace("_", ""))
            except ValueError:
                raise BundleError(f"{name}={text!r} is not a whole number of bytes; set it to e.g. "
                                  f"{getattr(cls(), field.name) * 2}") from None
            if value <= 0:
                raise BundleError(f"{name}={text!r} must be a positive number of bytes")
            values[field.name] = value
        return cls(**values)

    def refuse(self, what: str, size: str, which: str, how: str = "") -> BundleError:
        """The error for ``what`` being ``size`` against the limit ``which`` (a field name)."""
        limit = getattr(self, which)
        return BundleError(
            f"{what} is {size}, over the bundle limit of {_size(limit)} for {_LABELS[which]}; refused"
            f"{how}. If you trust this bundle, raise the limit: {_ENV.format(which.upper())}={limit * 4}"
        )

    def check_declared(self, info: zipfile.ZipInfo, what: str, which: str) -> None:
        """Refuse a member by what the central directory declares, before reading a byte."""
        if info.compress_type not in _READABLE:
            raise BundleError(f"{what} is compressed with zip method {info.compress_type}; bundles use "
                              "deflate only (other methods inflate without a bound); refused")
        if info.file_size > getattr(self, which):
            raise self.refuse(what, f"{info.file_size:,} bytes (declared)", which, _UNREAD)


_UNREAD = " before decompressing it"
_STOPPED = " (decompression stopped there, whatever size the archive declares)"
_LABELS = {"sample": "one sample", "member": "one key's samples", "manifest": "the manifest",
           "total": "the whole bundle"}


def _chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> Iterator[bytes]:
    try:
        with archive.open(info) as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    return
                yield chunk
    except BundleError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile raises many types (CRC, zlib, "encrypted", versions)
        raise BundleError(f"{what} is damaged ({type(exc).__name__}: {exc}); get a fresh copy of the bundle") from None


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str, limits: Limits, which: str) -> bytes:
    """The whole member (small ones: the manifest), refused once it inflates past ``which``."""
    limits.check_declared(info, what, which)
    limit = getattr(limits, which)
    parts, total = [], 0
    for chunk in _chunks(archive, info, what):
        total += len(chunk)
        if total > limit:
            raise limits.refuse(what, f"more than {limit:,} bytes", which, _STOPPED)
        parts.append(chunk)
    return b"".join(parts)


def iter_lines(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str, limits: Limits,
               budget: list[int]) -> Iterator[bytes]:
    """The member's lines (``b"\\n"``-separated, as ``data.split(b"\\n")``; none if empty),
    streamed: refused once a line passes the sample limit, the member the member limit, or
    everything read so far (``budget[0]``, decremented) the total limit."""
    limits.check_declared(info, what, "member")
    parts: list[bytes] = []  # the line being read, in pieces (no quadratic re-copying)
    size = total = 0
    for chunk in _chunks(archive, info, what):
        total += len(chunk)
        budget[0] -= len(chunk)
        if total > limits.member:
            raise limits.refuse(what, f"more than {limits.member:,} bytes", "member", _STOPPED)
        if budget[0] < 0:
            raise limits.refuse(f"{what}: the bundle", f"more than {limits.total:,} bytes", "total", _STOPPED)
        if b"\n" not in chunk:
            parts.append(chunk)
            size += len(chunk)
        else:
            first, *rest = chunk.split(b"\n")
            parts.append(first)
            line = b"".join(parts)
            if len(line) > limits.sample:
                break
            yield line
            yield from rest[:-1]
            parts, size = [rest[-1]], len(rest[-1])
        if size > limits.sample:
            break
    else:
        if total:
            yield b"".join(parts)
        return
    raise limits.refuse(f"{what}: a sample", f"more than {limits.sample:,} bytes", "sample", _STOPPED)
