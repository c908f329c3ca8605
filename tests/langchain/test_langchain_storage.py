"""Storage: JSON samples loaded as messages only (G7), LangChain's global cache kept out, one
directory shared with the LiteLLM adapter, real Redis."""
from __future__ import annotations

import asyncio
import logging
import os
import pickle

import orjson
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.caches import InMemoryCache
from langchain_core.globals import set_llm_cache
from langchain_core.load import load

from cachesaver.codec import encode_sample
from cachesaver.errors import CorruptSampleError
from cachesaver.runtime import get_host
from cachesaver_langchain import CacheSaverChatModel

from _disk_rows import set_count, set_sample
from _lc_helpers import ns, sample_no

PROMPT = "Store me"


def _on_loop(chat, coro):
    return get_host().run(coro)


def _keys(chat) -> list[str]:
    async def collect():
        return [k async for k in chat.pipeline.store.iter_keys()]

    return _on_loop(chat, collect())


def test_a_sample_is_a_json_dumped_aimessage_without_id_or_secrets(make_chat, fake_server, tmp_path):
    chat = make_chat(store=str(tmp_path / "s"))
    message = chat.invoke(PROMPT, config=ns("A"))
    (key,) = _keys(chat)
    (raw,) = _on_loop(chat, chat.pipeline.store.read(key, 0, 1))
    stored = orjson.loads(raw)
    record = stored["d"]
    assert record["message"]["id"] == ["langchain", "schema", "messages", "AIMessage"]
    assert "id" not in record["message"]["kwargs"] and "usage_metadata" not in record["message"]["kwargs"]
    assert "usage" not in record  # usage is the engine's share, stored beside the sample
    assert stored["u"][:2] == [message.usage_metadata["input_tokens"], message.usage_metadata["output_tokens"]]
    assert load(record["message"], allowed_objects="messages").content == message.content
    meta = _on_loop(chat, chat.pipeline.store.get_meta(key))
    assert b"langchain-aimessage/1" in meta and b"Store me" in meta
    for path, _, files in os.walk(tmp_path / "s"):  # the api key is nowhere on disk
        for name in files:
            with open(os.path.join(path, name), "rb") as fh:
                assert b"sk-test" not in fh.read()


def _plant(chat, store_dir: str, value, *, raw_pickle: bool = False) -> None:
    """Append ``value`` as sample 1 of the only key, behind the engine's back."""
    (key,) = _keys(chat)
    set_sample(store_dir, key, 1, pickle.dumps(value) if raw_pickle else encode_sample(value))
    set_count(store_dir, key, 2)


class _Canary:
    """Unpickling this creates a file: proof that code ran."""

    path = ""

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_planted_langchain_payload_is_not_constructed(make_chat, fake_server, tmp_path):
    store_dir = str(tmp_path / "s")
    chat = make_chat(store=store_dir)
    chat.invoke(PROMPT, config=ns("A"))
    # A "message" that is really a chat model pointed at an attacker's endpoint.
    payload = {"lc": 1, "type": "constructor", "id": ["langchain", "chat_models", "openai", "ChatOpenAI"],
               "kwargs": {"model": "evil", "openai_api_key": "sk-evil", "openai_api_base": "http://attacker.invalid"}}
    assert type(load(payload, allowed_objects="all")).__name__ == "ChatOpenAI"  # it is live
    _plant(chat, store_dir, {"message": payload, "usage": None, "generation_info": None, "sample_id": "x"})
    with pytest.raises(CorruptSampleError, match="not loaded"):
        chat.invoke(PROMPT, config=ns("A"))
    assert fake_server.request_count == 1


def test_a_planted_pickle_does_not_run(make_chat, fake_server, tmp_path):
    store_dir = str(tmp_path / "s")
    chat = make_chat(store=store_dir)
    chat.invoke(PROMPT, config=ns("A"))
    canary = _Canary()
    _Canary.path = str(tmp_path / "pwned")
    pickle.dumps(canary)  # a valid pickle
    _plant(chat, store_dir, canary, raw_pickle=True)
    with pytest.raises(CorruptSampleError):
        chat.invoke(PROMPT, config=ns("A"))
    assert not os.path.exists(_Canary.path)


def test_langchains_global_cache_never_collapses_samples(make_chat, fake_server):
    set_llm_cache(InMemoryCache())
    try:
        chat = make_chat()
        got = [sample_no(chat.invoke(PROMPT, config=ns("A"))) for _ in range(3)]
        inner_direct = [sample_no(chat.chat_model.invoke(PROMPT)) for _ in range(2)]
    finally:
        set_llm_cache(None)
    assert len(set(got)) == 3 and fake_server.request_count == 4
    assert inner_direct[0] == inner_direct[1]  # what the global cache does to a bare model


