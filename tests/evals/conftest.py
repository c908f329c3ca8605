"""Evaluation frameworks (Inspect AI, lm-evaluation-harness) against the local fake server.

Nothing reaches the internet: the inner models' base URL is the fake server on 127.0.0.1, the
data sets are made in the tests, and Hugging Face libraries are told to stay offline.
"""
from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture
def api_key_env(monkeypatch):
    """A dummy key: the inner OpenAI client refuses to start without one (the server ignores it)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
