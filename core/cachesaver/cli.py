"""The ``cachesaver`` command: the offline demo and tools to look after a cache.

    cachesaver demo [--cache DIR] [--puzzles N] [--model M]   what CacheSaver saves, in a minute
                                                              (from the cachesaver_demo package)
    cachesaver stats   --cache DIR|URL [--by-run] [--detail]  per model; ledgers; largest keys
    cachesaver inspect --cache DIR|URL KEY-PREFIX|--prompt TEXT [--json]
    cachesaver export  --cache DIR|URL FILE.jsonl[.gz] [--allow PATH]
    cachesaver import  --cache DIR|URL FILE.jsonl[.gz]
    cachesaver prune   --cache DIR|URL (--key PREFIX ... | --model NAME | --corrupt) [--dry-run]
    cachesaver clear   --cache DIR|URL --yes
    cachesaver migrate-keys --cache DIR|URL --model NAME [--key PREFIX ...] [--move] [--dry-run]
                                                              engine keys from before models were keyed
    cachesaver serve-fake [--port P] [--seed S]               the local OpenAI-compatible server
    cachesaver batches --cache DIR|URL                         batch mode's provider batches, with cost
    cachesaver batches collect (ID | --all) --cache DIR|URL    store the answers of a dead process's batch
    cachesaver batches cancel ID --yes --cache DIR|URL         cancel a batch at the provider
    cachesaver bundle create --cache DIR|URL (--run-id RUN | --consumption FILE.json) -o OUT [--allow PATH]
    cachesaver bundle merge A B ... -o OUT [--allow PATH]     several bundles into one
    cachesaver bundle import BUNDLE --cache DIR|URL           extend a published experiment
    cachesaver verify BUNDLE [--sha256 HEX]                   every digest; exit 2 if anything fails

``stats`` and ``inspect`` also take a bundle file as ``--cache``. ``export`` and ``bundle``
refuse requests in which the secret scanner (``cachesaver.secrets``) flags a credential, naming
the key and JSON path; ``--allow PATH`` lets through a path that is not a credential.
``inspect`` shows what the scanner flags as ``***``. Stored text (keys, models, prompts,
samples, namespaces, a bundle's summary) is printed through ``display.printable``: control
characters show as ``\x1b``-style escapes, never reach the terminal raw.

Read-only commands never create anything: a missing or foreign directory is an error.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, Optional, Sequence

import orjson

__all__ = ["main"]

DEFAULT_CACHE = "./.cachesaver"


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


# -- opening caches --------------------------------------------------------------------------
def open_cache(spec: str, *, create: bool = False):
    """Open the store at ``spec`` without creating a directory unless ``create``."""
    from .opening import open_store

    if spec.startswith(("redis://", "rediss://", "unix://")) or spec == "memory":
        return open_store(spec)
    if not os.path.exists(spec):
        if create:
            return open_store(spec)
        raise CLIError(f"no cache at {spec!r} (nothing was created); pass --cache with an existing directory")
    if not os.path.isdir(spec):
        from .bundle import is_bundle_file

        if is_bundle_file(spec):  # a bundle: opened read-only and verified (cachesaver.bundle)
            return open_store(spec)
        raise CLIError(f"{spec!r} is a file, not a cache directory or a CacheSaver bundle")
    if not os.path.exists(os.path.join(spec, "cache.db")):
        raise CLIError(f"{spec!r} is not a CacheSaver cache (no cache.db inside); check the path")
    return open_store(spec)


def _shown(spec: str) -> str:
    """``--cache`` as it may be printed: a URL loses its password, token or ``?password=`` (G7)."""
    from .stores.urls import redact_url

    return redact_url(spec)


def _meta_of(raw: Optional[bytes]) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _model_of(meta: Any) -> str:
    from .display import request_model

    return request_model(meta)


def _preview(meta: Any, width: Optional[int] = 60) -> str:
    from .display import one_line, request_prompt

    return one_line(request_prompt(meta), width) if meta is not None else "-"


def _safe(text: Any, newlines: bool = False) -> str:
    """Stored text as it may be printed (control characters escaped, ``display.printable``)."""
    from .display import printable

    return printable(str(text), newlines=newlines)


def _cell(text: Any) -> Any:
    """Stored text as a rich table cell: escaped, and never read as rich markup."""
    from rich.text import Text

    return Text(_safe(text))


def _console():
    from rich.console import Console

    # Piped output (logs, CI, tests) gets wide lines instead of rich's 80-column default.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


# -- commands --------------------------------------------------------------------------------
async def cmd_stats(args: argparse.Namespace) -> int:
    """A few lines by default (totals, per model, the ledgers summed); tables on request."""
    from rich.table import Table

    store = open_cache(args.cache)
    # Computed by the store in bounded memory: totals per model, and only the --top largest keys.
    try:
        totals = await store.key_totals(args.top if args.detail else 0)
        ledger = [entry async for entry in store.iter_ledger()]
    finally:
        await store.aclose()
    by_model = totals.by_model
    keys, samples, size_total = totals.keys, totals.samples, totals.bytes
    rows = [(key, _model_of(_meta_of(raw)), n, size, _meta_of(raw)) for key, n, size, raw in totals.largest]
    console = _console()
    console.print(f"cache: {_shown(args.cache)}: {keys} keys, {samples} samples, "
                  f"{size_total:,} bytes", soft_wrap=True)
    models = Table(title="per model")
    for col in ("model", "keys", "samples", "bytes"):
        models.add_column(col, justify="left" if col == "model" else "right")
    for model, (keys, samples, size) in sorted(by_model.items()):
        models.add_row(_cell(model), str(keys), str(samples), f"{size:,}")
    console.print(models)
    by_run: dict[str, list] = {}
    grouped: dict[tuple[str, str], list[int]] = {}
    for run_id, namespace, _key, pos in ledger:
        g = grouped.setdefault((run_id, namespace), [0, 0])
        g[0] += 1
        g[1] += pos
        r = by_run.setdefault(run_id, [set(), 0])
        r[0].add(namespace)
        r[1] += pos
    if ledger:
        from .display import plural

        namespaces = {namespace for _run, namespace in grouped}
        console.print(f"shared-run ledgers: {plural(len(by_run), 'run')}, {plural(len(namespaces), 'namespace')}, "
                      f"{plural(sum(r[1] for r in by_run.values()), 'sample')} consumed "
                      f"({plural(len(grouped), 'run × namespace ledger')}: --by-run)", soft_wrap=True)
    else:
        console.print("shared-run ledgers: none stored (private runs keep theirs in memory)", soft_wrap=True)
    if args.by_run and grouped:
        spaces = Table(title="per run and namespace")
        for col in ("run_id", "namespace", "keys", "samples consumed"):
            spaces.add_column(col, justify="right" if col in ("keys", "samples consumed") else "left")
        for (run_id, namespace), (keys, pos) in sorted(grouped.items()):
            spaces.add_row(_cell(run_id), _cell(namespace), str(keys), str(pos))
        console.print(spaces)
    if args.detail:
        largest = Table(title=f"per key (top {args.top} by samples)")
        for col in ("key", "model", "samples", "bytes", "prompt"):
            largest.add_column(col, justify="right" if col in ("samples", "bytes") else "left")
        from .secrets import mask_secrets

        for key, model, n, size, meta in sorted(rows, key=lambda r: (-r[2], r[0]))[: args.top]:
            # What the secret scanner flags is shown as *** here too, as in inspect (G7).
            largest.add_row(_cell(key[:12]), _cell(model), str(n), f"{size:,}", _cell(_preview(mask_secrets(meta))))
        console.print(largest)
    elif keys:
        console.print("largest keys and their prompts: --detail", soft_wrap=True)
    return 0


async def cmd_inspect(args: argparse.Namespace) -> int:
    """The samples of the matching key(s): plain text for people, JSON lines with ``--json``.

    Text numbers samples from 1 (``#1`` is the first sample, as the fake server's "sample 1"
    and the offline-miss errors count); ``--json``'s ``index`` is the 0-based position in the
    sample list, as the store, bundles and ``CorruptSampleError`` number it (a data format).
    Output is printed as is (never wrapped), so it can be piped to grep, less or jq. Several
    matches are listed, one per line, unless ``--all`` asks for every one's samples. What the
    secret scanner flags in a request is shown as ``***``, there and in the samples (G7).
    """
    from .codec import decode_sample
    from .display import sample_text
    from .errors import CorruptSampleError
    from .secrets import masker_for

    store = open_cache(args.cache)
    try:
        matches = []
        wanted = " ".join(args.prompt.split()) if args.prompt is not None else None
        async for key in store.iter_keys():
            if args.key and key.startswith(args.key):
                matches.append((key, _meta_of(await store.get_meta(key))))
            elif wanted is not None:
                meta = _meta_of(await store.get_meta(key))
                if wanted in _preview(meta, width=None):
                    matches.append((key, meta))
        if not matches:
            raise CLIError("no key matches; list keys with `cachesaver stats --detail`")
        matches.sort(key=lambda m: m[0])
        masks = {key: masker_for(meta) for key, meta in matches}
        matches = [(key, masks[key](meta)) for key, meta in matches]
        out = _Escaping(sys.stdout)
        if len(matches) > 1 and not args.all:
            if not args.json:
                out.write(f"{len(matches)} keys match; give a longer key prefix, or --all to show every one:\n")
            for key, meta in matches:
                n = await store.length(key)
                if args.json:
                    _json_line(out, {"key": key, "model": _model_of(meta), "samples": n,
                                     "prompt": _preview(meta, width=None)})
                else:
                    out.write(f"{key[:16]}  {_model_of(meta)}  {n} samples  {_preview(meta, width=80)}\n")
            return 0
        for number, (key, meta) in enumerate(matches):
            n = await store.length(key)
            shown = min(n, args.limit)
            if not args.json:
                out.write(("\n" if number else "") + f"key {key}  model {_model_of(meta)}  {n} samples\n")
                out.write(f"prompt: {_preview(meta, width=None if args.full else 200)}\n")
            for i, raw in enumerate(await store.read(key, 0, shown)):
                try:
                    record = decode_sample(raw, key=key, index=i)
                except CorruptSampleError as exc:
                    if args.json:
                        _json_line(out, {"key": key, "index": i, "error": str(exc)})
                    else:
                        out.write(f"#{i + 1} (unreadable) {exc}\n")
                    continue
                data = masks[key](record.data)  # a sample may echo the request
                text = sample_text(data)
                if args.json:
                    _json_line(out, {"key": key, "index": i, "model": _model_of(meta), "text": text,
                                     "prompt_tokens": record.prompt_tokens,
                                     "completion_tokens": record.completion_tokens, "cost": record.cost,
                                     "sample": data})
                else:
                    out.write(f"#{i + 1} " + text.replace("\n", "\n   ") + "\n")
            if n > shown and not args.json:
                out.write(f"… {n - shown} more (use --limit)\n")
    finally:
        await store.aclose()
    return 0


class _Escaping:
    """``write`` for ``inspect``: stored text reaches stdout with its control characters escaped
    (newlines kept, so multi-line samples read as before); ``json_line`` writes a JSON line whose
    strings escape them too (orjson escapes C0; C1 and DEL become ``\\u0080``-style escapes)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        self.stream.write(_safe(text, newlines=True))

    def json_line(self, obj: Any) -> None:
        from .display import printable

        self.stream.write(printable(orjson.dumps(obj).decode(), json=True) + "\n")


