"""The langchain-tests standard suites, run on CacheSaverChatModel wrapping a ChatOpenAI that talks
to the local fake OpenAI-compatible server.

Capabilities are declared explicitly (the suites would otherwise infer them and could pass without
testing). Skipped by design: image, audio and PDF inputs (the suite downloads real files from the
internet) and serialisation (``load(..., allowed_objects="all")`` admits only the classes of
LangChain's own mapping, so no third-party model can round-trip; the wrapper is therefore not
declared serialisable). ``test_stream_time`` replays a committed cassette of the fake server.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

import pytest
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from cachesaver_langchain import CacheSaverChatModel

_STORES = tempfile.mkdtemp(prefix="cachesaver-lc-std-")


def _fresh_store() -> str:
    """A new directory per model instance: each standard test sees a cold store."""
    return os.path.join(_STORES, uuid.uuid4().hex)


class TestCacheSaverChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[CacheSaverChatModel]:
        return CacheSaverChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        inner = ChatOpenAI(model="fake-model", base_url="http://127.0.0.1:9/v1", api_key="sk-unit")
        return {"chat_model": inner, "store": _fresh_store()}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        store = _fresh_store()
        inner = ChatOpenAI(model="fake-model", base_url="http://127.0.0.1:9/v1", api_key="sk-unit")
        return {"CACHESAVER_STORE": store}, {"chat_model": inner}, {"store": store}


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    """``test_stream_time`` replays a cassette recorded from the fake server (the port changes
    every run, so requests match on method and path only)."""
    return {
        "record_mode": "once",
        "match_on": ["method", "path"],
        "allow_playback_repeats": True,
        "filter_headers": [("authorization", "PLACEHOLDER")],
        "cassette_library_dir": os.path.join(os.path.dirname(__file__), "cassettes"),
    }


class TestCacheSaverChatModelIntegration(ChatModelIntegrationTests):
    server: Any = None

    @pytest.fixture(autouse=True)
    def _server(self, module_server):
        type(self).server = module_server
        yield

    @property
    def chat_model_class(self) -> type[CacheSaverChatModel]:
        return CacheSaverChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        inner = ChatOpenAI(model="fake-model", base_url=self.server.base_url, api_key="sk-test",
                           max_retries=0)
        return {"chat_model": inner, "store": _fresh_store()}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "fake-model-override"

    @property
    def supports_anthropic_inputs(self) -> bool:
        return True

    @property
    def enable_vcr_tests(self) -> bool:
        return True
