"""The code blocks of docs/integrations/evals.md that the tests here run as written."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
from _snippets import ROOT, Block, blocks  # noqa: E402

EVALS_PAGE = "docs/integrations/evals.md"


def page_blocks(test_file: str) -> list[Block]:
    """The blocks of the evals page marked ``<!-- run-by: <test_file> -->``, in page order."""
    return [b for b in blocks(ROOT / EVALS_PAGE) if b.marker == "run-by" and b.why == test_file]
