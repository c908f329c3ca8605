"""Issue 26: LangChain calls with no namespace warn as litellm's do (once per process, on a
``cachesaver.langchain`` logger), and a misspelled key in the run metadata warns on every call.
Before, ``CacheSaverChatModel`` warned about neither."""
from __future__ import annotations

import logging

import pytest

from cachesaver.errors import MetadataKeyWarning
from cachesaver_langchain import _namespace_warning, cachesaver_config

MESSAGE = (
    "a CacheSaverChatModel call arrived with no 'cachesaver_namespace' in its run metadata, so it and every "
    "such call share the namespace 'default': different methods, agents or arms then take each other's samples "
    "in turn instead of each replaying the stored ones from the first. Pass config={'metadata': "
    "{'cachesaver_namespace': ...}} per call (cachesaver_langchain.cachesaver_config(...)), or "
    "CacheSaverChatModel(namespace=...). (Logged once per process.)")


@pytest.fixture
def logged(caplog):
    _namespace_warning.reset()
    caplog.set_level(logging.WARNING, logger="cachesaver")
    yield lambda: [r.getMessage() for r in caplog.records if r.name == "cachesaver.langchain.namespace"]
    _namespace_warning.reset()


def test_no_namespace_warns_once_naming_the_fix(make_chat, logged):
    chat = make_chat()
    chat.invoke("Name a colour.", config=cachesaver_config("a"))
    assert logged() == []
    chat.invoke("Name a colour.")
    chat.invoke("Name a river.")
    assert logged() == [MESSAGE]


def test_a_chosen_default_namespace_is_not_missing(make_chat, logged):
    make_chat(namespace="experiment-7").invoke("Name a colour.")
    assert logged() == []


def test_a_misspelled_key_in_run_metadata_warns(make_chat, logged):
    chat = make_chat(namespace="x")
    for _ in range(2):
        with pytest.warns(MetadataKeyWarning, match=r"^run metadata\['cachesaver_namepsace'\] is not a CacheSaver key, "
                                                    r"so CacheSaver ignores it: did you mean 'cachesaver_namespace'\?$"):
            chat.invoke("Name a colour.", config={"metadata": {"cachesaver_namepsace": "a"}})
