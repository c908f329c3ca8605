"""Issue 22, item 4 through LangChain: a ``CacheSaverChatModel`` bounds the inner calls it has in
flight (``max_concurrent_calls``), measured at the upstream server."""
from __future__ import annotations

import pytest

from cachesaver.testing.server import FakeOpenAIServer

from _lc_helpers import ns


async def test_inner_calls_in_flight_are_bounded(make_chat, make_inner):
    with FakeOpenAIServer(seed=6, latency=0.2) as slow:
        chat = make_chat(make_inner(base_url=slow.base_url), max_concurrent_calls=3, batch_timeout=0.05)
        out = await chat.abatch([f"question {i}" for i in range(12)], config=ns("a"))
        assert len(out) == 12 and slow.request_count == 12  # a miss each: one call per prompt
        assert 2 <= slow.peak_in_flight <= 3  # before: 12 at once


def test_bad_bounds_are_refused_naming_the_field(make_chat):
    from pydantic import ValidationError

    # pydantic reports the engine's InvalidRequestError raised by the model's validator
    with pytest.raises(ValidationError, match="max_fanout must be an int >= 1"):
        make_chat(max_fanout=0)
