"""``cachesaver demo``: the demo's subcommand, plugged into the engine's CLI.

The engine's ``cachesaver`` command imports no adapter, so it cannot name the demo (which runs
through litellm and the ``cachesaver/`` provider). Instead this package declares itself in the
``cachesaver.commands`` entry-point group (see ``pyproject.toml``); the engine CLI loads every
command of that group and calls :func:`register` with its sub-command parsers. Importing this
module is cheap: litellm is imported only when the demo runs.
"""
from __future__ import annotations

import argparse

__all__ = ["register", "main"]

HELP = "run the offline demo: Tree-of-Thoughts and self-consistency on Game of 24"
#: What ``--help`` says, in plain text (this module's docstring is reStructuredText).
DESCRIPTION = ("Run the offline demo: Tree-of-Thoughts and self-consistency on Game of 24 through litellm and "
               "CacheSaver, against a local fake server (or a real model with --model), and show what was saved.")


def register(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add the ``demo`` sub-command to ``sub``; its ``func`` runs the demo and returns the exit code."""
    demo = sub.add_parser("demo", help=HELP, description=DESCRIPTION)
    add_arguments(demo)
    demo.set_defaults(func=_run)
    return demo


def add_arguments(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--cache", default="./.cachesaver-demo", help="cache directory (default ./.cachesaver-demo)")
    demo.add_argument("--puzzles", type=int, default=4, help="how many Game of 24 puzzles, 1 to 10 (default 4)")
    demo.add_argument("--model", default=None, help="a real litellm model (needs its API key); default: the local fake server")
    demo.add_argument("--chart", default="cachesaver-demo.png", help="where to write the savings chart (PNG)")
    demo.add_argument("--fresh", action="store_true",
                      help="delete the cache directory first (only one the demo created, unless --yes)")
    demo.add_argument("--yes", action="store_true", help="with --fresh: delete --cache even if the demo did not create it")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")


def _run(args: argparse.Namespace) -> int:
    from .runner import run_demo

    return run_demo(args)


def main(argv=None) -> int:
    """``python -m cachesaver_demo [options]``: the same demo without the engine's CLI."""
    parser = argparse.ArgumentParser(prog="cachesaver demo", description=DESCRIPTION)
    add_arguments(parser)
    return _run(parser.parse_args(argv))
