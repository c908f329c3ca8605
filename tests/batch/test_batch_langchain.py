"""Batch mode through LangChain: ``CacheSaverChatModel(batch_api=...)`` over a real ChatOpenAI,
whose own OpenAI client uploads, creates, polls and downloads at the fake server (issue 24)."""
from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time

import pytest
from _lc_batch_helpers import QUICK, make_chat, sample_no
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field, ValidationError

from cachesaver.batchapi import BatchLineError, BatchUnsupportedError
from cachesaver.errors import InvalidRequestTypeError
from cachesaver.stores import DiskStore
from cachesaver_langchain import CacheSaverChatModel, cachesaver_config

HERE = os.path.dirname(__file__)
#: litellm's batch prices for gpt-4o-mini (its cost map), per token.
BATCH_IN, BATCH_OUT = 7.5e-08, 3e-07


def _journal(store_path):
    store = DiskStore(store_path)
    try:
        return asyncio.run(store.batch_journal().batches())
    finally:
        store.close()


def test_abatch_with_partial_hits_across_namespaces_becomes_one_batch_of_missing_samples(batch_server, store_path):
    # One engine batch per wave and a window long enough for it, even on a loaded machine
    # (a key's second engine batch would wait for the first one's provider batch).
    chat = make_chat(batch_server.base_url, store_path, batch_size=4096, batch_timeout=0.3,
                     batch_api={"window": 1.0, "poll": 0.02, "max_poll": 0.05})
    old = [f"question {i}" for i in range(20)]
    new = [f"new question {i}" for i in range(10)]
    # invoke takes one sample: a prompt listed k times in a namespace asks for k distinct samples.
    wave2 = ([(p, "arm-a") for p in old * 2] + [(p, "arm-b") for p in old * 3]
             + [(p, "arm-b") for p in new * 3] + [(p, "arm-c") for p in new])

    async def run():
        first = await chat.abatch(old, config=cachesaver_config("arm-a"))
        assert batch_server.batches.created == 1 and batch_server.batches.line_ns() == [1] * 20
        second = await chat.abatch([p for p, _ in wave2], config=[cachesaver_config(ns) for _, ns in wave2])
        return first, second

    try:
        first, second = asyncio.run(run())
        stats = chat.stats()
    finally:
        chat.close()
    # One more batch, asking only what is missing, each key once: old keys 2 more (arm-a wants
    # samples 2-3, arm-b 1-3 with 1 stored: merged), new keys 3 (arm-b 1-3, arm-c 1: merged).
    assert batch_server.batches.created == 2
    assert sorted(batch_server.batches.line_ns()[20:]) == [2] * 20 + [3] * 10
    assert batch_server.request_count == 0  # nothing went to the interactive endpoint
    # G1, exact identity: per (namespace, prompt) the samples 1..k, none twice; another
    # namespace is handed the same sample 1 as arm-a was.
    got = collections.defaultdict(list)
    for prompt, message in zip(old, first):
        got["arm-a", prompt].append(message.content)
    for (prompt, ns), message in zip(wave2, second):
        got[ns, prompt].append(message.content)
    for (ns, prompt), texts in got.items():
        wanted = 3 if (ns, prompt[:3]) != ("arm-c", "new") else 1
        assert sorted(sample_no(t) for t in texts) == list(range(1, wanted + 1)), (ns, prompt, texts)
        assert len(set(texts)) == len(texts)
    for prompt, message in zip(old, first):
        assert [t for t in got["arm-b", prompt] if sample_no(t) == 1] == [message.content]
    # G8: every generated sample billed to exactly one message.
    flags = [m.response_metadata["cachesaver"]["cached"] for m in first + second]
    assert flags.count(False) == batch_server.batches.samples_generated == 20 + 40 + 30
    # Honest money: billed at litellm's batch price for gpt-4o-mini (half the interactive one).
    billed = sum(c.cost_billed for c in stats.namespaces.values())
    tokens_in = sum(c.prompt_tokens_billed for c in stats.namespaces.values())
    tokens_out = sum(c.completion_tokens_billed for c in stats.namespaces.values())
    assert billed == pytest.approx(tokens_in * BATCH_IN + tokens_out * BATCH_OUT) and billed > 0


