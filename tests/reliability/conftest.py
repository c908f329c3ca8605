"""Fixtures for the reliability suite (issue 4): G5-G7 turned into measured behaviour.

Everything here is a real part: diskcache directories in tmp_path, the machine's Redis under a
random prefix (deleted afterwards by ``redis_store_factory``), real worker processes killed with
SIGKILL. Helpers are exposed as fixtures so the test modules stay independent of each other.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from cachesaver.codec import decode_sample
from cachesaver.stores.base import Store
from cachesaver.testing import FakeModel


class TaggedModel(FakeModel):
    """A FakeModel whose samples say who made them: ``"<tag>|<prompt>|<k>"``.

    Distinct across processes and runs (the tag differs), so a sample found anywhere can be
    traced back to the exact model call that produced it.
    """

    tag: str = "m"

    def sample_text(self, prompt: Any, k: int) -> str:
        return f"{self.tag}|{prompt}|{k}"


@pytest.fixture
def tagged_model() -> Callable[..., TaggedModel]:
    def make(tag: str = "m", **kwargs: Any) -> TaggedModel:
        model = TaggedModel(**kwargs)
        model.tag = tag
        return model

    return make


async def dump_store(store: Store) -> dict[str, list[Any]]:
    """Every key with its decoded samples, in list order (raises CorruptSampleError on garbage)."""
    out: dict[str, list[Any]] = {}
    async for key in store.iter_keys():
        length = await store.length(key)
        raws = await store.read(key, 0, length)
        assert len(raws) == length, f"key {key} claims {length} samples but {len(raws)} are readable"
        out[key] = [decode_sample(raw, key=key, index=i).data for i, raw in enumerate(raws)]
    return out


@pytest.fixture
def read_store() -> Callable[[Store], Any]:
    return dump_store


def pipeline_leftovers(pipeline: Any) -> dict[str, Any]:
    """Per-request state a pipeline still holds; all empty once every caller has its answer."""
    leftovers = {
        "inflight_ids": set(pipeline._inflight_ids),
        "tick": list(pipeline._tick),
        "tasks": {t for t in pipeline._tasks if not t.done()},
        "turns": dict(pipeline.cacher._turns),
        "unbilled": {k: v for k, v in pipeline.cacher._unbilled.items() if v},
    }
    leftovers["queued"] = pipeline.queues.held()
    from cachesaver.pipelines import OnlineAPI

    if isinstance(pipeline, OnlineAPI):  # LocalAPI's batcher holds model items, checked elsewhere
        leftovers["batcher"] = list(pipeline._batcher._items)
    return {name: value for name, value in leftovers.items() if value}


@pytest.fixture
def leftovers() -> Callable[[Any], dict[str, Any]]:
    return pipeline_leftovers


@pytest.fixture
def other_tasks() -> Callable[[], list[asyncio.Task]]:
    """Tasks of the running loop other than the current one (a leak check)."""

    def tasks() -> list[asyncio.Task]:
        current = asyncio.current_task()
        return [t for t in asyncio.all_tasks() if t is not current and not t.done()]

    return tasks


@pytest.fixture
def redis_url_with_prefix(redis_store_factory) -> str:
    """A redis:// URL whose ``prefix`` is the factory's random one (its keys are deleted after)."""
    return f"{redis_store_factory.url}?prefix={redis_store_factory.prefix}"
