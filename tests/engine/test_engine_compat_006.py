"""Issue 21, item 5: cachesaver 0.0.6's code runs unchanged where that costs nothing.

A 0.0.6-style program: a duck-typed model (no base class, as 0.0.6's runtime-checkable
protocols allow), requests built as ``Request(args=..., kwargs=..., n=, request_id=, namespace=)``,
and a ``LocalAPI`` batch model that answers one sample per item. Run against both request forms.
"""
from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

from cachesaver.keys import request_key
from cachesaver.pipelines import LocalAPI, OnlineAPI
from cachesaver.typedefs import Batch, BatchRequestModel, Request, Response, SingleRequestModel


class DuckModel:
    """0.0.6 style: no base class; one sample per request item, whatever ``n`` says."""

    def __init__(self) -> None:
        self.batches: List[List[int]] = []
        self.counter = 0

    async def request(self, request: Any) -> Response:
        return (await self.batch_request(Batch([request])))[0]

    async def batch_request(self, batch: Batch) -> List[Response]:
        self.batches.append([r.n for r in batch.requests])
        out = []
        for r in batch.requests:
            prompt = r.args[0] if r.args else r.prompt
            out.append(Response(data=[f"{prompt}:{r.kwargs or {}}:{self.counter}"]))
            self.counter += 1
        return out


def test_duck_typed_models_are_models():
    model = DuckModel()
    assert isinstance(model, SingleRequestModel) and isinstance(model, BatchRequestModel)
    assert not isinstance(object(), SingleRequestModel)


def test_the_006_request_form_is_keyed_like_the_prompt_form():
    old = Request(args=("Q",), kwargs={"temperature": 0.7, "stream": True}, n=2, request_id="r", namespace="ns")
    assert old.prompt is None and old.args == ("Q",)
    assert request_key(old) == request_key(Request(args=("Q",), kwargs={"temperature": 0.7}))  # stream: transport
    assert request_key(old) != request_key(Request(args=("Q",), kwargs={"temperature": 0.9}))
    assert request_key(Request("Q")) != request_key(old)
    with pytest.raises(TypeError, match="needs a prompt"):
        Request()


@pytest.mark.parametrize("form", ["0.0.6", "prompt"])
async def test_a_006_program_runs_on_local_api_with_one_hardware_batch(tmp_path, form):
    def make(i: int, n: int = 7, namespace: str = "ns") -> Request:
        if form == "0.0.6":
            return Request(args=("Q",), kwargs={"temperature": 0.7}, n=n, request_id=f"r{i}", namespace=namespace)
        return Request("Q", n=n, request_id=f"r{i}", namespace=namespace)

    model = DuckModel()
    async with LocalAPI(model=model, cache=str(tmp_path / "c"), batch_size=8, timeout=0.01) as pipeline:
        first = await pipeline.request(make(0))
    assert model.batches == [[1] * 7]  # one batch of seven items, not seven calls of n=7..1
    assert len(set(first.data)) == 7 and first.cached == [False] * 7

    async with OnlineAPI(model=model, cache=str(tmp_path / "c"), batch_size=8, timeout=0.01) as pipeline:
        again, other = await asyncio.gather(pipeline.request(make(1, namespace="ns")),
                                            pipeline.request(make(2, n=3, namespace="other")))
    assert again.data == first.data and other.data == first.data[:3]  # replays, across pipelines
    assert len(model.batches) == 1
