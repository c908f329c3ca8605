"""The seed README's examples, typos corrected, run for real against the local OpenAI server.

Corrections: `src.cachesaver.typedefs` -> `cachesaver.typedefs`, `cachesevar` -> `cachesaver`,
`onineAPI` -> `OnlineAPI`, and `OnlineLLM(client=..., model=...)` (the README passes
`model_name=`, which the class it defines does not accept).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, List

import pytest
from diskcache import Cache

openai = pytest.importorskip("openai")

from cachesaver.pipelines import OnlineAPI  # noqa: E402
from cachesaver.typedefs import Batch, BatchRequestModel, Request, Response, SingleRequestModel  # noqa: E402


class OnlineLLM(SingleRequestModel, BatchRequestModel):
    def __init__(self, client: Any, model: str):
        self.client = client
        self.model = model

    async def request(self, request: Request) -> Response:
        completion = await self.client.chat.completions.create(
            messages=[{"role": "user", "content": request.prompt}],
            model=self.model,
            n=request.n,
        )
        response = Response(data=[choice.message.content for choice in completion.choices])
        return response

    async def batch_request(self, batch: Batch) -> List[Response]:
        requests = [self.request(request) for request in batch.requests]
        completions = await asyncio.gather(*requests)
        return completions


@dataclass(frozen=True)
class TemperatureRequest(Request):  # the README redefines Request; a distinct name is clearer
    temperature: float = 0.7


async def test_seed_readme_quick_start(fake_server, tmp_path):
    client = openai.AsyncOpenAI(base_url=fake_server.base_url, api_key="sk-test", max_retries=0)
    model = OnlineLLM(client=client, model="fake-model")
    cache = Cache(str(tmp_path / "caches" / "test"))
    pipeline = OnlineAPI(model=model, cache=cache, batch_size=5, timeout=1)

    request = Request(prompt="What's the meaning of life", n=1, request_id="unique_request_id", namespace="any_namespace")
    # Five concurrent requests fill the batch (5 samples), so nothing waits out the 1 s window.
    others = [Request(prompt="What's the meaning of life", n=1, request_id=f"r{i}", namespace="any_namespace") for i in range(4)]
    responses = await asyncio.gather(pipeline.request(request), *(pipeline.request(r) for r in others))
    assert fake_server.request_count == 1 and fake_server.n_asked == 5  # merged into one n=5 call
    texts = [r.data[0] for r in responses]
    assert len(set(texts)) == 5 and all(isinstance(t, str) for t in texts)
    assert [r.cached for r in responses] == [[False]] * 5
    # One original: the first in request_id order ("r0" sorts before "unique_request_id").
    assert [r.duplicated for r in responses] == [[True], [False], [True], [True], [True]]

    # Another namespace reuses them (zero HTTP), and a new pipeline replays them exactly.
    again = await pipeline.request(Request(prompt="What's the meaning of life", n=5, request_id="x", namespace="other"))
    in_list_order = texts[1:] + texts[:1]  # samples were handed out in request_id order
    assert again.data == in_list_order and again.cached == [True] * 5
    await pipeline.aclose()
    async with OnlineAPI(model=model, cache=Cache(str(tmp_path / "caches" / "test")), batch_size=5, timeout=1) as replay:
        same = await replay.request(Request(prompt="What's the meaning of life", n=5, request_id="y", namespace="any_namespace"))
    assert same.data == in_list_order and fake_server.request_count == 1

    # The README's subclass with temperature: a different key, so a fresh call.
    async with OnlineAPI(model=model, cache=cache, batch_size=1, timeout=1) as p:
        hot = await p.request(TemperatureRequest(prompt="What's the meaning of life", request_id="t", temperature=1.2))
    assert hot.data[0] not in texts and fake_server.request_count == 2
    await client.close()
    cache.close()
