"""Issue 26: ``cachesaver --help`` and every sub-command's ``--help`` open with a one-line
description in plain text. Before, the top level showed the module docstring's RST markup
(````cachesaver````) and sub-commands showed no description at all."""
from __future__ import annotations

import argparse
import re

from cachesaver.cli import build_parser
from cachesaver_demo.command import main as demo_main

RST = re.compile(r"``|:(func|class|meth|mod|data):`")


def _parsers(parser: argparse.ArgumentParser, path: str = "cachesaver"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_command_has_a_one_line_plain_description():
    seen = dict(_parsers(build_parser()))
    assert {"cachesaver", "cachesaver stats", "cachesaver serve-fake", "cachesaver bundle create",
            "cachesaver demo"} <= set(seen)
    for path, parser in seen.items():
        description = parser.description
        assert description and "\n" not in description, path
        assert not RST.search(description), (path, description)
        for action in parser._actions:
            assert not (action.help and RST.search(action.help)), (path, action.help)
    assert seen["cachesaver"].description == ("Look after a CacheSaver cache (stats, inspect, export, bundles), run "
                                              "the demo or the fake server.")
    assert seen["cachesaver stats"].description == "Samples and sizes per model; ledgers summed (details on request)."


def test_python_m_cachesaver_demo_help_is_plain(capsys):
    try:
        demo_main(["--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "Run the offline demo: Tree-of-Thoughts" in out and "``" not in out
