"""Fixtures for batch mode: the fake server with a short batch delay, litellm globals restored."""
from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest


@pytest.fixture(autouse=True)
def clean_litellm(litellm_globals_restored):
    yield


@pytest.fixture
def batch_server():
    from cachesaver.testing.server import FakeOpenAIServer

    with FakeOpenAIServer(seed=7, batch_delay=0.15) as server:
        yield server
