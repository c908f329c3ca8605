"""Child process of the crash-window test: its batch's samples are appended, then it is killed
(SIGKILL) at the moment it would mark the first line stored in the journal."""
import asyncio
import os
import signal
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, os.path.dirname(__file__))

from _helpers import ask_all  # noqa: E402

import cachesaver_litellm  # noqa: E402
from cachesaver.stores.diskjournal import DiskJournal  # noqa: E402

original = DiskJournal.close_line


async def close_line(self, batch_id, custom_id, state, *args, **kwargs):
    if state == "stored":  # the samples are appended; the journal is about to say so
        os.kill(os.getpid(), signal.SIGKILL)
    return await original(self, batch_id, custom_id, state, *args, **kwargs)


DiskJournal.close_line = close_line


class _Server:
    base_url = sys.argv[2]


cachesaver_litellm.register(store=sys.argv[1], timeout=0.02, batch_api={"window": 0.05, "poll": 0.05})
asyncio.run(ask_all(_Server, [(f"r{i}", "ns", 2) for i in range(4)]))