def _json_line(out: _Escaping, obj: Any) -> None:
    out.json_line(obj)


async def cmd_export(args: argparse.Namespace) -> int:
    from .transfer import export_jsonl

    store = open_cache(args.cache)
    try:
        report = await export_jsonl(store, args.file, ledger=args.ledgers, allow=args.allow or ())
    finally:
        await store.aclose()
    print(f"exported {report.keys} keys, {report.samples} samples, {report.ledger_entries} ledger entries to {args.file}")
    return 0


async def cmd_import(args: argparse.Namespace) -> int:
    from .transfer import import_jsonl

    if not os.path.exists(args.file):
        raise CLIError(f"no file {args.file!r} to import")
    store = open_cache(args.cache, create=True)
    try:
        report = await import_jsonl(store, args.file)
    finally:
        await store.aclose()
    print(f"imported {report.keys} keys: {report.samples_added} samples added, "
          f"{report.samples_present} already present, {report.ledger_entries} ledger entries")
    return 0


async def cmd_prune(args: argparse.Namespace) -> int:
    from .codec import decode_sample
    from .errors import CorruptSampleError

    if not (args.key or args.model or args.corrupt):
        raise CLIError("say what to prune: --key PREFIX, --model NAME or --corrupt")
    store = open_cache(args.cache)
    doomed = []
    try:
        async for key in store.iter_keys():
            if args.key and any(key.startswith(p) for p in args.key):
                doomed.append(key)
            elif args.model and _model_of(_meta_of(await store.get_meta(key))) == args.model:
                doomed.append(key)
            elif args.corrupt:
                n = await store.length(key)
                try:
                    for i, raw in enumerate(await store.read(key, 0, n)):
                        decode_sample(raw, key=key, index=i)
                except CorruptSampleError:
                    doomed.append(key)
        removed = 0
        if not args.dry_run:
            for key in doomed:
                removed += await store.delete(key)
    finally:
        await store.aclose()
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(doomed)} keys" + ("" if args.dry_run else f" ({removed} samples)"))
    for key in doomed:
        print(f"  {_safe(key)}")
    return 0


