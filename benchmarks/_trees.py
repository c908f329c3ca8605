"""Running a benchmark's child code against a source tree, for ``--against DIR`` comparisons.

A child runs in its own interpreter with ``PYTHONPATH`` set to the tree (its root and ``core``),
so "this tree" and another checkout are measured by the same script, each importing its own
engine. The child prints one JSON object on its last line of stdout.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Optional


def tree_env(tree: str) -> dict:
    """The environment that makes ``tree``'s packages the ones imported."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([tree, os.path.join(tree, "core")]))


def run_child(tree: str, code: str, *args: object) -> dict:
    """Run ``code`` with ``args`` under ``tree``; return the JSON object it printed last."""
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=tree_env(tree),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def trees(against: Optional[str]) -> list[tuple[str, str]]:
    """``[(label, path)]``: the tree holding this script, then ``against`` if given."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [("this tree", here)] + ([("--against", os.path.abspath(against))] if against else [])
