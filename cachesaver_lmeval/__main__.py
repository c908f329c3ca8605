"""``python -m cachesaver_lmeval ...``: lm-eval's CLI with the ``cachesaver`` model type registered."""
from __future__ import annotations

from lm_eval.__main__ import cli_evaluate

import cachesaver_lmeval  # noqa: F401  (registers --model cachesaver)

if __name__ == "__main__":
    cli_evaluate()
