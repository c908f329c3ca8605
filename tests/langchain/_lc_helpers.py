"""Small helpers shared by the LangChain adapter tests."""
from __future__ import annotations

import re
from typing import Any

from cachesaver_langchain import cachesaver_config

_SAMPLE = re.compile(r"\[sample (\d+) of ")


def sample_no(message: Any) -> int:
    """The fake server's sample number carried in a message (text or tool arguments).

    The server numbers samples per prompt (and sampling parameters): two messages for the same
    request are the same sample iff their numbers match; across requests compare whole texts.
    """
    text = message if isinstance(message, str) else str(message.content) + str(getattr(message, "tool_calls", ""))
    found = _SAMPLE.findall(text)
    assert found, f"no sample tag in {text!r}"
    return int(found[0])


def ns(namespace: str, request_id: str | None = None) -> dict:
    return cachesaver_config(namespace, request_id)


def join(chunks: list) -> Any:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full
