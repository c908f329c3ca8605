"""Helpers of the LangChain batch-mode tests (imported by module name, also by the child process)."""
from __future__ import annotations

import os
import re

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from langchain_openai import ChatOpenAI  # noqa: E402

from cachesaver_langchain import CacheSaverChatModel  # noqa: E402

#: Options that keep a test's batches quick: a short window, frequent polls.
QUICK = {"window": 0.1, "poll": 0.02, "max_poll": 0.05}
_SAMPLE = re.compile(r"\[sample (\d+) of ")


def make_chat(base_url: str, store: str, **kwargs) -> CacheSaverChatModel:
    """A CacheSaverChatModel over a real ChatOpenAI of the fake server, in batch mode."""
    kwargs.setdefault("batch_api", QUICK)
    inner = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="sk-test", max_retries=0)
    return CacheSaverChatModel(chat_model=inner, store=store, **kwargs)


def sample_no(text: str) -> int:
    """The fake server's sample number of a prompt (1-based), carried in the text."""
    found = _SAMPLE.findall(text)
    assert found, f"no sample tag in {text!r}"
    return int(found[0])
