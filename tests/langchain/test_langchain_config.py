"""Construction: standard parameters reach the inner model, bad input is a clear error."""
from __future__ import annotations

import threading

import pytest
from langchain_core.messages import HumanMessage

from cachesaver.errors import PipelineClosedError
from cachesaver_langchain import CacheSaverChatModel

from _lc_helpers import ns, sample_no


def test_standard_parameters_are_applied_to_a_copy_of_the_inner_model(make_inner, make_chat, fake_server):
    inner = make_inner(temperature=0.7)
    chat = make_chat(inner=inner, temperature=0.2, max_tokens=50, stop=["END"], timeout=7,
                     max_retries=1, api_key="sk-other")
    assert inner.temperature == 0.7  # the caller's model is not touched
    rebuilt = chat.chat_model
    assert (rebuilt.temperature, rebuilt.max_tokens, rebuilt.stop) == (0.2, 50, ["END"])
    assert (rebuilt.request_timeout, rebuilt.max_retries) == (7, 1)
    assert rebuilt.openai_api_key.get_secret_value() == "sk-other"
    assert rebuilt.openai_api_base == inner.openai_api_base  # everything else kept
    chat.invoke("Hi", config=ns("A"))
    body = fake_server.requests[-1]
    assert (body["temperature"], body["max_completion_tokens"], body["stop"]) == (0.2, 50, ["END"])


def test_decoding_parameters_are_keyed_and_transport_is_not(make_inner, make_chat, fake_server, tmp_path):
    store = str(tmp_path / "s")
    # The fake server numbers samples per prompt and sampling parameters, so a sample is told
    # apart by its whole text, not by its number alone.
    a = make_chat(inner=make_inner(temperature=0.2), store=store)
    first = a.invoke("Hi", config=ns("A")).content
    b = make_chat(inner=make_inner(temperature=0.9), store=store)
    assert b.invoke("Hi", config=ns("A")).content != first  # another distribution
    c = make_chat(inner=make_inner(temperature=0.2, timeout=3, max_retries=2, api_key="sk-x"), store=store)
    assert c.invoke("Hi", config=ns("A")).content == first  # transport is not keyed
    d = make_chat(inner=make_inner(temperature=0.2), store=store)
    assert d.invoke("Hi", config=ns("A"), stop=["x"]).content != first  # stop is keyed
    assert fake_server.request_count == 3


def test_message_ids_and_metadata_are_not_keyed(make_chat, fake_server):
    chat = make_chat()
    first = chat.invoke([HumanMessage("Hi", id="m-1")], config=ns("A"))
    replay = chat.invoke([HumanMessage("Hi", id="m-2", response_metadata={"x": 1})], config=ns("B"))
    assert replay.content == first.content and fake_server.request_count == 1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [({"store": 3}, TypeError, "store"),
     ({"namespace": ""}, ValueError, "namespace"),
     ({"batch_size": 0}, ValueError, "batch_size"),
     ({"n": 0}, ValueError, "n must be"),
     ({"cache": True}, ValueError, "store=")],
)
def test_bad_constructor_arguments(make_inner, kwargs, error, match):
    with pytest.raises(error, match=match):
        CacheSaverChatModel(chat_model=make_inner(), **kwargs)


def test_chat_model_must_be_a_single_chat_model(make_inner):
    with pytest.raises((TypeError, ValueError), match="chat model"):
        CacheSaverChatModel(chat_model="gpt-4o")
    once = CacheSaverChatModel(chat_model=make_inner(), store="memory")
    with pytest.raises((TypeError, ValueError), match="already a CacheSaverChatModel"):
        CacheSaverChatModel(chat_model=once)


def test_store_defaults_to_the_environment(make_inner, monkeypatch, tmp_path):
    monkeypatch.setenv("CACHESAVER_STORE", str(tmp_path / "env-store"))
    assert CacheSaverChatModel(chat_model=make_inner()).store == str(tmp_path / "env-store")


async def test_sync_invoke_inside_a_running_loop_and_async_share_one_ledger(make_chat, fake_server):
    chat = make_chat()
    sync_first = chat.invoke("Hi", config=ns("A"))  # blocks this loop; the engine has its own
    async_second = await chat.ainvoke("Hi", config=ns("A"))
    assert sample_no(sync_first) != sample_no(async_second) and fake_server.request_count == 2


def test_batch_from_threads_gives_distinct_samples(make_chat, fake_server):
    chat = make_chat(batch_size=8, batch_timeout=0.2)
    results: list = []

    def worker():
        results.extend(chat.batch(["Hi"] * 4, config=ns("A")))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({sample_no(m) for m in results}) == 8
    assert fake_server.n_asked == 8


def test_stats_and_close(make_chat, fake_server):
    chat = make_chat()
    chat.invoke("Hi", config=ns("A"))
    chat.invoke("Hi", config=ns("B"))
    assert chat.stats.ns("A").samples_generated == 1 and chat.stats.ns("B").samples_from_store == 1
    chat.close()
    # close() is final (issue 21): a new run here would hand namespace A its sample 1 again
    for call in (lambda: chat.invoke("Hi", config=ns("A")), lambda: list(chat.stream("Hi", config=ns("A"))),
                 lambda: chat.batch(["Hi"], config=ns("A"))):
        with pytest.raises(PipelineClosedError):
            call()
    assert fake_server.request_count == 1 and chat.stats.ns("A").samples_generated == 1  # stats still read


async def test_aclose_is_final_and_close_before_use_too(make_chat):
    chat = make_chat()
    await chat.aclose()
    with pytest.raises(PipelineClosedError):
        await chat.ainvoke("Hi", config=ns("A"))
    unused = make_chat()
    unused.close()
    with pytest.raises(PipelineClosedError):
        unused.invoke("Hi", config=ns("A"))


def test_reassigning_an_inner_parameter_changes_the_key(make_chat, fake_server):
    chat = make_chat()
    first = chat.invoke("Hi", config=ns("A")).content
    chat.chat_model.temperature = 0.1  # LangChain models are mutable; the key follows
    assert chat.invoke("Hi", config=ns("B")).content != first  # a new sample, not A's replayed
    assert fake_server.requests[-1]["temperature"] == 0.1


def test_a_shared_run_id_is_one_ledger_across_instances(make_chat, fake_server, tmp_path):
    store = str(tmp_path / "s")
    a = make_chat(store=store, run_id="experiment-1")
    b = make_chat(store=store, run_id="experiment-1")
    got = [sample_no(a.invoke("Hi", config=ns("A"))), sample_no(b.invoke("Hi", config=ns("A")))]
    assert got[0] != got[1] and fake_server.request_count == 2  # b did not get a's sample again
    c = make_chat(store=store)  # a private run replays from the first sample
    assert sample_no(c.invoke("Hi", config=ns("A"))) == got[0]
