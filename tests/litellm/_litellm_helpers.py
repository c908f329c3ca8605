"""Helpers shared by the LiteLLM adapter tests (imported by module name, like conftest)."""
from __future__ import annotations

import os
import re

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import cachesaver_litellm  # noqa: E402

MODEL = "cachesaver/openai/gpt-4o-mini"
REAL_MODEL = "openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Name a colour."}]

_SAMPLE = re.compile(r"\[sample (\d+) of ")


def sample_ids(response) -> list[int]:
    """The fake server's sample numbers (per prompt) of a response's choices, in order."""
    ids = []
    for choice in response.choices:
        message = choice.message
        text = message.content or ""
        if not text and message.tool_calls:
            text = message.tool_calls[0].function.arguments
        match = _SAMPLE.search(text)
        assert match, f"not a fake-server sample: {text!r}"
        ids.append(int(match.group(1)))
    return ids


def ns(namespace: str, request_id: str | None = None) -> dict:
    meta = {"cachesaver_namespace": namespace}
    if request_id is not None:
        meta["cachesaver_request_id"] = request_id
    return meta


def store_lengths(handler=None) -> dict[str, int]:
    """Every key of the provider's store with its sample count (read on the engine's loop)."""
    handler = handler or cachesaver_litellm.get_handler()
    store = handler.pipeline.store

    async def read():
        return {key: await store.length(key) async for key in store.iter_keys()}

    return handler.hosted.host.run(read())
