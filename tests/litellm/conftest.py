"""Fixtures for the LiteLLM adapter tests: a registered provider on a real diskcache store,
the local fake OpenAI server (real HTTP through litellm), and clean litellm globals per test.
"""
from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
import pytest

import cachesaver_litellm

from _litellm_helpers import MESSAGES, MODEL  # noqa: E402


@pytest.fixture(autouse=True)
def clean_litellm(litellm_globals_restored):
    """Every test starts and ends without a provider, a litellm.cache or leftover callbacks."""
    yield


@pytest.fixture
def provider(store_path):
    """``cachesaver/`` registered on a diskcache store in tmp_path; batch window 50 ms."""
    return cachesaver_litellm.register(store=store_path, timeout=0.05)




@pytest.fixture
def call_kwargs(server) -> dict:
    """What every test call passes: real HTTP to the fake server, no SDK retries."""
    return {"model": MODEL, "messages": MESSAGES, "api_base": server.base_url, "api_key": "sk-test",
            "max_retries": 0}


@pytest.fixture
async def output_of_this_test_only(capfd):
    """``capfd`` holding only what this test's own calls print.

    litellm's background logging worker is bound to one event loop. A test that ends with logging
    still queued leaves it on a closed loop, and the next test's first logging call carries it over
    with a warning from litellm on stderr. A user's process has one loop, so that warning is an
    artefact of the test run, not output of the calls under test: carry the queue over and drain it
    here, then drop what was printed so far."""
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    await GLOBAL_LOGGING_WORKER.flush()
    capfd.readouterr()
    return capfd