async def cmd_migrate_keys(args: argparse.Namespace) -> int:
    """Carry engine samples keyed before models were keyed (key policy 1) over to the keys with
    ``--model`` (:mod:`cachesaver.migrate`)."""
    from .migrate import migrate_keys

    keys = None
    if args.key:
        store = open_cache(args.cache)
        try:
            keys = [key async for key in store.iter_keys() if any(key.startswith(p) for p in args.key)]
        finally:
            await store.aclose()
        if not keys:
            raise CLIError("no key matches --key; list keys with `cachesaver stats --detail`")
    report = await migrate_keys(open_cache(args.cache), args.model, keys=keys, move=args.move,
                                dry_run=args.dry_run)
    verb = "would carry over" if args.dry_run else ("moved" if args.move else "copied")
    print(f"{verb} {len(report.moved)} keys ({report.samples} samples) to keys with model {args.model!r}")
    for old, new, count in report.moved:
        print(f"  {_safe(old[:16])} -> {_safe(new[:16])}  {count} samples")
    if report.already_keyed:
        print(f"left alone: {report.already_keyed} keys whose request already names a model")
    if report.target_taken:
        print(f"left alone: {len(report.target_taken)} keys whose new key already holds samples")
    if report.no_request:
        print(f"left alone: {len(report.no_request)} keys without a stored request")
    return 0


