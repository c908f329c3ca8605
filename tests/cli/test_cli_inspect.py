"""`cachesaver inspect`: the samples' text for people (never wrapped), JSON lines for programs,
a list when several keys match; on stores written by the engine and by both adapters."""
from __future__ import annotations

import asyncio
import json
import os

import pytest

from cachesaver.cli import main
from cachesaver.display import sample_text
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import DiskStore
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

LONG = "word " * 80 + "END-OF-LONG-PROMPT"


@pytest.fixture
def cache(tmp_path):
    directory = str(tmp_path / "cache")

    async def fill():
        async with OnlineAPI(model=FakeModel(seed=1), cache=directory) as p:
            await p.request(Request(prompt="What is 2 + 2?", n=3, namespace="a"))
            await p.request(Request(prompt="What is 3 + 3?", n=2, namespace="a"))
            await p.request(Request(prompt=LONG, n=1, namespace="a"))

    asyncio.run(fill())
    return directory


def stored(directory):
    """{prompt: [sample texts]} read straight from the store."""
    store = DiskStore(directory)

    async def go():
        out = {}
        async for key in store.iter_keys():
            meta = json.loads(await store.get_meta(key))
            out[key] = (meta["prompt"], [json.loads(r)["d"] for r in await store.read(key, 0, await store.length(key))])
        return out

    try:
        return asyncio.run(go())
    finally:
        store.close()


def test_people_get_the_sample_text_unwrapped(cache, capsys):
    assert main(["inspect", "--cache", cache, "--prompt", "2 + 2"]) == 0
    out = capsys.readouterr().out
    (key, (prompt, texts)), = [(k, v) for k, v in stored(cache).items() if v[0] == "What is 2 + 2?"]
    assert out.splitlines()[0].startswith(f"key {key}") and "3 samples" in out.splitlines()[0]
    assert out.splitlines()[1] == "prompt: What is 2 + 2?"
    assert out.splitlines()[2:] == [f"#{i} {t}" for i, t in enumerate(texts, start=1)]  # text, not JSON records
    assert '"d"' not in out and "{" not in out


def test_long_lines_are_never_wrapped_when_piped(cache, capsys):
    assert main(["inspect", "--cache", cache, "--prompt", "END-OF-LONG", "--full"]) == 0
    out = capsys.readouterr().out
    assert f"prompt: {' '.join(LONG.split())}" in out.splitlines()  # one line of ~420 characters
    assert main(["inspect", "--cache", cache, "--prompt", "END-OF-LONG"]) == 0
    line = capsys.readouterr().out.splitlines()[1]  # beginning and end of a long prompt
    assert len(line) == len("prompt: ") + 200 and line.startswith("prompt: word word")
    assert " … " in line and line.endswith("word END-OF-LONG-PROMPT")


def test_json_lines_for_programs(cache, capsys):
    assert main(["inspect", "--cache", cache, "--prompt", "3 + 3", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    (key, (_prompt, texts)), = [(k, v) for k, v in stored(cache).items() if v[0] == "What is 3 + 3?"]
    assert [(r["key"], r["index"], r["text"], r["sample"]) for r in records] == [
        (key, i, t, t) for i, t in enumerate(texts)]
    assert all(r["completion_tokens"] > 0 for r in records)


def test_several_matches_are_listed(cache, capsys):
    assert main(["inspect", "--cache", cache, "--prompt", "What is"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2 keys match")
    assert sorted(line.split("  ")[-1] for line in out[1:]) == ["What is 2 + 2?", "What is 3 + 3?"]
    assert main(["inspect", "--cache", cache, "--prompt", "What is", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((r["prompt"], r["samples"]) for r in listed) == [("What is 2 + 2?", 3), ("What is 3 + 3?", 2)]
    assert main(["inspect", "--cache", cache, "--prompt", "What is", "--all"]) == 0
    out = capsys.readouterr().out
    assert out.count("\nkey ") + out.startswith("key ") == 2 and out.count("#1 ") == 2


@pytest.mark.parametrize("data, text", [
    ("plain", "plain"),
    # a litellm choice (cachesaver_litellm stores the choice under "choice")
    ({"v": 1, "choice": {"finish_reason": "stop", "message": {"content": "42 [sample 1]", "role": "assistant"}},
      "id": "x", "model": "m"}, "42 [sample 1]"),
    # a dumped LangChain AIMessage, with v1 content blocks
    ({"message": {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"],
                  "kwargs": {"content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]}},
      "generation_info": {"finish_reason": "stop"}}, "Hello there"),
    # tool calls only: litellm's and LangChain's shapes
    ({"choice": {"message": {"content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]}}},
     '-> weather({"city": "Paris"})'),
    ({"message": {"kwargs": {"content": "", "tool_calls": [{"name": "weather", "args": {"city": "Rome"}, "id": "c"}]}}},
     '-> weather({"city":"Rome"})'),
    ({"message": {"kwargs": {"content": ""}}}, ""),
    ({"score": 3, "labels": ["a"]}, '{"labels":["a"],"score":3}'),
])
def test_sample_text_is_found_generically(data, text):
    assert sample_text(data) == text


def test_litellm_and_langchain_samples_read_as_their_text(tmp_path, capsys):
    pytest.importorskip("litellm")
    pytest.importorskip("langchain_openai")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from langchain_openai import ChatOpenAI

    import cachesaver_litellm
    from cachesaver_langchain import CacheSaverChatModel, cachesaver_config
    from cachesaver.testing.server import FakeOpenAIServer

    directory = str(tmp_path / "both")
    with FakeOpenAIServer(seed=5) as server:
        cachesaver_litellm.register(store=directory)
        try:
            reply = litellm.completion(model="cachesaver/openai/fake-model", n=2, api_base=server.base_url,
                                       api_key="sk-test", messages=[{"role": "user", "content": "via litellm"}],
                                       metadata={"cachesaver_namespace": "x"})
        finally:
            cachesaver_litellm.unregister()
        chat = CacheSaverChatModel(chat_model=ChatOpenAI(model="fake-model", base_url=server.base_url,
                                                         api_key="sk-test", max_retries=0), store=directory)
        try:
            message = chat.invoke("via langchain", config=cachesaver_config("x"))
        finally:
            chat.close()
    capsys.readouterr()  # (what litellm itself printed)
    assert main(["inspect", "--cache", directory, "--prompt", "via litellm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:] == [f"#{i} {c.message.content}" for i, c in enumerate(reply.choices, start=1)]
    assert lines[2].startswith("#1 ") and "[sample 1 of " in lines[2]  # people count from 1 (issue 26)
    assert main(["inspect", "--cache", directory, "--prompt", "via langchain", "--json"]) == 0
    record, = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["text"] == message.content
