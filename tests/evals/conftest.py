"""Evaluation frameworks (Inspect AI, lm-evaluation-harness) against the local fake server.

Nothing reaches the internet: the inner models' base URL is the fake server on 127.0.0.1, the
data sets are made in the tests, and Hugging Face libraries are told to stay offline.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# lm-eval loads the test's JSON file with `datasets`, which caches it as Arrow files: in a private
# directory for this session (read when datasets is first imported), never in ~/.cache.
_HF_CACHE = tempfile.mkdtemp(prefix="cachesaver-hf-datasets-")
os.environ["HF_DATASETS_CACHE"] = _HF_CACHE
atexit.register(shutil.rmtree, _HF_CACHE, ignore_errors=True)

import pytest  # noqa: E402


@pytest.fixture
def api_key_env(monkeypatch):
    """A dummy key: the inner OpenAI client refuses to start without one (the server ignores it)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
