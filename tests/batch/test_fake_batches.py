"""The fake server's Batch API, driven through litellm's own batch calls (real HTTP)."""
from __future__ import annotations

import asyncio
import json
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

from cachesaver.testing.server import FakeOpenAIServer


def _lines(prompts_n):
    return "".join(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": "gpt-4o-mini", "n": n,
                                        "messages": [{"role": "user", "content": p}]}}) + "\n"
                   for i, (p, n) in enumerate(prompts_n)).encode()


async def _run(server, content, cancel=False):
    kw = {"custom_llm_provider": "openai", "api_base": server.base_url, "api_key": "sk-test"}
    file = await litellm.acreate_file(file=("in.jsonl", content, "application/jsonl"), purpose="batch", **kw)
    batch = await litellm.acreate_batch(completion_window="24h", endpoint="/v1/chat/completions",
                                        input_file_id=file.id, **kw)
    seen = [batch.status]
    if cancel:
        await litellm.acancel_batch(batch_id=batch.id, **kw)
    while seen[-1] not in ("completed", "failed", "expired", "cancelled"):
        await asyncio.sleep(0.02)
        batch = await litellm.aretrieve_batch(batch_id=batch.id, **kw)
        seen.append(batch.status)
    out = {}
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            content = (await litellm.afile_content(file_id=file_id, **kw)).content
            out.update({row["custom_id"]: row["response"] for row in map(json.loads, content.splitlines())})
    return batch, seen, out


def test_batch_lifecycle_n_per_line_and_chat_identical_samples():
    # in_progress lasts 0.8 s of the 1 s: long enough to be seen by a poll on a busy machine
    with FakeOpenAIServer(seed=3, batch_delay=1.0) as server:
        batch, seen, out = asyncio.run(_run(server, _lines([("red", 2), ("blue", 3)])))
        assert seen[0] == "validating" and "in_progress" in seen and seen[-1] == "completed"
        assert batch.request_counts.completed == 2 and batch.request_counts.failed == 0
        assert server.batches.created == 1 and server.batches.line_ns() == [2, 3]
        assert [len(out[c]["body"]["choices"]) for c in ("c0", "c1")] == [2, 3]
        batch_texts = [ch["message"]["content"] for ch in out["c1"]["body"]["choices"]]
    # The same prompt's samples 1..3 through the chat endpoint of a fresh server with that seed.
    with FakeOpenAIServer(seed=3) as fresh:
        chat = litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "blue"}],
                                  n=3, api_base=fresh.base_url, api_key="sk-test")
        assert [c.message.content for c in chat.choices] == batch_texts


def test_injected_line_failures_expiry_and_cancel():
    with FakeOpenAIServer(seed=3, batch_delay=0.1) as server:
        server.batches.fail_lines_next([1])
        batch, _, out = asyncio.run(_run(server, _lines([("a", 1), ("b", 1), ("c", 1)])))
        assert (batch.status, batch.request_counts.completed, batch.request_counts.failed) == ("completed", 2, 1)
        assert out["c1"]["status_code"] == 500 and out["c0"]["status_code"] == 200
        server.batches.expire_next(keep=1)
        batch, _, out = asyncio.run(_run(server, _lines([("a", 1), ("b", 1), ("c", 1)])))
        assert batch.status == "expired" and sorted(out) == ["c0"]
        batch, seen, out = asyncio.run(_run(server, _lines([("a", 1)]), cancel=True))
        assert seen[-1] == "cancelled" and out == {}
        assert server.request_count == 0  # nothing went to the chat endpoint