def test_invoke_then_agenerate_n_in_batch_mode_asks_only_the_missing_samples(batch_server, store_path):
    chat = make_chat(batch_server.base_url, store_path, n=3)
    try:
        first = chat.invoke("only one", config=cachesaver_config("one"))  # a sync caller simply waits
        result = asyncio.run(chat.agenerate([[HumanMessage("only one")]], n=3, metadata={"cachesaver_namespace": "two"}))
    finally:
        chat.close()
    assert batch_server.batches.line_ns() == [1, 2] and batch_server.request_count == 0
    texts = [g.text for g in result.generations[0]]
    assert [sample_no(t) for t in texts] == [1, 2, 3] and texts[0] == first.content  # another namespace: from 1


class Answer(BaseModel):
    """An answer with a score."""

    answer: str = Field(description="the answer")
    score: int = Field(description="a score")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_structured_output_and_tools_go_into_the_lines_as_chatopenai_sends_them(batch_server, store_path):
    chat = make_chat(batch_server.base_url, store_path)
    structured = chat.with_structured_output(Answer)  # ChatOpenAI's default: json_schema, parse()
    tools = chat.bind_tools([add], tool_choice="add")

    async def run():
        return await asyncio.gather(structured.abatch(["a", "b"], config=cachesaver_config("A")),
                                    tools.abatch(["c", "d"], config=cachesaver_config("A")))

    try:
        answers, calls = asyncio.run(run())
        replayed = structured.batch(["a", "b"], config=cachesaver_config("B"))
    finally:
        chat.close()
    assert batch_server.batches.created == 1 and batch_server.request_count == 0
    bodies = {body["messages"][0]["content"]: body for _, _, body in batch_server.batches.lines}
    for prompt in ("a", "b"):
        assert bodies[prompt]["response_format"]["type"] == "json_schema"
        assert bodies[prompt]["response_format"]["json_schema"]["name"] == "Answer"
    for prompt in ("c", "d"):
        assert bodies[prompt]["tools"][0]["function"]["name"] == "add"
    assert all(isinstance(a, Answer) for a in answers) and replayed == answers
    assert [m.tool_calls[0]["name"] for m in calls] == ["add", "add"]


def test_a_restart_collects_the_pending_batch_instead_of_submitting_again(batch_server, store_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "_lc_submit_and_wait.py"), store_path,
                              batch_server.base_url], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (os.path.exists(store_path) and any(b.provider_batch for b, _ in _journal(store_path))):
            assert time.monotonic() < deadline and child.poll() is None, "the child did not submit"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    [(record, counts)] = _journal(store_path)
    assert record.state == "submitted" and counts["open"] == 6 and batch_server.batches.created == 1
    assert "sk-test" not in repr(record)  # no credential in the journal (G7)

    chat = make_chat(batch_server.base_url, store_path)
    try:
        messages = asyncio.run(chat.abatch([f"r{i}" for i in range(6)], config=cachesaver_config("ns")))
    finally:
        chat.close()
    assert batch_server.batches.created == 1  # collected, not submitted again
    assert batch_server.batches.samples_generated == 6 and batch_server.request_count == 0
    assert [sample_no(m.content) for m in messages] == [1] * 6
    assert [m.response_metadata["cachesaver"]["cached"] for m in messages] == [False] * 6  # billed here, once
    [(record, counts)] = _journal(store_path)
    assert record.state == "completed" and counts["stored"] == 6 and counts["open"] == 0


