"""Fixtures for batch mode: the fake server with a short batch delay, litellm globals restored."""
from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

#: Options that keep a test's batches quick: a short window, frequent polls.
QUICK = {"window": 0.1, "poll": 0.02, "max_poll": 0.05}


@pytest.fixture(autouse=True)
def clean_litellm(litellm_globals_restored):
    yield


@pytest.fixture
def batch_server():
    from cachesaver.testing.server import FakeOpenAIServer

    with FakeOpenAIServer(seed=7, batch_delay=0.15) as server:
        yield server
