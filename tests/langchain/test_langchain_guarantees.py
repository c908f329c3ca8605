"""G1-G5 and G8 through invoke, ainvoke, abatch and astream, against the local fake server.

Every sample the fake server makes is tagged ``[sample k of model]``, k counting per prompt, so
sample identity is exact, and the server counts requests and the ``n`` it was asked for.
"""
from __future__ import annotations

import asyncio

import pytest

from cachesaver.runtime import get_host
from langchain_core.messages import HumanMessage

from _lc_helpers import join, ns, sample_no

PROMPT = "Tell me something"


def test_g1_fresh_samples_within_a_namespace_invoke(make_chat, fake_server):
    chat = make_chat()
    got = [sample_no(chat.invoke(PROMPT, config=ns("A"))) for _ in range(3)]
    assert len(set(got)) == 3
    assert fake_server.request_count == 3 and fake_server.n_asked == 3


async def test_g1_and_g3_abatch_of_identical_prompts_is_one_merged_call(make_chat, fake_server):
    chat = make_chat(batch_size=4, batch_timeout=1.0)
    out = await chat.abatch([PROMPT] * 4, config=ns("A"))
    assert len({sample_no(m) for m in out}) == 4  # distinct samples (G1)
    assert fake_server.request_count == 1 and fake_server.requests[0]["n"] == 4  # one call (G3)
    flags = [m.response_metadata["cachesaver"] for m in out]
    assert [f["cached"] for f in flags] == [False] * 4  # all billed here, each once (G8)
    assert [f["duplicated"] for f in flags] == [False, True, True, True]


async def test_g2_partial_hit_asks_only_for_the_missing_samples(make_chat, fake_server):
    chat = make_chat()
    first = await chat.agenerate([[HumanMessage(PROMPT)]], n=3, metadata={"cachesaver_namespace": "A"})
    assert fake_server.requests[-1]["n"] == 3
    more = await chat.agenerate([[HumanMessage(PROMPT)]], n=5, metadata={"cachesaver_namespace": "B"})
    assert fake_server.request_count == 2 and fake_server.requests[-1]["n"] == 2  # not 5
    a = [sample_no(g.message) for g in first.generations[0]]
    b = [sample_no(g.message) for g in more.generations[0]]
    assert b[:3] == a and len(set(b)) == 5
    assert [g.message.response_metadata["cachesaver"]["cached"] for g in more.generations[0]] == [
        True, True, True, False, False]


async def test_g3_one_call_across_namespaces_and_g8_billing(make_chat, fake_server):
    chat = make_chat(batch_size=3, batch_timeout=1.0)
    configs = [ns("A", "r1"), ns("B", "r2"), ns("C", "r3")]
    out = await chat.abatch([PROMPT] * 3, config=configs)
    assert fake_server.request_count == 1 and fake_server.requests[0]["n"] == 1
    assert len({sample_no(m) for m in out}) == 1  # every namespace starts at sample 0
    flags = [m.response_metadata["cachesaver"] for m in out]
    assert [f["cached"] for f in flags] == [False, True, True]  # billed to the first claimer only
    assert [f["duplicated"] for f in flags] == [False, True, True]
    # usage_metadata is what each response was billed: the call's tokens once, zero elsewhere
    billed = [m.usage_metadata for m in out]
    assert billed[0]["input_tokens"] == fake_server.prompt_tokens
    assert billed[0]["output_tokens"] == fake_server.completion_tokens
    assert billed[1] == billed[2] == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


async def test_g8_usage_shares_of_a_merged_call_add_up(make_chat, fake_server):
    chat = make_chat(batch_size=3, batch_timeout=1.0)
    out = await chat.abatch([PROMPT] * 3, config=ns("A"))
    assert fake_server.request_count == 1
    assert sum(m.usage_metadata["input_tokens"] for m in out) == fake_server.prompt_tokens
    assert sum(m.usage_metadata["output_tokens"] for m in out) == fake_server.completion_tokens
    assert [m.usage_metadata["input_tokens"] > 0 for m in out] == [True, False, False]


