"""Move caches between stores as JSONL: a cache built on a laptop seeds a cluster, and back.

The file is portable text, never pickle (G7): UTF-8, one JSON object per line::

    {"format":"cachesaver-jsonl","version":1}                                   header
    {"key":K,"start":0,"meta":"<canonical request JSON>","samples":["<record>",...]}
    {"key":K,"start":1000,"samples":[...]}              a long list continues on more lines
    {"ledger":[run_id,namespace,key,position]}          shared-run ledgers, only if asked for

Each sample is the exact JSON record the store holds (see :mod:`cachesaver.codec`), written as
a JSON *string* so that export -> import -> export is byte-identical whatever the JSON library.
Keys come in sorted order, so the same cache always exports to the same bytes.

An export leaves the machine, so every exported key's canonical request is first given to the
secret scanner (:mod:`cachesaver.secrets`, G7): if it flags a credential, nothing is written and
:class:`~cachesaver.errors.SecretFoundError` names the key, the JSON path and the detector
(``allow=`` lets through paths that are not credentials). ``copy_store`` moves samples between
the user's own stores and does not scan.

Import appends only what the target lacks: if it already holds a prefix of a key's list, that
prefix is compared sample by sample and only the missing tail is appended, so importing a file
twice (or a newer export of a growing cache) never duplicates a sample. Import writes all or
nothing: a first, read-only pass over the whole file checks every line (format, records, gaps)
and compares every sample the target already holds, so a sample that differs from the one
stored at its index raises :class:`TransferConflictError` naming the key and index before the
first write. Only the second pass writes (the file is read twice, never held in memory; a
stream that cannot be re-read is spooled to a temporary file). A crash during the second pass
can leave some keys imported, each one's samples intact; importing again completes it.
Ledger positions only ever move forward.

``await export_jsonl("./.cachesaver", "cache.jsonl")``;
``await import_jsonl("redis://cluster:6379/0", "cache.jsonl")``;
``await copy_store("./.cachesaver", "redis://cluster:6379/0")`` (no file in between).
Paths ending in ``.gz`` are gzip-compressed. Don't import while workers append to the same keys
(the import would detect it and stop with a conflict).
"""
from __future__ import annotations

import gzip
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import IO, Any, AsyncIterator, Iterable, Optional, Union

import orjson

from .codec import decode_sample
from .errors import CacheSaverError, CorruptSampleError, SecretFoundError
from .opening import open_store
from .secrets import find_secrets_in_metas, refusal_message
from .stores import Store

__all__ = [
    "SampleApplier",
    "opened_store",
    "export_jsonl",
    "import_jsonl",
    "copy_store",
    "TransferReport",
    "TransferError",
    "TransferConflictError",
    "FORMAT",
    "VERSION",
]

log = logging.getLogger("cachesaver.transfer")

FORMAT = "cachesaver-jsonl"
VERSION = 1
#: Samples per line: bounds memory per line for keys with very long lists.
CHUNK = 1000

PathOrFile = Union[str, "os.PathLike[str]", IO[Any]]


class TransferError(CacheSaverError, ValueError):
    """The file is not a valid CacheSaver export (the message names the line and the field)."""


class TransferConflictError(TransferError):
    """The target already holds a *different* sample at an index the file also fills."""


@dataclass
class TransferReport:
    """What an export, import or copy did."""

    keys: int = 0                 # keys seen
    samples: int = 0              # samples read from the source
    samples_added: int = 0        # appended to the target (import/copy)
    samples_present: int = 0      # already in the target, identical (import/copy)
    ledger_entries: int = 0       # ledger lines written / applied


# -- export ----------------------------------------------------------------------------------
async def export_jsonl(
    store: Any, dest: PathOrFile, *, ledger: bool = False, keys: Optional[Iterable[str]] = None,
    allow: Iterable[str] = (),
) -> TransferReport:
    """Write ``store`` (a Store, path or URL) to ``dest`` (a path or an open file) as JSONL.

    ``ledger=True`` adds the shared-run ledger positions; ``keys`` limits the export; ``allow``:
    JSON paths (or ``*`` patterns) of request fields the secret scanner flags but that are not
    credentials. Raises :class:`~cachesaver.errors.SecretFoundError` (naming key, path and
    detector, never the value) before writing anything if the scanner flags a credential. A path
    is written to a temporary file first and renamed, so a failed export leaves no partial file.
    """
    report = TransferReport()
    async with opened_store(store) as source:
        wanted = sorted(set(keys)) if keys is not None else sorted({k async for k in source.iter_keys()})
        await _refuse_secrets(source, wanted, allow)
        with _writer(dest) as write:
            write(orjson.dumps({"format": FORMAT, "version": VERSION}) + b"\n")
            async for line in _lines(source, ledger, wanted, report):
                write(orjson.dumps(line) + b"\n")
    return report