def test_failed_lines_fail_exactly_their_waiters_and_asking_again_resubmits_them(batch_server, store_path):
    chat = make_chat(batch_server.base_url, store_path)
    prompts = [f"p{i}" for i in range(8)]

    async def run():
        batch_server.batches.fail_lines_next([1, 4, 6])
        results = await chat.abatch(prompts, config=cachesaver_config("ns"), return_exceptions=True)
        failed_lines = {body["messages"][0]["content"] for i, (_, _, body) in enumerate(batch_server.batches.lines)
                        if i in (1, 4, 6)}
        retried = await chat.abatch(sorted(failed_lines), config=cachesaver_config("ns"))
        return results, failed_lines, retried

    try:
        results, failed_lines, retried = asyncio.run(run())
    finally:
        chat.close()
    failed = {p for p, r in zip(prompts, results) if isinstance(r, BaseException)}
    assert failed == failed_lines and len(failed) == 3  # G5: exactly the waiters of those lines
    assert all(isinstance(r, BatchLineError) for r in results if isinstance(r, BaseException))
    assert batch_server.batches.created == 2 and batch_server.batches.line_ns()[8:] == [1] * 3
    assert [sample_no(m.content) for m in retried] == [1] * 3
    assert batch_server.batches.samples_generated == 8  # nothing of the failed lines was stored


def test_a_lost_creation_reply_is_never_paid_twice_asking_again_finds_the_batch(batch_server, store_path):
    """The provider created the batch but its reply was lost: the OpenAI SDK's own retry would
    create (and bill) a second batch. Creation is sent once; the waiters fail with a
    ConnectionError saying so, and asking again finds the batch by its input file and collects
    it: one batch, each sample generated once."""
    from langchain_openai import ChatOpenAI

    inner = ChatOpenAI(model="gpt-4o-mini", base_url=batch_server.base_url, api_key="sk-test")  # SDK retries on
    chat = CacheSaverChatModel(chat_model=inner, store=store_path, batch_api=QUICK)
    prompts = [f"l{i}" for i in range(3)]
    batch_server.batches.lose_create_reply_next()
    try:
        lost = asyncio.run(chat.abatch(prompts, config=cachesaver_config("ns"), return_exceptions=True))
        assert all(isinstance(r, ConnectionError) for r in lost), lost
        again = asyncio.run(chat.abatch(prompts, config=cachesaver_config("ns")))
    finally:
        chat.close()
    assert batch_server.batches.created == 1 and batch_server.batches.samples_generated == 3
    assert [sample_no(m.content) for m in again] == [1] * 3
    [(record, counts)] = _journal(store_path)
    assert record.state == "completed" and counts["stored"] == 3


def test_an_expired_batch_resubmits_only_its_unanswered_lines(batch_server, store_path):
    chat = make_chat(batch_server.base_url, store_path)
    batch_server.batches.expire_next(keep=2)
    try:
        messages = asyncio.run(chat.abatch([f"e{i}" for i in range(5)], config=cachesaver_config("ns")))
    finally:
        chat.close()
    assert [sample_no(m.content) for m in messages] == [1] * 5
    assert batch_server.batches.created == 2 and len(batch_server.batches.line_ns()) == 5 + 3
    assert batch_server.batches.samples_generated == 5


def test_inner_models_without_a_batch_api_are_refused_at_construction(batch_server, store_path):
    from langchain_core.language_models import FakeListChatModel

    with pytest.raises(ValidationError, match="inner model is a FakeListChatModel, which has no batch API"):
        CacheSaverChatModel(chat_model=FakeListChatModel(responses=["x"]), store=store_path, batch_api=True)
    with pytest.raises(InvalidRequestTypeError, match="batch_api: .*'wndow'"):
        make_chat(batch_server.base_url, store_path, batch_api={"wndow": 1.0})
    # Interactive mode still takes any chat model.
    CacheSaverChatModel(chat_model=FakeListChatModel(responses=["x"]), store=store_path).close()


def test_a_call_chatopenai_sends_to_the_responses_api_is_refused_before_anything_is_sent(batch_server, store_path):
    from langchain_openai import ChatOpenAI

    inner = ChatOpenAI(model="gpt-4o-mini", base_url=batch_server.base_url, api_key="sk-test", max_retries=0,
                       use_responses_api=True)
    chat = CacheSaverChatModel(chat_model=inner, store=store_path, batch_api=True)
    try:
        with pytest.raises(BatchUnsupportedError, match="Responses API"):
            asyncio.run(chat.ainvoke("hi", config=cachesaver_config("ns")))
    finally:
        chat.close()
    assert batch_server.batches.created == 0 and batch_server.request_count == 0