def test_cache_argument_is_refused(make_inner):
    with pytest.raises(ValueError, match="store="):
        CacheSaverChatModel(chat_model=make_inner(), cache=InMemoryCache())
    assert CacheSaverChatModel(chat_model=make_inner(), store="memory", cache=False).cache is False


def test_one_directory_serves_the_litellm_adapter_too(make_chat, fake_server, tmp_path):
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    import cachesaver_litellm

    store = str(tmp_path / "shared")
    kwargs = {"model": "cachesaver/openai/fake-model", "messages": [{"role": "user", "content": PROMPT}],
              "api_base": fake_server.base_url, "api_key": "sk-test", "max_retries": 0,
              "metadata": {"cachesaver_namespace": "A"}}
    try:
        cachesaver_litellm.register(store=store, cost_callback=False)
        via_litellm = litellm.completion(**kwargs).choices[0].message.content
        chat = make_chat(store=store)
        via_langchain = chat.invoke(PROMPT, config=ns("A")).content
        assert fake_server.request_count == 2 and via_litellm != via_langchain  # never shared
        assert len(_keys(chat)) == 2
        cachesaver_litellm.unregister()
        cachesaver_litellm.register(store=store, cost_callback=False)  # a new run of each
        assert litellm.completion(**kwargs).choices[0].message.content == via_litellm
        assert make_chat(store=store).invoke(PROMPT, config=ns("A")).content == via_langchain
        assert fake_server.request_count == 2
    finally:
        cachesaver_litellm.unregister()


def test_redis_store(make_chat, fake_server, redis_store_factory):
    first = make_chat(store=redis_store_factory())
    a = sample_no(first.invoke(PROMPT, config=ns("A")))
    second = make_chat(store=redis_store_factory())
    assert sample_no(second.invoke(PROMPT, config=ns("A"))) == a and fake_server.request_count == 1


def test_a_redis_hit_is_one_round_trip_on_the_callers_thread(make_chat, fake_server, redis_store_factory):
    """``invoke`` of a hit on a Redis store (issue 25: 4-4.8x an InMemoryCache hit, most of it
    the hop to the engine's loop): one LRANGE from the caller's thread, served while the
    engine's loop is held, the sample the namespace's next position holds."""
    import threading

    from tests.redis.test_redis_store import count_round_trips
    from tests.runtime.test_runtime_hosted import BlockedHost

    chat = make_chat(store=redis_store_factory())
    first = sample_no(chat.invoke(PROMPT, config=ns("A")))
    chat.invoke(PROMPT, config=ns("warm"))  # the synchronous client connected
    with BlockedHost(), count_round_trips() as count:
        done = []
        worker = threading.Thread(target=lambda: done.append(chat.invoke(PROMPT, config=ns("B"))))
        worker.start()
        worker.join(10)  # a liveness bound: a hop to the engine's loop would wait 30 s
        assert done, "the hit needed the engine's loop"
        assert count[0] == 1
    assert sample_no(done[0]) == first and fake_server.request_count == 1


SENTINEL_KEY = "sk-SENTINEL-lc-7f3a"
SENTINEL_PW = "SENTINEL-PW-lc-2b9e"


class _Recorder(BaseCallbackHandler):
    def __init__(self):
        self.seen: list[str] = []

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.seen.append(repr((serialized, messages, kwargs)))

    def on_llm_end(self, response, **kwargs):
        self.seen.append(repr((response, kwargs)))


def test_secrets_reach_no_key_store_trace_or_log(make_inner, make_chat, fake_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    store_dir = tmp_path / "s"
    chat = make_chat(inner=make_inner(api_key=SENTINEL_KEY), store=str(store_dir), api_key=SENTINEL_KEY)
    recorder = _Recorder()
    config = {**ns("A"), "callbacks": [recorder]}
    chat.invoke(PROMPT, config=config)
    list(chat.stream(PROMPT, config=config))
    chat.invoke(PROMPT, config={**ns("B"), "callbacks": [recorder]})
    written = b"".join(p.read_bytes() for p in store_dir.rglob("*") if p.is_file())
    assert fake_server.request_count == 2 and recorder.seen
    for text in (written.decode("latin-1"), caplog.text, "".join(recorder.seen), repr(chat), str(chat.stats)):
        assert SENTINEL_KEY not in text
    url_chat = CacheSaverChatModel(chat_model=make_inner(), store=f"redis://:{SENTINEL_PW}@127.0.0.1:1/0")
    for text in (repr(url_chat), repr(url_chat._serialized), repr(url_chat._identifying_params),
                 repr(url_chat._get_invocation_params()), repr(url_chat._get_ls_params())):
        assert SENTINEL_PW not in text