async def test_g4_new_instance_replays_with_zero_calls(make_chat, fake_server, tmp_path):
    store = str(tmp_path / "shared")
    first = make_chat(store=store)
    seq = [("A", PROMPT), ("A", PROMPT), ("B", PROMPT), ("A", "other prompt")]
    run1 = [sample_no(await first.ainvoke(p, config=ns(n))) for n, p in seq]
    run1_stream = sample_no(join([c async for c in first.astream("streamed", config=ns("A"))]))
    first.close()
    calls = fake_server.request_count
    second = make_chat(store=store)
    run2 = [sample_no(await second.ainvoke(p, config=ns(n))) for n, p in seq]
    run2_stream = sample_no(join([c async for c in second.astream("streamed", config=ns("A"))]))
    assert run2 == run1 and run2_stream == run1_stream
    assert fake_server.request_count == calls  # zero model calls
    assert run1[0] != run1[1] and run1[2] == run1[0]


async def test_g4_request_ids_order_samples_inside_a_batch(make_chat, fake_server):
    chat = make_chat(batch_size=3, batch_timeout=1.0)
    out = await chat.abatch([PROMPT] * 3, config=[ns("A", "c"), ns("A", "a"), ns("A", "b")])
    got = [sample_no(m) for m in out]
    # the smallest request id takes the first sample of the call, whatever the input order
    assert got[1] < got[2] < got[0]


async def test_g5_failed_call_stores_nothing_and_the_next_attempt_calls_again(make_chat, fake_server):
    chat = make_chat(batch_size=3, batch_timeout=1.0)
    fake_server.fail_next(500)
    results = await chat.abatch([PROMPT] * 3, config=ns("A"), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)  # the error reached every waiter
    assert fake_server.request_count == 1 and chat.stats.failed_calls == 1
    assert await chat.pipeline.store.length(_only_key(chat)) == 0  # nothing stored
    again = await chat.ainvoke(PROMPT, config=ns("A"))
    assert fake_server.request_count == 2 and sample_no(again) >= 1
    assert again.response_metadata["cachesaver"]["cached"] is False  # position 0 was not consumed


async def test_g5_cut_stream_stores_nothing(make_chat, fake_server, tmp_path):
    store = str(tmp_path / "s")
    chat = make_chat(store=store)
    fake_server.cut_stream_next()
    with pytest.raises(Exception):
        async for _ in chat.astream(PROMPT, config=ns("A")):
            pass
    full = join([c async for c in chat.astream(PROMPT, config=ns("A"))])
    assert fake_server.request_count == 2
    replay = make_chat(store=store).invoke(PROMPT, config=ns("A"))
    assert replay.content == full.content and fake_server.request_count == 2  # one whole sample


def _only_key(chat) -> str:
    async def keys():
        return [k async for k in chat.pipeline.store.iter_keys()]

    found = get_host().run(keys())
    return found[0] if found else "no-key"


async def test_a_cancelled_caller_takes_no_sample_and_costs_no_call(make_chat, fake_server):
    chat = make_chat(batch_timeout=30.0)  # the miss waits in the batch until close() flushes it
    task = asyncio.create_task(chat.ainvoke(PROMPT, config=ns("A")))
    while chat.stats.ns("A").requests == 0:  # until the engine holds the request
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await chat.aclose()  # finishes in-flight work: the batch finds nobody waiting
    assert fake_server.request_count == 0


def test_sync_entry_points_refuse_to_wait_on_the_engine_loop(make_chat, fake_server):
    """On the engine's own loop a sync miss would wait for itself: refused. A hit never waits
    (it is served on the calling thread), so it works even there."""
    chat = make_chat()
    first = chat.invoke(PROMPT, config=ns("A"))
    host = get_host()

    async def nested(prompt):
        return chat.invoke(prompt, config=ns("B"))

    assert sample_no(host.submit(nested(PROMPT)).result()) == sample_no(first)
    with pytest.raises(RuntimeError, match="cachesaver's own engine loop"):
        host.submit(nested("a prompt nobody asked yet")).result()
    assert fake_server.request_count == 1