async def cmd_clear(args: argparse.Namespace) -> int:
    if not args.yes:
        raise CLIError("clear deletes every sample in the cache; add --yes to confirm")
    store = open_cache(args.cache)
    try:
        await store.clear()
    finally:
        await store.aclose()
    print(f"cleared {_shown(args.cache)}")
    return 0


def cmd_serve_fake(args: argparse.Namespace) -> int:
    from .testing.server import serve_forever

    serve_forever(port=args.port, seed=args.seed, latency=args.latency, batch_delay=args.batch_delay,
                  quiet=args.quiet)
    return 0


async def _cmd_batches(args: argparse.Namespace) -> int:
    from .batchapi import listing

    if args.batches_command == "collect":
        return await listing.cmd_collect(args, open_cache, _console(), CLIError)
    if args.batches_command == "cancel":
        return await listing.cmd_cancel(args, open_cache, _console(), CLIError)
    return await listing.cmd_batches(args, open_cache, _console())


def _add_batches_command(sub: Any, with_cache: Any) -> None:
    batches = with_cache(sub.add_parser("batches", help="provider batches of batch mode: pending, done, failed, cost"))
    batches.set_defaults(func=_cmd_batches, batches_command=None)
    actions = batches.add_subparsers(dest="batches_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        # --cache after the action too (the parent's default stands unless it is given here).
        p.add_argument("--cache", default=argparse.SUPPRESS, help="cache directory or redis:// URL")
        p.add_argument("--api-base", default=None,
                       help="the provider endpoint (default: the one the batch was submitted to); the API key "
                            "is read from the environment as the provider's library reads it (OPENAI_API_KEY)")

    collect = actions.add_parser("collect", help="store the answers of batches whose submitting process is gone")
    collect.add_argument("batch", nargs="?", default=None, help="a batch id (prefix) or the provider's batch id")
    collect.add_argument("--all", action="store_true", help="every batch with open lines")
    collect.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a batch to end (default 0)")
    common(collect)
    cancel = actions.add_parser("cancel", help="cancel a batch at the provider (asks for --yes)")
    cancel.add_argument("batch", help="a batch id (prefix) or the provider's batch id")
    cancel.add_argument("--yes", action="store_true", help="really cancel")
    cancel.add_argument("--wait", type=float, default=60.0,
                        help="seconds to wait for the cancellation to end the batch (default 60)")
    common(cancel)


# -- commands from other packages (the demo) -------------------------------------------------
#: Entry-point group through which other packages add sub-commands. The engine imports no
#: adapter, so commands that need one (``demo`` runs through litellm) live in their own package
#: and register here: ``[project.entry-points."cachesaver.commands"] demo = "pkg.mod:register"``,
#: where ``register(subparsers)`` adds the sub-command and sets its ``func``.
COMMANDS_GROUP = "cachesaver.commands"

#: Commands the README promises, with what to do when no installed package provides them.
_EXPECTED = {
    "demo": "the demo ships in the cachesaver_demo package of cachesaver-integrations; "
            "(re)install it so its entry point is registered: pip install -e \".[demo]\"",
}


def _add_plugin_commands(sub: "argparse._SubParsersAction") -> None:
    from importlib.metadata import entry_points

    seen = set(sub.choices)
    for ep in entry_points(group=COMMANDS_GROUP):
        if ep.name in seen:
            continue  # the same distribution found twice on the path, or a clash: first wins
        seen.add(ep.name)
        try:
            ep.load()(sub)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break every command
            _add_missing(sub, ep.name, f"could not load {ep.value!r} ({type(exc).__name__}: {exc})")
    for name, fix in _EXPECTED.items():
        if name not in seen:
            _add_missing(sub, name, f"no installed package provides it; {fix}")


def _add_missing(sub: "argparse._SubParsersAction", name: str, why: str) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise CLIError(why)

    # Accept whatever options the real command would take (no prefix chars: all positional).
    missing = sub.add_parser(name, help=f"(unavailable: {why.split(';')[0]})", add_help=False, prefix_chars="\0")
    missing.add_argument("rest", nargs="*")
    missing.set_defaults(func=fail)


async def cmd_bundle_create(args: argparse.Namespace) -> int:
    from .bundle import Consumption, consumption_of_runs, render_summary, write_bundle

    if bool(args.run_id) == bool(args.consumption):
        raise CLIError("say what the run consumed: --run-id RUN (a shared run, repeatable) or "
                       "--consumption FILE.json (saved with Consumption.save)")
    store = open_cache(args.cache)
    try:
        if args.run_id:
            consumption = await consumption_of_runs(store, args.run_id)
        else:
            if not os.path.isfile(args.consumption):
                raise CLIError(f"no consumption file {args.consumption!r}")
            consumption = Consumption.load(args.consumption)
        contents = await write_bundle(store, consumption, args.output, allow=args.allow or ())
    finally:
        await store.aclose()
    print(f"wrote {args.output}: {len(contents.samples)} keys, {contents.sample_count} samples, "
          f"{os.path.getsize(args.output):,} bytes")
    print(f"sha256 {contents.sha256}")
    print(_safe(render_summary(contents.summary), newlines=True))
    return 0


def cmd_bundle_merge(args: argparse.Namespace) -> int:
    from .bundle import merge_bundles, render_summary

    contents = merge_bundles(args.bundles, args.output, allow=args.allow or ())
    print(f"merged {len(args.bundles)} bundles into {args.output}: {len(contents.samples)} keys, "
          f"{contents.sample_count} samples, {os.path.getsize(args.output):,} bytes")
    print(f"sha256 {contents.sha256}")
    print(_safe(render_summary(contents.summary), newlines=True))
    return 0


async def cmd_bundle_import(args: argparse.Namespace) -> int:
    from .bundle import import_bundle

    if not os.path.isfile(args.bundle):
        raise CLIError(f"no bundle file {args.bundle!r}")
    store = open_cache(args.cache, create=True)
    try:
        report = await import_bundle(args.bundle, store)
    finally:
        await store.aclose()
    print(f"imported {report.keys} keys: {report.samples_added} samples added, "
          f"{report.samples_present} already present")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .bundle import render_summary, verify_bundle
    from .errors import BundleError

    try:
        contents = verify_bundle(args.bundle, sha256=args.sha256)
    except BundleError as exc:
        print(f"cachesaver verify: FAILED: {_safe(exc)}", file=sys.stderr)
        return 2
    print(f"OK {args.bundle}: {len(contents.samples)} keys, {contents.sample_count} samples, every SHA-256 matches")
    print(f"sha256 {contents.sha256}")
    print(_safe("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(contents.versions.items()))))
    print(_safe(render_summary(contents.summary), newlines=True))
    return 0


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cachesaver", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_cache(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--cache", default=DEFAULT_CACHE, help=f"cache directory or redis:// URL (default {DEFAULT_CACHE})")
        return p

    stats = with_cache(sub.add_parser("stats", help="samples and sizes per model; ledgers summed (details on request)"))
    stats.add_argument("--by-run", action="store_true", help="also list every run × namespace ledger")
    stats.add_argument("--detail", action="store_true", help="also list the largest keys with their prompts")
    stats.add_argument("--top", type=int, default=20, help="keys to list with --detail (default 20)")
    stats.set_defaults(func=cmd_stats)

    inspect = with_cache(sub.add_parser("inspect", help="show the samples of one prompt as text (--json: JSON lines)"))
    inspect.add_argument("key", nargs="?", default=None, help="key or key prefix (see `stats --detail`)")
    inspect.add_argument("--prompt", default=None, help="find keys whose prompt contains this text")
    inspect.add_argument("--limit", type=int, default=20, help="samples to show per key (default 20)")
    inspect.add_argument("--all", action="store_true", help="show the samples of every matching key")
    inspect.add_argument("--json", action="store_true", help="one JSON object per line (for jq and scripts)")
    inspect.add_argument("--full", action="store_true", help="show whole prompts, not their first 200 characters")
    inspect.set_defaults(func=cmd_inspect)

    export = with_cache(sub.add_parser("export", help="write the cache as portable JSONL"))
    export.add_argument("file", help="output .jsonl or .jsonl.gz")
    export.add_argument("--ledgers", action="store_true", help="include shared-run ledgers")
    _add_allow(export)
    export.set_defaults(func=cmd_export)

    imp = with_cache(sub.add_parser("import", help="add the samples of a JSONL export (never duplicates)"))
    imp.add_argument("file", help="input .jsonl or .jsonl.gz")
    imp.set_defaults(func=cmd_import)

    prune = with_cache(sub.add_parser("prune", help="remove some keys"))
    prune.add_argument("--key", action="append", help="key prefix to remove (repeatable)")
    prune.add_argument("--model", help="remove every key of this model")
    prune.add_argument("--corrupt", action="store_true", help="remove keys holding values CacheSaver did not write")
    prune.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    prune.set_defaults(func=cmd_prune)

    migrate = with_cache(sub.add_parser(
        "migrate-keys", help="carry engine samples keyed before models were keyed over to keys with the model"))
    migrate.add_argument("--model", required=True, help="the model_id the pipeline declares, e.g. gpt-4o-mini")
    migrate.add_argument("--key", action="append", help="only keys with this prefix (repeatable)")
    migrate.add_argument("--move", action="store_true", help="delete each old key once its samples are copied")
    migrate.add_argument("--dry-run", action="store_true", help="list, change nothing")
    migrate.set_defaults(func=cmd_migrate_keys)

    clear = with_cache(sub.add_parser("clear", help="remove every sample (asks for --yes)"))
    clear.add_argument("--yes", action="store_true", help="really clear")
    clear.set_defaults(func=cmd_clear)

    _add_bundle_commands(sub, with_cache)

    fake = sub.add_parser(
        "serve-fake", help="serve the local OpenAI-compatible fake server (no key, no network)",
        description="Serve a fake OpenAI-compatible /v1/chat/completions on 127.0.0.1 until Ctrl-C. Prints its "
                    "base URL (use it as OPENAI_BASE_URL / api_base, with any API key), logs one line per request "
                    "on stderr, and answers GET /stats with its counters as JSON (requests, samples_generated, "
                    "tokens): a replay served from the cache leaves them unchanged.")
    from .testing.server import add_serve_arguments

    add_serve_arguments(fake)
    _add_batches_command(sub, with_cache)
    fake.set_defaults(func=cmd_serve_fake)
    _add_plugin_commands(sub)
    _describe_subcommands(parser)
    return parser


#: ``cachesaver --help``'s description, in plain text (the module docstring is reStructuredText).
DESCRIPTION = "Look after a CacheSaver cache (stats, inspect, export, bundles), run the demo or the fake server."


def _describe_subcommands(parser: argparse.ArgumentParser) -> None:
    """Give every sub-command (nested ones, and those of other packages) its one-line help as
    the description its own ``--help`` shows, where it has none."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, child in action.choices.items():
            if child.description is None and helps.get(name):
                text = str(helps[name])
                child.description = text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
            _describe_subcommands(child)


def _add_bundle_commands(sub: Any, with_cache: Any) -> None:
    bundle = sub.add_parser("bundle", help="publish exactly the samples a run consumed (create, merge, import)")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")
    create = with_cache(bsub.add_parser("create", help="write the samples a run consumed to one bundle file"))
    create.add_argument("--run-id", action="append", help="a shared run whose ledger is in the cache (repeatable)")
    create.add_argument("--consumption", help="a JSON file saved from `await pipeline.consumption()`")
    create.add_argument("-o", "--output", required=True, help="the bundle file to write (e.g. paper.csbundle)")
    _add_allow(create)
    create.set_defaults(func=cmd_bundle_create)
    merge = bsub.add_parser("merge", help="combine several bundles into one")
    merge.add_argument("bundles", nargs="+", help="bundle files")
    merge.add_argument("-o", "--output", required=True, help="the bundle file to write")
    _add_allow(merge)
    merge.set_defaults(func=cmd_bundle_merge)
    imp = with_cache(bsub.add_parser("import", help="add a bundle's samples to a cache (never duplicates)"))
    imp.add_argument("bundle", help="bundle file")
    imp.set_defaults(func=cmd_bundle_import)

    verify = sub.add_parser("verify", help="check every digest of a bundle; exit 2 if anything fails")
    verify.add_argument("bundle", help="bundle file")
    verify.add_argument("--sha256", default=None, help="the file digest the author published")
    verify.set_defaults(func=cmd_verify)


def _json_path(text: str) -> str:
    if not text.startswith("$"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON path; paths start with '$' "
                                         "(e.g. '$.params.extra_body.session_hint'), as the refusal names them")
    return text


def _add_allow(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow", action="append", metavar="PATH", type=_json_path,
                   help="a JSON path (or pattern with *) in the requests that the secret scanner flags but "
                        "that is not a credential, e.g. '$.params.extra_body.session_hint' (repeatable)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "inspect" and not args.key and args.prompt is None:
        print("cachesaver inspect: give a key prefix or --prompt TEXT", file=sys.stderr)
        return 2
    try:
        result = args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except CLIError as exc:
        print(f"cachesaver {args.command}: {_safe(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the CLI reports, it does not crash with a traceback
        from .errors import CacheSaverError, StoreError

        if isinstance(exc, CacheSaverError):
            # Errors name keys and fields of stored (maybe foreign) data: escaped as well.
            print(f"cachesaver {args.command}: {_safe(exc)}", file=sys.stderr)
            # A store that cannot be opened or written (corrupt, full, read-only, unreachable)
            # is a problem with what was passed to --cache: a usage error, like a missing path.
            return 2 if isinstance(exc, StoreError) else 1
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
