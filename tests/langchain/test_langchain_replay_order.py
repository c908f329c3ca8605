"""Issue 21: eight ``ainvoke`` calls gathered in one namespace replay identically, run after run,
with request ids and without (issue order: LangChain reaches the wrapper in the order the calls
were issued)."""
from __future__ import annotations

import asyncio

import pytest

from _lc_helpers import ns, sample_no


@pytest.mark.parametrize("with_ids", [True, False], ids=["ids", "no-ids"])
async def test_gathered_ainvokes_replay_identically(make_chat, fake_server, tmp_path, with_ids):
    store = str(tmp_path / "replay")

    async def run() -> list[int]:
        chat = make_chat(store=store)
        try:
            replies = await asyncio.gather(*(chat.ainvoke("Name a colour.", config=ns("sc", f"r{i}" if with_ids else None))
                                             for i in range(8)))
        finally:
            await chat.aclose()
        return [sample_no(r) for r in replies]

    first = await run()
    assert sorted(first) == list(range(1, 9))
    calls = fake_server.request_count
    for replay in range(10):
        assert await run() == first, f"replay {replay}"
    assert fake_server.request_count == calls
