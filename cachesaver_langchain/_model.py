"""The engine's model: asks the wrapped LangChain chat model for the samples the store lacks.

A :class:`~cachesaver.runtime.FanOutModel`: one call with ``n=k`` when the inner model has an
``n`` field (ChatOpenAI), else ``k`` concurrent calls; a live stream into the sink of the caller
the engine hands the first new sample to. We call the inner model's *private* ``_agenerate`` /
``_astream`` with ``run_manager=None``: the public methods would open a second traced run (and
consult LangChain's global cache, which would collapse samples); the wrapper's own run already
traces the call. The inner model's rate limiter is applied here for the same reason.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.outputs.chat_generation import merge_chat_generation_chunks

from cachesaver.errors import InvalidRequestTypeError, ModelOutputError
from cachesaver.runtime import ChunkSink, FanOutModel
from cachesaver.typedefs import Request, Usage, unkeyed

from ._codec import SAMPLE_FORMAT, live_copy, make_sample
from ._inner import configure_inner
from ._pricing import Price, model_of, priced

__all__ = ["ChatRequest", "LiveCall", "InnerModel", "InnerFactory"]


@dataclass
class LiveCall:
    """What the inner model needs beyond the key: the live objects of the call (never stored)."""

    messages: list[BaseMessage]
    stop: Optional[list[str]]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class ChatRequest(Request):
    """``prompt`` = the messages as JSON (see ``_codec.message_payload``)."""

    params: dict = field(default_factory=dict)
    format: str = SAMPLE_FORMAT
    call: Optional[LiveCall] = unkeyed(default=None)
    sink: Optional[ChunkSink] = unkeyed(default=None)


class InnerModel(FanOutModel):
    def __init__(self, inner: BaseChatModel, price: Optional[Price] = None) -> None:
        self.inner = inner
        self.price = price  # dollars of a call (see _pricing); None: no prices
        cls = type(inner)
        self._native_n = "n" in cls.model_fields
        self._can_stream = cls._astream is not BaseChatModel._astream or cls._stream is not BaseChatModel._stream
        # Usage in streams is opt-in for OpenAI-compatible models (``stream_usage``).
        self._stream_usage = (
            "stream_usage" in cls.model_fields
            or "stream_usage" in inspect.signature(inner._astream).parameters
        )

    def describe(self, request: Request) -> str:
        return type(self.inner).__name__

    def native_n(self, request: Request) -> bool:
        return self._native_n

    def can_stream(self, request: Request) -> bool:
        return self._can_stream

    async def call(self, request: Request, n: Optional[int]) -> tuple[list[Any], Usage]:
        call = _live_call(request)
        inner = self.inner
        if inner.rate_limiter is not None:
            await inner.rate_limiter.aacquire(blocking=True)
        kwargs = dict(call.kwargs)
        if n is not None:
            kwargs["n"] = n
        result = await inner._agenerate(call.messages, stop=call.stop, run_manager=None, **kwargs)
        samples, usage = _samples(result)
        if result.generations:
            usage = self._priced(result.generations[0].message, usage)
        return samples, usage

    async def stream_call(self, request: Request, sink: ChunkSink) -> tuple[list[Any], Usage]:
        call = _live_call(request)
        inner = self.inner
        if inner.rate_limiter is not None:
            await inner.rate_limiter.aacquire(blocking=True)
        kwargs = dict(call.kwargs)
        if self._stream_usage:
            kwargs.setdefault("stream_usage", True)
        chunks = []
        # Read to the end even if the caller leaves (the sink then drops chunks): a stream
        # abandoned halfway still stores its whole sample, never a hole or a fragment (G5).
        async for chunk in inner._astream(call.messages, stop=call.stop, run_manager=None, **kwargs):
            chunks.append(chunk)
            if isinstance(chunk.message.content, list):
                sink.list_content = True
            await sink.push(live_copy(chunk))
        merged = merge_chat_generation_chunks(chunks)
        if merged is None:
            raise ModelOutputError(f"{type(inner).__name__} streamed no chunks")
        usage = merged.message.usage_metadata if isinstance(merged.message, AIMessage) else None
        sample = make_sample(merged.message, merged.generation_info)
        sink.sample_id = sample["sample_id"]
        return [sample], self._priced(merged.message, _usage(usage))

    def _priced(self, message: Any, usage: Usage) -> Usage:
        """``usage`` with the call's dollars (the engine splits them over its samples, G8)."""
        if self.price is None:
            return usage
        model = model_of(message, self.inner)
        cost = priced(self.price, model, int(usage.prompt_tokens), int(usage.completion_tokens))
        return Usage(usage.prompt_tokens, usage.completion_tokens, cost)


def _live_call(request: Request) -> LiveCall:
    call = getattr(request, "call", None)
    if not isinstance(call, LiveCall):
        raise InvalidRequestTypeError(
            "InnerModel only serves requests built by CacheSaverChatModel (ChatRequest with a "
            "LiveCall); call the chat model instead of its pipeline"
        )
    return call


def _samples(result: ChatResult) -> tuple[list[Any], Usage]:
    """One inner call's generations as samples, and what the call billed."""
    generations = result.generations
    if not generations:
        return [], Usage()
    llm_output = dict(result.llm_output or {})
    usage = _call_usage(generations, llm_output)
    if len(generations) > 1:
        llm_output.pop("token_usage", None)  # the whole call's figure, not this sample's
    samples = [make_sample(g.message, g.generation_info, llm_output) for g in generations]
    return samples, _usage(usage)


def _usage(usage: Optional[dict[str, Any]]) -> Usage:
    usage = usage or {}
    return Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0), 0.0)


def _call_usage(generations: list[Any], llm_output: dict[str, Any]) -> Optional[dict[str, Any]]:
    """What one inner call billed, as LangChain usage metadata (providers put it per message;
    with ``n=k`` each of the k messages carries the whole call's figure)."""
    message = generations[0].message
    usage = getattr(message, "usage_metadata", None)
    if usage:
        return dict(usage)
    token_usage = llm_output.get("token_usage") or {}
    if token_usage.get("prompt_tokens") is None and token_usage.get("completion_tokens") is None:
        return None
    prompt = int(token_usage.get("prompt_tokens") or 0)
    completion = int(token_usage.get("completion_tokens") or 0)
    return {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion}


class InnerFactory:
    """The engine model for the pipeline: the configured inner model in the process that built
    it; in a forked child, a copy with its own HTTP clients (the parent's belong to the parent's
    engine loop, which does not exist there)."""

    def __init__(self, inner: BaseChatModel, price: Optional[Price] = None) -> None:
        self.inner = inner
        self.price = price
        self.pid = os.getpid()

    def __call__(self) -> InnerModel:
        if os.getpid() == self.pid:
            return InnerModel(self.inner, self.price)
        return InnerModel(configure_inner(self.inner, {}, new_process=True), self.price)
