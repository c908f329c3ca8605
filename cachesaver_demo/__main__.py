"""``python -m cachesaver_demo``: the demo without the engine's CLI."""
import sys

from .command import main

sys.exit(main())
