"""``n`` samples: the inner model's ``n`` where it has one, else k calls; invoke takes one."""
from __future__ import annotations

from langchain_core.messages import HumanMessage

from _lc_helpers import join, ns, sample_no
from _lc_plain_model import PlainHTTPChat

PROMPT = [HumanMessage("Give me ideas")]


def test_generate_with_n_is_one_call_with_n(make_chat, fake_server):
    chat = make_chat(n=3)
    result = chat.generate([PROMPT], metadata={"cachesaver_namespace": "A"})
    assert len({sample_no(g.message) for g in result.generations[0]}) == 3
    assert fake_server.request_count == 1 and fake_server.requests[0]["n"] == 3
    assert len({g.message.id for g in result.generations[0]}) == 3  # one id per generation


def test_invoke_takes_one_sample_even_with_n(make_chat, fake_server):
    chat = make_chat(n=3)
    chat.invoke(PROMPT, config=ns("A"))
    chat.invoke(PROMPT, config=ns("A"), n=5)
    assert [body["n"] for body in fake_server.requests] == [1, 1]


async def test_per_call_n_on_agenerate(make_chat, fake_server):
    chat = make_chat()
    result = await chat.agenerate([PROMPT, [HumanMessage("Other")]], n=2,
                                  metadata={"cachesaver_namespace": "A"})
    assert [len(g) for g in result.generations] == [2, 2]
    assert sorted(body["n"] for body in fake_server.requests) == [2, 2]


async def test_a_model_without_n_takes_k_concurrent_calls(make_chat, fake_server):
    chat = make_chat(inner=PlainHTTPChat(base_url=fake_server.base_url), n=3)
    result = await chat.agenerate([PROMPT], metadata={"cachesaver_namespace": "A"})
    assert len({sample_no(g.message) for g in result.generations[0]}) == 3
    assert fake_server.request_count == 3 and all("n" not in b for b in fake_server.requests)
    assert sum(g.message.usage_metadata["input_tokens"] for g in result.generations[0]) == fake_server.prompt_tokens
    merged = await chat.abatch([PROMPT] * 2, config=ns("B"))  # B reuses 2 of A's 3 samples
    assert fake_server.request_count == 3
    assert [sample_no(m) for m in merged] == [sample_no(g.message) for g in result.generations[0][:2]]


async def test_a_model_without_streaming_is_replayed_as_chunks(make_chat, fake_server):
    chat = make_chat(inner=PlainHTTPChat(base_url=fake_server.base_url))
    chunks = [c async for c in chat.astream(PROMPT, config=ns("A"))]
    assert len(chunks) >= 2 and chunks[-1].chunk_position == "last"
    assert join(chunks).content == (await chat.ainvoke(PROMPT, config=ns("B"))).content
    assert fake_server.request_count == 1


def test_a_failing_call_among_k_keeps_the_others(make_chat, fake_server):
    chat = make_chat(inner=PlainHTTPChat(base_url=fake_server.base_url), n=3)
    fake_server.fail_next(500)
    result = chat.generate([PROMPT], metadata={"cachesaver_namespace": "A"})
    assert len({sample_no(g.message) for g in result.generations[0]}) == 3
    assert fake_server.request_count == 4  # 3 calls, one failed, then one more for the missing sample
