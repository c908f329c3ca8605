"""The code blocks of docs/integrations/evals.md that the tests here run as written."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
from _snippets import ROOT, Block, blocks  # noqa: E402

EVALS_PAGE = "docs/integrations/evals.md"


README = "README.md"


def page_blocks(test_file: str) -> list[Block]:
    """The blocks of the evals page marked ``<!-- run-by: <test_file> -->``, in page order.

    The README's blocks marked for the same test are copies of some of them (checked here), so
    running the page's blocks runs the README's too."""
    found = [b for b in blocks(ROOT / EVALS_PAGE) if b.marker == "run-by" and b.why == test_file]
    readme = [b for b in blocks(ROOT / README) if b.marker == "run-by" and b.why == test_file]
    assert readme, f"{README} has no block for {test_file}"
    copies = {b.code for b in found}
    assert all(b.code in copies for b in readme), \
        f"{[b.where for b in readme if b.code not in copies]}: not a block of {EVALS_PAGE}"
    return found
