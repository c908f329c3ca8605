"""ChatLiteLLM (langchain-litellm) with a ``cachesaver/`` model (issue 13, item 6).

ChatLiteLLM does not forward LangChain's ``config={"metadata": ...}`` to litellm, so the
namespace never arrives; ``model_kwargs={"metadata": ...}`` does. The provider logs one WARNING
per process when calls arrive with no namespace at all.
"""
from __future__ import annotations

import logging

import pytest

pytest.importorskip("langchain_litellm")
from langchain_litellm import ChatLiteLLM  # noqa: E402

import cachesaver_litellm  # noqa: E402
from cachesaver_litellm import _namespace_warning  # noqa: E402

from _fw_helpers import MODEL  # noqa: E402

WARNING_LOGGER = "cachesaver.litellm.namespace"


@pytest.fixture
def fresh_warning(caplog):
    _namespace_warning.reset()
    caplog.set_level(logging.WARNING, logger="cachesaver")
    yield caplog
    _namespace_warning.reset()


def warnings_logged(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == WARNING_LOGGER and r.levelno == logging.WARNING]


def chat_in(server, namespace: str) -> ChatLiteLLM:
    """The README snippet: the namespace travels in model_kwargs."""
    return ChatLiteLLM(model=MODEL, api_base=server.base_url, api_key="sk-test", temperature=0.7,
                       model_kwargs={"metadata": {"cachesaver_namespace": namespace}})


def test_model_kwargs_metadata_reaches_cachesaver_and_b_replays_a(provider, server, fresh_warning):
    prompts = ["Name a colour.", "Name a river."]
    first = [chat_in(server, "A").invoke(p).content for p in prompts]
    paid = server.request_count
    assert paid == len(prompts)
    replay = [chat_in(server, "B").invoke(p).content for p in prompts]
    assert replay == first
    assert server.request_count == paid  # B: zero HTTP requests
    assert set(cachesaver_litellm.stats().namespaces) == {"A", "B"}
    assert warnings_logged(fresh_warning) == []


def test_config_metadata_is_dropped_and_the_warning_says_so_once(provider, server, fresh_warning):
    chat = ChatLiteLLM(model=MODEL, api_base=server.base_url, api_key="sk-test", temperature=0.7)
    a = chat.invoke("Name a colour.", config={"metadata": {"cachesaver_namespace": "A"}}).content
    b = chat.invoke("Name a colour.", config={"metadata": {"cachesaver_namespace": "B"}}).content
    # What the README warns about: both calls landed in 'default', so "B" paid for a fresh sample.
    assert a != b and server.request_count == 2
    assert set(cachesaver_litellm.stats().namespaces) == {"default"}
    logged = warnings_logged(fresh_warning)
    assert len(logged) == 1
    assert "model_kwargs={'metadata'" in logged[0].getMessage()


def test_warning_function_logs_once_per_process(fresh_warning):
    assert _namespace_warning.warn_no_namespace_once("openai/gpt-4o-mini", "default") is True
    assert _namespace_warning.warn_no_namespace_once("openai/gpt-4o-mini", "default") is False
    assert len(warnings_logged(fresh_warning)) == 1


def test_a_default_namespace_chosen_at_register_is_not_missing(store_path, server, fresh_warning):
    cachesaver_litellm.register(store=store_path, namespace="experiment-7")
    chat = ChatLiteLLM(model=MODEL, api_base=server.base_url, api_key="sk-test")
    chat.invoke("Name a colour.")
    assert set(cachesaver_litellm.stats().namespaces) == {"experiment-7"}
    assert warnings_logged(fresh_warning) == []
    assert _namespace_warning.warn_no_namespace_once("openai/gpt-4o-mini", "experiment-7") is False
