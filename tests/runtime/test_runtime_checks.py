"""Issue 21: the same bad namespace or ``n`` raises the same class from the engine and every
adapter (a wrong type: InvalidRequestTypeError; a wrong value: InvalidRequestError).

Before, ``namespace=""`` was accepted by the engine, refused by the adapters' metadata reader
as a TypeError and by their constructors as a ValueError.
"""
from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

from cachesaver.errors import InvalidRequestError, InvalidRequestTypeError
from cachesaver.pipelines import OnlineAPI
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

CASES = [
    ("namespace", "", InvalidRequestError),
    ("namespace", 5, InvalidRequestTypeError),
    ("n", 0, InvalidRequestError),
    ("n", "2", InvalidRequestTypeError),
]


def _engine(tmp_path, field, value):
    model = FakeModel()

    async def run():
        async with OnlineAPI(model=model, cache=str(tmp_path / "e"), timeout=0) as pipeline:
            await pipeline.request(Request("p", **{field: value}))

    import asyncio
    asyncio.run(run())
    return model


def _litellm(tmp_path, server, field, value):
    import litellm

    import cachesaver_litellm
    cachesaver_litellm.register(store=str(tmp_path / "l"), timeout=0)
    try:
        extra = {"metadata": {"cachesaver_namespace": value}} if field == "namespace" else {"n": value}
        litellm.completion(model="cachesaver/openai/m", messages=[{"role": "user", "content": "p"}],
                           api_base=server.base_url, api_key="sk-x", max_retries=0, **extra)
    finally:
        cachesaver_litellm.unregister()


def _langchain(tmp_path, server, field, value):
    from langchain_openai import ChatOpenAI

    from cachesaver_langchain import CacheSaverChatModel
    chat = CacheSaverChatModel(chat_model=ChatOpenAI(model="m", base_url=server.base_url, api_key="sk-x",
                                                     max_retries=0), store=str(tmp_path / "c"))
    try:
        if field == "namespace":
            chat.invoke("p", config={"metadata": {"cachesaver_namespace": value}})
        else:
            chat.invoke("p", n=value)
    finally:
        chat.close()


@pytest.mark.parametrize("field,value,error", CASES, ids=[f"{f}={v!r}" for f, v, _ in CASES])
def test_one_error_class_per_bad_value_everywhere(tmp_path, fake_server, field, value, error):
    other = InvalidRequestTypeError if error is InvalidRequestError else InvalidRequestError
    for name, call in (("engine", lambda: _engine(tmp_path, field, value)),
                       ("litellm", lambda: _litellm(tmp_path, fake_server, field, value)),
                       ("langchain", lambda: _langchain(tmp_path, fake_server, field, value))):
        with pytest.raises(Exception) as caught:
            call()
        found = _ours(caught.value)
        assert isinstance(found, error) and not isinstance(found, other), f"{name}: {caught.value!r}"
        assert field in str(found)
    assert fake_server.request_count == 0


def _ours(exc: BaseException) -> BaseException:
    """The cachesaver error, also where litellm wraps a provider's exception around it."""
    seen = exc
    while seen is not None:
        if isinstance(seen, (InvalidRequestError, InvalidRequestTypeError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc
