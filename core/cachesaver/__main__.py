"""``python -m cachesaver`` is the ``cachesaver`` command."""
import sys

from .cli import main

sys.exit(main())
