"""Child process of the two-process test: asks 4 questions in batch mode and prints the answers."""
import asyncio
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, os.path.dirname(__file__))

from _helpers import ask_all, texts  # noqa: E402

import cachesaver_litellm  # noqa: E402


class _Server:
    base_url = sys.argv[2]


cachesaver_litellm.register(store=sys.argv[1], timeout=0.02, batch_api={"window": 0.5, "poll": 0.05})
results = asyncio.run(ask_all(_Server, [(f"r{i}", "ns", 2) for i in range(4)]))
print(json.dumps([texts(r) for r in results]), flush=True)
