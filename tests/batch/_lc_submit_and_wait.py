"""Child process of the LangChain restart test: submit a batch of misses through
``CacheSaverChatModel.abatch``, then wait (to be killed -9)."""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _lc_batch_helpers import make_chat  # noqa: E402

from cachesaver_langchain import cachesaver_config  # noqa: E402

chat = make_chat(sys.argv[2], sys.argv[1], batch_api={"window": 0.5, "poll": 30.0})
asyncio.run(chat.abatch([f"r{i}" for i in range(6)], config=cachesaver_config("ns")))
