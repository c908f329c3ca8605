"""The wrapper runs the inner model on its own event loop: a model (or any ChatOpenAI sharing
langchain-openai's cached HTTP client) already used on the caller's loop must still work."""
from __future__ import annotations

from cachesaver_langchain import cachesaver_config


async def test_inner_model_used_on_the_callers_loop_still_works_wrapped(make_inner, make_chat, fake_server):
    inner = make_inner()
    direct = await inner.ainvoke("hello")  # binds the shared httpx pool to this loop
    chat = make_chat(inner)
    wrapped = await chat.ainvoke("hello", config=cachesaver_config("A"))
    again = await inner.ainvoke("hello")  # and the caller's own model keeps working on its loop
    assert fake_server.request_count == 3
    assert len({direct.content, wrapped.content, again.content}) == 3
    assert inner.http_async_client is None  # the caller's model object was not modified
    assert chat.chat_model is not inner and chat.chat_model.http_async_client is not None
