"""The batch backend ``cachesaver batches collect``/``cancel`` use for batches submitted
through ``CacheSaverChatModel(batch_api=...)`` (entry point ``langchain`` of group
``cachesaver.batch_backends``).

The journal keeps no credential and no live object: the backend is the one the wrapper uses
(:class:`._batches.OpenAIBatchBackend`) over a ``ChatOpenAI`` of the recorded model at the
recorded endpoint (or ``--api-base``), whose API key ``ChatOpenAI`` reads from the environment
(``OPENAI_API_KEY``). Answers are turned into samples by that ``ChatOpenAI``, as in the process
that submitted them, and billed by :func:`._pricing.batch_price` with the price the batch
recorded (``info["price"]``, see :meth:`OpenAIBatchBackend.describe`): ``"none"`` bills 0;
the default price, a batch recorded without one and ``"custom"`` (a ``price=`` function, which
a journal cannot keep) bill litellm's batch price.

Collecting and cancelling only find, poll, download and cancel: nothing is ever submitted
here, so the request returned carries no call.
"""
from __future__ import annotations

from typing import Optional

from cachesaver.errors import InvalidRequestError

from ._batches import OpenAIBatchBackend
from ._model import ChatRequest
from ._pricing import Price, litellm_price

__all__ = ["batch_backend"]


def batch_backend(info: dict, api_base: Optional[str]) -> "tuple[OpenAIBatchBackend, ChatRequest]":
    """The backend and a request of the batch ``info`` describes (see the module docstring)."""
    import openai
    from langchain_openai import ChatOpenAI

    kwargs: dict = {"model": str(info.get("model") or "")}
    base = api_base or info.get("endpoint")
    if base:
        kwargs["base_url"] = str(base)
    try:
        inner = ChatOpenAI(**kwargs)
    except openai.OpenAIError:  # no key in the environment (the SDK's own message names no value)
        raise InvalidRequestError(
            "this batch was submitted through LangChain's ChatOpenAI, which reads its API key from the "
            "environment here: set OPENAI_API_KEY (the journal keeps no credential)") from None
    price: Optional[Price] = None if info.get("price") == "none" else litellm_price
    return OpenAIBatchBackend(inner, price), ChatRequest("[]", params={"model": kwargs["model"]})
