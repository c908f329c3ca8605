"""Fixtures for the LangChain adapter: the inner ChatOpenAI talks to the local fake server."""
from __future__ import annotations

import pytest

from cachesaver.testing.server import FakeOpenAIServer


@pytest.fixture(scope="module")
def module_server():
    """One fake server for a whole module (the standard suites build a model per test)."""
    with FakeOpenAIServer(seed=11, follow_prompt=True) as server:
        yield server


@pytest.fixture
def make_inner(fake_server):
    """Factory of ChatOpenAI clients of the per-test fake server (no retries: failures are exact)."""
    from langchain_openai import ChatOpenAI

    def factory(**kwargs):
        params = {"model": "fake-model", "base_url": fake_server.base_url, "api_key": "sk-test",
                  "max_retries": 0, "temperature": 0.7}
        params.update(kwargs)
        return ChatOpenAI(**params)

    return factory


@pytest.fixture
def make_chat(make_inner, tmp_path):
    """Factory of CacheSaverChatModel over ChatOpenAI; closes what it made."""
    from cachesaver_langchain import CacheSaverChatModel

    made = []

    def factory(inner=None, **kwargs):
        kwargs.setdefault("store", str(tmp_path / "store"))
        chat = CacheSaverChatModel(chat_model=inner if inner is not None else make_inner(), **kwargs)
        made.append(chat)
        return chat

    yield factory
    for chat in made:
        chat.close()
