"""Helpers shared by the batch-mode tests (imported by module name)."""
from __future__ import annotations

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402

MODEL = "cachesaver/openai/gpt-4o-mini"
#: Options that keep a test's batches quick: a short window, frequent polls.
QUICK = {"window": 0.1, "poll": 0.02, "max_poll": 0.05}
#: litellm's batch prices for gpt-4o-mini (its cost map), per token.
BATCH_IN, BATCH_OUT = 7.5e-08, 3e-07


async def ask(server, prompt: str, namespace: str, n: int, **extra):
    return await litellm.acompletion(
        model=MODEL, messages=[{"role": "user", "content": prompt}], n=n, api_base=server.base_url,
        api_key="sk-test", max_retries=0, metadata={"cachesaver_namespace": namespace}, **extra)


async def ask_all(server, calls):
    """``calls``: (prompt, namespace, n); results (or exceptions) in order."""
    return await asyncio.gather(*(ask(server, p, ns, n) for p, ns, n in calls), return_exceptions=True)


def texts(response) -> list[str]:
    return [c.message.content for c in response.choices]
