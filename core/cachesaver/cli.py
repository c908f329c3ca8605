"""The ``cachesaver`` command: the offline demo and tools to look after a cache.

    cachesaver demo [--cache DIR] [--puzzles N] [--model M]   what CacheSaver saves, in a minute
    cachesaver stats   --cache DIR|URL                        per model, namespace and key
    cachesaver inspect --cache DIR|URL KEY-PREFIX|--prompt TEXT
    cachesaver export  --cache DIR|URL FILE.jsonl[.gz]
    cachesaver import  --cache DIR|URL FILE.jsonl[.gz]
    cachesaver prune   --cache DIR|URL (--key PREFIX ... | --model NAME | --corrupt) [--dry-run]
    cachesaver clear   --cache DIR|URL --yes
    cachesaver serve-fake [--port P] [--seed S]               the local OpenAI-compatible server

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
    from .stores import open_store

    if spec.startswith(("redis://", "rediss://", "unix://")) or spec == "memory":
        return open_store(spec)
    if not os.path.exists(spec):
        if create:
            return open_store(spec)
        raise CLIError(f"no cache at {spec!r} (nothing was created); pass --cache with an existing directory")
    if not os.path.isdir(spec):
        raise CLIError(f"{spec!r} is a file, not a cache directory")
    if not os.path.exists(os.path.join(spec, "cache.db")):
        raise CLIError(f"{spec!r} is not a CacheSaver cache (no cache.db inside); check the path")
    return open_store(spec)


def _meta_of(raw: Optional[bytes]) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _model_of(meta: Any) -> str:
    if isinstance(meta, dict):
        for field in ("model", "model_name"):
            if isinstance(meta.get(field), str):
                return meta[field]
        params = meta.get("params")
        if isinstance(params, dict) and isinstance(params.get("model"), str):
            return params["model"]
    return "-"


def _preview(meta: Any, width: int = 60) -> str:
    if meta is None:
        return "-"
    prompt = meta.get("prompt", meta.get("messages", meta)) if isinstance(meta, dict) else meta
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        prompt = prompt[-1].get("content", prompt[-1])
    text = prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _console():
    from rich.console import Console

    # Piped output (logs, CI, tests) gets wide lines instead of rich's 80-column default.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


# -- commands --------------------------------------------------------------------------------
async def cmd_stats(args: argparse.Namespace) -> int:
    from rich.table import Table

    store = open_cache(args.cache)
    rows = []
    by_model: dict[str, list[int]] = {}
    try:
        async for key in store.iter_keys():
            n = await store.length(key)
            size = sum(len(r) for r in await store.read(key, 0, n))
            meta = _meta_of(await store.get_meta(key))
            model = _model_of(meta)
            rows.append((key, model, n, size, _preview(meta)))
            totals = by_model.setdefault(model, [0, 0, 0])
            totals[0] += 1
            totals[1] += n
            totals[2] += size
        ledger = [entry async for entry in store.iter_ledger()]
    finally:
        await store.aclose()
    console = _console()
    console.print(f"cache: {args.cache}: {len(rows)} keys, {sum(r[2] for r in rows)} samples, "
                  f"{sum(r[3] for r in rows):,} bytes")
    models = Table(title="per model")
    for col in ("model", "keys", "samples", "bytes"):
        models.add_column(col, justify="left" if col == "model" else "right")
    for model, (keys, samples, size) in sorted(by_model.items()):
        models.add_row(model, str(keys), str(samples), f"{size:,}")
    console.print(models)
    if ledger:
        spaces = Table(title="per namespace (shared runs)")
        for col in ("run_id", "namespace", "keys", "samples consumed"):
            spaces.add_column(col, justify="right" if col in ("keys", "samples consumed") else "left")
        grouped: dict[tuple[str, str], list[int]] = {}
        for run_id, namespace, _key, pos in ledger:
            g = grouped.setdefault((run_id, namespace), [0, 0])
            g[0] += 1
            g[1] += pos
        for (run_id, namespace), (keys, pos) in sorted(grouped.items()):
            spaces.add_row(run_id, namespace, str(keys), str(pos))
        console.print(spaces)
    else:
        console.print("per namespace: no shared-run ledgers stored (private runs keep theirs in memory)")
    keys = Table(title=f"per key (top {args.top} by samples)")
    for col in ("key", "model", "samples", "bytes", "prompt"):
        keys.add_column(col, justify="right" if col in ("samples", "bytes") else "left")
    for key, model, n, size, preview in sorted(rows, key=lambda r: (-r[2], r[0]))[: args.top]:
        keys.add_row(key[:12], model, str(n), f"{size:,}", preview)
    console.print(keys)
    return 0


async def cmd_inspect(args: argparse.Namespace) -> int:
    from .codec import decode_sample
    from .errors import CorruptSampleError

    store = open_cache(args.cache)
    try:
        matches = []
        async for key in store.iter_keys():
            if args.key and key.startswith(args.key):
                matches.append(key)
            elif args.prompt is not None:
                if args.prompt in _preview(_meta_of(await store.get_meta(key)), width=10**9):
                    matches.append(key)
        if not matches:
            raise CLIError("no key matches; list keys with `cachesaver stats`")
        if len(matches) > 1 and not args.all:
            raise CLIError(f"{len(matches)} keys match ({', '.join(m[:12] for m in matches[:5])}…); "
                           "give a longer prefix or --all")
        console = _console()
        for key in matches:
            n = await store.length(key)
            meta = _meta_of(await store.get_meta(key))
            console.rule(f"key {key}  ({n} samples)")
            console.print_json(orjson.dumps(meta).decode() if meta is not None else "null")
            for i, raw in enumerate(await store.read(key, 0, min(n, args.limit))):
                try:
                    record = decode_sample(raw, key=key, index=i)
                    text = record.data if isinstance(record.data, str) else orjson.dumps(record.data).decode()
                    console.print(f"[bold]#{i}[/bold] {text}")
                except CorruptSampleError as exc:
                    console.print(f"[red]#{i} {exc}[/red]")
            if n > args.limit:
                console.print(f"… {n - args.limit} more (use --limit)")
    finally:
        await store.aclose()
    return 0


async def cmd_export(args: argparse.Namespace) -> int:
    from .transfer import export_jsonl

    store = open_cache(args.cache)
    try:
        report = await export_jsonl(store, args.file, ledger=args.ledgers)
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
        print(f"  {key}")
    return 0


async def cmd_clear(args: argparse.Namespace) -> int:
    if not args.yes:
        raise CLIError("clear deletes every sample in the cache; add --yes to confirm")
    store = open_cache(args.cache)
    try:
        await store.clear()
    finally:
        await store.aclose()
    print(f"cleared {args.cache}")
    return 0


def cmd_serve_fake(args: argparse.Namespace) -> int:
    from .testing.server import serve_forever

    serve_forever(port=args.port, seed=args.seed, latency=args.latency)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cachesaver", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_cache(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--cache", default=DEFAULT_CACHE, help=f"cache directory or redis:// URL (default {DEFAULT_CACHE})")
        return p

    demo = sub.add_parser("demo", help="run the offline demo: Tree-of-Thoughts and self-consistency on Game of 24")
    demo.add_argument("--cache", default="./.cachesaver-demo", help="cache directory (default ./.cachesaver-demo)")
    demo.add_argument("--puzzles", type=int, default=4, help="how many Game of 24 puzzles (default 4)")
    demo.add_argument("--model", default=None, help="a real litellm model (needs its API key); default: the local fake server")
    demo.add_argument("--chart", default="cachesaver-demo.png", help="where to write the savings chart (PNG)")
    demo.add_argument("--fresh", action="store_true", help="clear the demo cache first")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=cmd_demo)

    stats = with_cache(sub.add_parser("stats", help="samples and sizes per model, namespace and key"))
    stats.add_argument("--top", type=int, default=20, help="keys to list (default 20)")
    stats.set_defaults(func=cmd_stats)

    inspect = with_cache(sub.add_parser("inspect", help="show the samples of one prompt"))
    inspect.add_argument("key", nargs="?", default=None, help="key or key prefix (see `stats`)")
    inspect.add_argument("--prompt", default=None, help="find keys whose prompt contains this text")
    inspect.add_argument("--limit", type=int, default=20, help="samples to show (default 20)")
    inspect.add_argument("--all", action="store_true", help="show every matching key")
    inspect.set_defaults(func=cmd_inspect)

    export = with_cache(sub.add_parser("export", help="write the cache as portable JSONL"))
    export.add_argument("file", help="output .jsonl or .jsonl.gz")
    export.add_argument("--ledgers", action="store_true", help="include shared-run ledgers")
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

    clear = with_cache(sub.add_parser("clear", help="remove every sample (asks for --yes)"))
    clear.add_argument("--yes", action="store_true", help="really clear")
    clear.set_defaults(func=cmd_clear)

    fake = sub.add_parser("serve-fake", help="serve the local OpenAI-compatible fake server")
    fake.add_argument("--port", type=int, default=0)
    fake.add_argument("--seed", type=int, default=0)
    fake.add_argument("--latency", type=float, default=0.0)
    fake.set_defaults(func=cmd_serve_fake)
    return parser


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
        print(f"cachesaver {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the CLI reports, it does not crash with a traceback
        from .errors import CacheSaverError, StoreError

        if isinstance(exc, CacheSaverError):
            print(f"cachesaver {args.command}: {exc}", file=sys.stderr)
            # A store that cannot be opened or written (corrupt, full, read-only, unreachable)
            # is a problem with what was passed to --cache: a usage error, like a missing path.
            return 2 if isinstance(exc, StoreError) else 1
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