async def _refuse_secrets(store: Store, keys: list[str], allow: Iterable[str]) -> None:
    metas = [(key, await store.get_meta(key)) for key in keys]
    findings = find_secrets_in_metas(metas, allow=allow)
    if findings:
        raise SecretFoundError(refusal_message(findings, "the export"), findings)


async def _lines(
    store: Store, ledger: bool, keys: Optional[Iterable[str]], report: TransferReport
) -> AsyncIterator[dict[str, Any]]:
    wanted = sorted(set(keys)) if keys is not None else sorted({k async for k in store.iter_keys()})
    for key in wanted:
        total = await store.length(key)
        if total == 0:
            continue
        report.keys += 1
        meta = await store.get_meta(key)
        start = 0
        while start < total:
            raws = await store.read(key, start, min(CHUNK, total - start))
            if not raws:
                break
            line: dict[str, Any] = {"key": key, "start": start}
            if start == 0:
                line["meta"] = None if meta is None else _text(meta, f"meta of key {key}")
            line["samples"] = [_checked(raw, key, start + i) for i, raw in enumerate(raws)]
            report.samples += len(raws)
            yield line
            start += len(raws)
    if ledger:
        chosen = set(wanted)
        entries = sorted([e async for e in store.iter_ledger()])
        for run_id, namespace, key, position in entries:
            if key in chosen:
                report.ledger_entries += 1
                yield {"ledger": [run_id, namespace, key, position]}


def _checked(raw: Any, key: str, index: int) -> str:
    """A stored record as text, after checking it is a CacheSaver record (never export junk)."""
    decode_sample(raw, key=key, index=index)
    return _text(raw, f"sample {index + 1} of key {key}")


