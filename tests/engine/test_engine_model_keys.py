"""Issue 20, item 3: the model is part of every engine key.

The seed's pattern, ``OnlineAPI(model=OnlineLLM(client, "gpt-4o-mini"), cache=...)``, used to key
only the ``Request`` fields: switching the wrapper to another model on the same cache directory
replayed the first model's samples with 0 calls.
"""
from __future__ import annotations

import logging
from typing import Any

import pytest

from cachesaver.errors import InvalidRequestTypeError
from cachesaver.keypolicy import MODEL_FIELD, MODEL_IN_REQUEST
from cachesaver.keys import make_key, request_key
from cachesaver.pipelines import LocalAPI, OnlineAPI
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request


class OnlineLLM(FakeModel):
    """The seed README's model shape: the model name in ``self.model``."""

    def __init__(self, model: str, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.model = model


class Declared(FakeModel):
    """A model that declares its identity the documented way."""

    def __init__(self, model_id: Any, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.model_id = model_id


async def _one(model: Any, store: str, namespace: str, **kwargs: Any) -> str:
    async with OnlineAPI(model=model, cache=store, timeout=0, **kwargs) as pipeline:
        return (await pipeline.request(Request("Name a colour.", namespace=namespace))).data[0]


async def test_the_seed_pattern_keys_the_model_name(tmp_path):
    store = str(tmp_path / "cache")
    mini, large = OnlineLLM("gpt-4o-mini", seed=1), OnlineLLM("gpt-4o", seed=2)
    first = await _one(mini, store, "run-1")
    other = await _one(large, store, "run-2")
    assert large.call_count == 1, "gpt-4o was served gpt-4o-mini's sample"
    assert other != first
    again = await _one(OnlineLLM("gpt-4o-mini", seed=3), store, "run-3")
    assert again == first  # the same model still replays from the store


async def test_a_declared_model_id_and_an_explicit_argument_are_keyed(tmp_path):
    store = str(tmp_path / "cache")
    await _one(Declared("provider/a"), store, "x")
    b = Declared("provider/b")
    await _one(b, store, "x")
    assert b.call_count == 1
    # model_id= wins over what the model declares: this is provider/a again, a hit.
    c = Declared("provider/b")
    await _one(c, store, "y", model_id="provider/a")
    assert c.call_count == 0


async def test_the_key_is_the_hash_of_the_stored_request_with_the_model(tmp_path):
    async with OnlineAPI(model=OnlineLLM("gpt-4o-mini"), cache=str(tmp_path / "c"), timeout=0) as pipeline:
        response = await pipeline.request(Request("p"))
        meta = await pipeline.store.get_meta(response.key)
    assert response.key == make_key({"prompt": "p", MODEL_FIELD: "gpt-4o-mini"})
    assert response.key == pipeline.key_of(Request("p"))
    assert b'"cachesaver_model":"gpt-4o-mini"' in bytes(meta)


async def test_a_model_that_declares_nothing_warns_once_and_keeps_its_keys(tmp_path, caplog):
    model = FakeModel()
    with caplog.at_level(logging.WARNING, logger="cachesaver.pipelines"):
        async with OnlineAPI(model=model, cache=str(tmp_path / "c"), timeout=0) as pipeline:
            response = await pipeline.request(Request("p"))
            await pipeline.request(Request("q"))
    warnings = [r for r in caplog.records if "declares no model identity" in r.getMessage()]
    assert len(warnings) == 1
    assert pipeline.model_id is None
    assert response.key == request_key(Request("p"))  # unchanged: such caches keep replaying


async def test_requests_that_name_their_model_add_nothing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cachesaver.pipelines"):
        async with OnlineAPI(model=Declared(MODEL_IN_REQUEST), cache=str(tmp_path / "c"), timeout=0) as pipeline:
            response = await pipeline.request(Request("p"))
    assert response.key == request_key(Request("p"))
    assert not [r for r in caplog.records if "declares no model identity" in r.getMessage()]


async def test_composed_pipelines_key_the_inner_model(tmp_path):
    inner_model = Declared("local/llama")
    local = LocalAPI(model=inner_model, cache=str(tmp_path / "inner"), timeout=0)
    async with OnlineAPI(model=local, cache=str(tmp_path / "outer"), timeout=0) as outer:
        assert outer.model_id == "local/llama"
        response = await outer.request(Request("p"))
    await local.aclose()
    assert response.key == make_key({"prompt": "p", MODEL_FIELD: "local/llama"})


@pytest.mark.parametrize("bad", ["", 3, ["gpt"]])
def test_a_bad_model_id_is_a_clear_error(tmp_path, bad):
    with pytest.raises(InvalidRequestTypeError, match="model_id"):
        OnlineAPI(model=FakeModel(), cache=str(tmp_path / "c"), model_id=bad)


async def test_samples_keyed_before_models_were_keyed_are_pointed_out(tmp_path, caplog):
    store = str(tmp_path / "cache")
    await _one(FakeModel(seed=1), store, "old")       # key policy 1: no model in the key
    with caplog.at_level(logging.WARNING, logger="cachesaver.pipelines"):
        model = OnlineLLM("gpt-4o-mini")
        await _one(model, store, "new")
    assert model.call_count == 1  # never served another model's (or an unknown model's) sample
    hints = [r.getMessage() for r in caplog.records if "migrate-keys" in r.getMessage()]
    assert len(hints) == 1 and "--model gpt-4o-mini" in hints[0]


async def test_migrate_keys_carries_policy_1_samples_over_for_one_model(tmp_path):
    from cachesaver.migrate import migrate_keys

    store = str(tmp_path / "cache")
    async with OnlineAPI(model=FakeModel(seed=1), cache=store, timeout=0) as old:   # policy 1 keys
        before = (await old.request(Request("Name a colour.", n=3, namespace="old"))).data
    dry = await migrate_keys(store, "gpt-4o-mini", dry_run=True)
    assert [count for _, _, count in dry.moved] == [3]
    report = await migrate_keys(store, "gpt-4o-mini")
    assert report.samples == 3 and report.moved[0][1] == make_key({"prompt": "Name a colour.", MODEL_FIELD: "gpt-4o-mini"})
    again = await migrate_keys(store, "gpt-4o-mini")          # idempotent: nothing mixed or duplicated
    assert again.samples == 0 and again.already_keyed == 1 and len(again.target_taken) == 1

    model = OnlineLLM("gpt-4o-mini")
    async with OnlineAPI(model=model, cache=store, timeout=0) as new:
        after = (await new.request(Request("Name a colour.", n=3, namespace="new"))).data
    assert after == before and model.call_count == 0          # replayed, in order, with 0 calls


async def test_migrate_keys_leaves_adapter_requests_alone(tmp_path):
    from cachesaver.migrate import migrate_keys
    from cachesaver.opening import open_store

    store = open_store(str(tmp_path / "cache"))
    for request in ({"model": "openai/gpt-4o-mini", "prompt": [], "params": {}},        # litellm's shape
                    {"format": "langchain-aimessage/1", "prompt": [], "params": {"model": "m"}}):
        from cachesaver.keys import canonical_json
        meta = canonical_json(request)
        await store.append(make_key(request), [b'{"v":1}'], meta)
    report = await migrate_keys(store, "gpt-4o-mini", move=True)
    assert report.moved == [] and report.already_keyed == 2
    assert len([k async for k in store.iter_keys()]) == 2
    await store.aclose()


def test_the_migrate_keys_command(tmp_path, capsys):
    import asyncio

    from cachesaver.cli import main

    store = str(tmp_path / "cache")

    async def old_run():
        async with OnlineAPI(model=FakeModel(seed=1), cache=store, timeout=0) as pipeline:
            return (await pipeline.request(Request("Name a colour.", n=2))).data

    before = asyncio.run(old_run())
    assert main(["migrate-keys", "--cache", store, "--model", "gpt-4o-mini", "--dry-run"]) == 0
    assert "would carry over 1 keys (2 samples)" in capsys.readouterr().out
    assert main(["migrate-keys", "--cache", store, "--model", "gpt-4o-mini", "--move"]) == 0
    assert "moved 1 keys (2 samples)" in capsys.readouterr().out

    async def new_run():
        model = OnlineLLM("gpt-4o-mini")
        async with OnlineAPI(model=model, cache=store, timeout=0) as pipeline:
            return (await pipeline.request(Request("Name a colour.", n=2))).data, model.call_count

    assert asyncio.run(new_run()) == (before, 0)
    assert main(["migrate-keys", "--cache", store, "--model", "x", "--key", "ffff"]) != 0  # no such key
