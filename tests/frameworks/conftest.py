"""Fixtures for the agent-framework tests: real framework packages, the local fake OpenAI server
(real HTTP through litellm), a registered ``cachesaver/`` provider on a diskcache store in tmp_path.

DSPy's own disk cache is pointed at tmp_path before dspy is first imported (``DSPY_CACHEDIR``),
so no test ever writes to ``~/.dspy_cache``.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# dspy reads DSPY_CACHEDIR at import time: a private directory for this test session.
_DSPY_CACHEDIR = tempfile.mkdtemp(prefix="cachesaver-dspy-cache-")
os.environ["DSPY_CACHEDIR"] = _DSPY_CACHEDIR
atexit.register(shutil.rmtree, _DSPY_CACHEDIR, ignore_errors=True)

import litellm  # noqa: E402
import pytest  # noqa: E402

import cachesaver_litellm  # noqa: E402

from _fw_helpers import MODEL  # noqa: E402,F401  (re-exported for older imports)


@pytest.fixture(autouse=True)
def clean_litellm(litellm_globals_restored):
    """Every test starts and ends without a provider, a litellm.cache or leftover callbacks."""
    yield


@pytest.fixture
def provider(store_path):
    """``cachesaver/`` registered on a diskcache store in tmp_path; batch window 20 ms."""
    return cachesaver_litellm.register(store=store_path, timeout=0.02)