def _text(raw: Any, what: str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptSampleError(f"{what} is not UTF-8 JSON; remove that key (cachesaver prune)") from None


# -- import ----------------------------------------------------------------------------------
async def import_jsonl(store: Any, source: PathOrFile, *, ledger: bool = True) -> TransferReport:
    """Add the samples of a JSONL export to ``store`` (a Store, path or URL).

    Only the samples the store lacks are appended (see the module docstring); ledger lines, if
    the file has them and ``ledger`` is true, move positions forward, never back.
    """
    report = TransferReport()
    async with opened_store(store) as target:
        with _replayable(source) as (first, second):
            checker = SampleApplier(target, TransferReport(), ledger)
            for lineno, obj in _parse(first):  # read only: any refusal comes before the first write
                await checker.check(obj, f"line {lineno}")
            applier = SampleApplier(target, report, ledger)
            for lineno, obj in _parse(second()):
                await applier.apply(obj, f"line {lineno}")
    return report


async def copy_store(source: Any, target: Any, *, ledger: bool = False) -> TransferReport:
    """Copy ``source`` into ``target`` (Stores, paths or URLs) with import's rules, no file."""
    report = TransferReport()
    async with opened_store(source) as src, opened_store(target) as dst:
        checker = SampleApplier(dst, TransferReport(), ledger, count_source=False)
        async for line in _lines(src, ledger, None, TransferReport()):  # all or nothing, as import
            await checker.check(line, f"key {line.get('key', '(ledger)')}")
        applier = SampleApplier(dst, report, ledger, count_source=False)
        async for line in _lines(src, ledger, None, report):
            await applier.apply(line, f"key {line.get('key', '(ledger)')}")
    return report


class SampleApplier:
    """Adds exported lines (a key's samples and meta, or a ledger entry) to a store, appending
    only what it lacks and refusing a sample that differs from the one stored at its index:
    what ``import_jsonl``, ``copy_store`` and bundle import share (never duplicates, G6)."""

    def __init__(self, store: Store, report: TransferReport, ledger: bool, count_source: bool = True) -> None:
        self.store, self.report, self.ledger = store, report, ledger
        self.count_source = count_source  # False when _lines() already counts what it reads
        self._keys: set[str] = set()
        # check(): per key, [samples the target holds, end of what earlier lines gave]
        self._planned: dict[str, list[int]] = {}

    async def check(self, obj: Any, where: str) -> None:
        """Everything :meth:`apply` would refuse for ``obj``, as if the earlier checked lines
        had been applied, writing nothing: the dry pass that makes an import all-or-nothing."""
        if not isinstance(obj, dict):
            raise TransferError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if "ledger" in obj:
            if self.ledger:
                _ledger_entry(obj["ledger"], where)
            return
        key, start, raws, _meta = _sample_line(obj, where)
        if key not in self._planned:
            self._planned[key] = [await self.store.length(key), 0]
        held, given = self._planned[key]
        if start > max(held, given):
            raise _gap(where, key, start, max(held, given), self.store)
        if max(start, held) < min(start + len(raws), given):
            raise TransferError(f"{where}: key {key}: samples from {max(start, held)} on were already given by an "
                                "earlier line of the file (the file was edited or concatenated); import each "
                                "export file on its own")
        await self._compare(key, start, raws[: max(0, held - start)], where, " Nothing was imported.")
        self._planned[key][1] = max(given, start + len(raws))

    async def _compare(self, key: str, start: int, raws: list[bytes], where: str, outcome: str) -> None:
        """Refuse if a sample of ``raws`` differs from the one the target holds at its index."""
        if not raws:
            return
        existing = await self.store.read(key, start, len(raws))
        for i, (old, new) in enumerate(zip(existing, raws)):
            if bytes(old) != new:
                raise TransferConflictError(
                    f"{where}: sample {start + i + 1} of key {key} differs between the file and "
                    f"{self.store.location or 'the target'}; the two caches diverged.{outcome} "
                    f"Import into an empty store, or delete that key from the target first"
                )

    async def apply(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise TransferError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if "ledger" in obj:
            if self.ledger:
                await self._ledger(obj["ledger"], where)
            return
        key, start, raws, meta = _sample_line(obj, where)
        store, report = self.store, self.report
        if self.count_source:
            if key not in self._keys:
                self._keys.add(key)
                report.keys += 1
            report.samples += len(raws)
        if meta is not None:
            stored = await store.get_meta(key)
            if stored is not None and stored != meta:
                log.warning("%s: meta of key %s differs from the target's; keeping the target's", where, key)
        have = await store.length(key)
        if start > have:
            raise _gap(where, key, start, have, store)
        overlap = min(have - start, len(raws))
        await self._compare(key, start, raws[:overlap], where, "")
        tail = raws[overlap:]
        report.samples_present += overlap
        if tail:
            at = await store.append(key, tail, meta)
            if at != start + overlap:
                raise TransferConflictError(
                    f"{where}: key {key} grew while importing (samples landed at {at}, expected "
                    f"{start + overlap}); stop the workers that write to the target and import again"
                )
            report.samples_added += len(tail)

    async def _ledger(self, entry: Any, where: str) -> None:
        run_id, namespace, key, position = _ledger_entry(entry, where)
        current, _ = await self.store.claim(run_id, namespace, key, 0, partial=True)
        if position > current:
            # Claiming moves the position forward (never past the samples that exist).
            await self.store.claim(run_id, namespace, key, position - current, partial=True)
        if self.count_source:
            self.report.ledger_entries += 1


def _ledger_entry(entry: Any, where: str) -> tuple[str, str, str, int]:
    if (not isinstance(entry, list) or len(entry) != 4 or not all(isinstance(x, str) for x in entry[:3])
            or isinstance(entry[3], bool) or not isinstance(entry[3], int) or entry[3] < 0):
        raise TransferError(f"{where}: 'ledger' must be [run_id, namespace, key, position >= 0]")
    return entry[0], entry[1], entry[2], entry[3]


def _gap(where: str, key: str, start: int, have: int, store: Store) -> TransferError:
    return TransferError(f"{where}: key {key} continues at sample {start + 1} but {store.location or 'the target'} "
                         f"holds only {have}; import the whole file, from its first line")


def _sample_line(obj: dict[str, Any], where: str) -> tuple[str, int, list[bytes], Optional[bytes]]:
    key, start, samples, meta = obj.get("key"), obj.get("start", 0), obj.get("samples"), obj.get("meta")
    if not isinstance(key, str) or not key:
        raise TransferError(f"{where}: 'key' must be a non-empty string")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise TransferError(f"{where}: 'start' must be an int >= 0, got {start!r}")
    if not isinstance(samples, list):
        raise TransferError(f"{where}: 'samples' must be a list of JSON records (strings)")
    if meta is not None and not isinstance(meta, str):
        raise TransferError(f"{where}: 'meta' must be a string of JSON or null")
    raws = []
    for i, sample in enumerate(samples):
        if not isinstance(sample, str):
            raise TransferError(f"{where}: samples[{i}] must be a string holding the JSON record")
        raw = sample.encode("utf-8")
        try:
            decode_sample(raw, key=key, index=start + i)
        except CorruptSampleError as exc:
            raise TransferError(f"{where}: {exc}") from None
        raws.append(raw)
    return key, start, raws, None if meta is None else meta.encode("utf-8")


def _parse(source: PathOrFile) -> Iterable[tuple[int, Any]]:
    """Yield ``(line number, object)``; the first line must be our header."""
    with _reader(source) as lines:
        header_seen = False
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise TransferError(f"line {lineno} is not JSON ({exc})") from None
            if not header_seen:
                if not isinstance(obj, dict) or obj.get("format") != FORMAT:
                    raise TransferError(
                        f"line {lineno}: not a CacheSaver export (expected the header "
                        f'{{"format":"{FORMAT}","version":{VERSION}}}); make one with export_jsonl()'
                    )
                if obj.get("version") != VERSION:
                    raise TransferError(
                        f"line {lineno}: export version {obj.get('version')!r}; this CacheSaver reads "
                        f"version {VERSION}: upgrade cachesaver to import it"
                    )
                header_seen = True
                continue
            yield lineno, obj
        if not header_seen:
            raise TransferError("the file is empty: expected a CacheSaver export")


# -- files and stores ------------------------------------------------------------------------
class opened_store:
    """``async with opened_store(spec) as store``: a store from what ``cache=`` takes, closed on
    exit if it was opened here (a Store object passed in stays open)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.owned = not isinstance(spec, Store)

    async def __aenter__(self) -> Store:
        self.store = open_store(self.spec)
        return self.store

    async def __aexit__(self, *exc: Any) -> None:
        if self.owned:
            await self.store.aclose()


class _writer:
    """Context manager giving ``write(bytes)`` for a path (atomic rename) or an open file."""

    def __init__(self, dest: PathOrFile) -> None:
        self.dest = dest

    def __enter__(self):
        dest = self.dest
        if isinstance(dest, (str, os.PathLike)):
            path = os.fspath(dest)
            folder = os.path.dirname(os.path.abspath(path))
            fd, self.tmp = tempfile.mkstemp(prefix=".export-", suffix=".tmp", dir=folder)
            raw = os.fdopen(fd, "wb")
            self.handle = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.endswith(".gz") else raw
            self.raw, self.path = raw, path
            return self.handle.write
        self.tmp = None
        if isinstance(dest, io.TextIOBase):
            return lambda data: dest.write(data.decode("utf-8"))
        if callable(getattr(dest, "write", None)):
            return dest.write
        raise TypeError(f"dest must be a path or a writable file, not {type(dest).__name__}")

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if self.tmp is None:
            return
        try:
            self.handle.close()
            if self.raw is not self.handle:
                self.raw.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


class _replayable:
    """``with _replayable(source) as (first, second)``: ``first`` to read once, then ``second()``
    to read the same lines again. A path is opened twice; an open file or other iterable is
    copied to a temporary file (in memory up to 8 MiB) while ``first`` is read."""

    def __init__(self, source: PathOrFile) -> None:
        self.source = source
        self.spool: Optional[IO[bytes]] = None

    def __enter__(self) -> tuple[Any, Any]:
        if isinstance(self.source, (str, os.PathLike)):
            return self.source, lambda: self.source
        self.spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)
        return self._copying(self.source, self.spool), self._rewound

    def _copying(self, source: Any, spool: IO[bytes]) -> Iterable[Any]:
        with _reader(source) as lines:
            for line in lines:
                data = line.encode("utf-8") if isinstance(line, str) else bytes(line)
                spool.write(data if data.endswith(b"\n") else data + b"\n")
                yield line

    def _rewound(self) -> IO[bytes]:
        assert self.spool is not None
        self.spool.seek(0)
        return self.spool

    def __exit__(self, *exc: Any) -> None:
        if self.spool is not None:
            self.spool.close()


class _reader:
    """Context manager iterating the lines (bytes or str) of a path or an open file."""

    def __init__(self, source: PathOrFile) -> None:
        self.source = source
        self.handle: Any = None  # a gzip or plain binary file, once opened

    def __enter__(self) -> Iterable[Any]:
        source = self.source
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no export file at {path!r}")
            self.handle = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
            return self.handle
        if hasattr(source, "__iter__"):
            return source  # type: ignore[return-value]
        raise TypeError(f"source must be a path or a readable file, not {type(source).__name__}")

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            self.handle.close()
