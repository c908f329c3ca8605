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


# -- the seed's code blocks, verbatim, run in order ------------------------------------------
# Each string is one code block of the seed README, character for character, except the typos
# the module docstring lists (here: `cachesevar` in block 2, `src.cachesaver` in block 3,
# `model_name=` in block 4, `onineAPI` in block 5). Block 4 uses the Together client; the
# `together` module is not installed here, so a module of that name hands out an AsyncOpenAI
# client pointed at the local fake server (the README says any async client fits).
SEED_BLOCKS = [
    '''
from cachesaver.typedefs import Request, Batch

request = Request(
    prompt="What's the meaning of life",
    n=1, 
    request_id="unique_request_id",
    namespace="any_namespace")
''',
    '''
from cachesaver.typedefs import Request
from dataclasses import dataclass

@dataclass(frozen=True)
class Request(Request):
    temperature: float
''',
    '''
import asyncio
from typing import List, Any
from cachesaver.typedefs import Request, Batch, Response, SingleRequestModel, BatchRequestModel

class OnlineLLM(SingleRequestModel, BatchRequestModel):
    def __init__(self, client: Any, model: str):
        self.client = client
        self.model = model

    async def request(self, request: Request) -> Response:
        completion = await self.client.chat.completions.create(
            messages = [
                {
                    "role" : "user",
                    "content" : request.prompt
                }
            ],
            model = self.model,
            n = request.n,
        )
        response = Response(
            data = [choice.message.content for choice in completion.choices]
        )
        return response
    
    async def batch_request(self, batch: Batch) -> List[Response]:
        requests = [self.request(request) for request in batch.requests]
        completions = await asyncio.gather(*requests)
        return completions
''',
    '''
from together import AsyncTogether

client = AsyncTogether()
model_name = "mistralai/Mixtral-8x7B-Instruct-v0.1"
model = OnlineLLM(
    client=client,
    model=model_name
)
''',
    '''
from cachesaver.pipelines import OnlineAPI
from diskcache import Cache

# Cache to store responses
cache = Cache(f"./caches/test")

pipeline = OnlineAPI(
    model=model,
    cache=cache,
    batch_size=5,
    timeout=1
)
''',
]


async def test_seed_readme_blocks_run_verbatim(fake_server, tmp_path, monkeypatch):
    import sys
    import types

    from cachesaver.pipelines import LocalAPI

    together = types.ModuleType("together")
    together.AsyncTogether = lambda: openai.AsyncOpenAI(base_url=fake_server.base_url, api_key="sk-test", max_retries=0)
    monkeypatch.setitem(sys.modules, "together", together)
    monkeypatch.chdir(tmp_path)  # block 5 writes ./caches/test
    scope: dict = {}
    defined = []
    for block in SEED_BLOCKS:
        exec(compile(block, "seed-readme", "exec"), scope)
        defined.append(scope.get("Request"))
    # Block 2 redefines Request (a subclass whose temperature has no default); block 3
    # imports the engine's Request again, so the subclass is what block 2 left behind.
    SeedRequest = defined[1]
    assert SeedRequest.__mro__[1] is Request and "temperature" in SeedRequest.__dataclass_fields__
    pipeline, first = scope["pipeline"], scope["request"]

    # Block 1's request, then the subclass with its required temperature (part of the key).
    hot = SeedRequest(prompt="What's the meaning of life", temperature=1.2, n=2, request_id="t", namespace="any_namespace")
    assert SeedRequest("What's the meaning of life", 1.2).temperature == 1.2  # prompt, then the new field
    r1, r2 = await asyncio.gather(pipeline.request(first), pipeline.request(hot))  # one batch window
    assert r1.cached == [False] and r2.cached == [False, False]
    assert fake_server.request_count == 2  # two keys: the temperature is part of the key

    # The seed's pipelines are models: batch_request(Batch), and a pipeline in front of one.
    Batch = scope["Batch"]
    replies = await pipeline.batch_request(Batch([
        SeedRequest(prompt="What's the meaning of life", temperature=1.2, n=2, request_id="b1", namespace="other"),
        SeedRequest(prompt="Another question", temperature=0.0, n=1, request_id="b2", namespace="other"),
    ]))
    assert replies[0].data == r2.data and replies[0].cached == [True, True]  # another namespace reuses
    assert replies[1].cached == [False] and fake_server.request_count == 3
    async with LocalAPI(model=pipeline, cache="memory", batch_size=4, timeout=0.001) as front:
        composed = await front.request(SeedRequest(prompt="Another question", temperature=0.0, request_id="c", namespace="x"))
    assert composed.data == replies[1].data and fake_server.request_count == 3  # served by the inner cache
    await pipeline.aclose()
    await scope["client"].close()
    scope["cache"].close()
