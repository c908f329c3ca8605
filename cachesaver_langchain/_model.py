"""The engine's model: asks the wrapped LangChain chat model for the samples the store lacks.

The engine calls :meth:`InnerModel.request` with the representative request of a key and
``n`` = the number of samples missing. We call the inner model's *private* ``_agenerate`` /
``_astream`` with ``run_manager=None``: the public methods would open a second traced run (and
consult LangChain's global cache, which would collapse samples); the wrapper's own run already
traces the call.

- ``n`` samples: one call with ``n=k`` when the inner model has an ``n`` field (ChatOpenAI), else
  ``k`` concurrent calls (a call that fails while others succeed costs only its own sample: the
  engine stores what arrived and asks again for the rest).
- Live streaming: when the representative is a stream that asked for one sample, its chunks go
  to the caller's sink as they arrive and the merged message is stored. Only when the sample
  being generated is the very next one of the representative's namespace (its ledger position
  equals the list length) is it streamed live; otherwise the caller will receive a different,
  already stored sample, and gets that one replayed instead.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.outputs.chat_generation import merge_chat_generation_chunks

from cachesaver.errors import InvalidRequestTypeError, ModelOutputError
from cachesaver.keys import request_key
from cachesaver.typedefs import Request, Response, SingleRequestModel, Usage, unkeyed

from ._codec import SAMPLE_FORMAT, live_copy, make_sample, split_usage
from ._sink import ChunkSink

__all__ = ["ChatRequest", "LiveCall", "InnerModel"]

log = logging.getLogger("cachesaver.langchain.model")


@dataclass
class LiveCall:
    """What the inner model needs beyond the key: the live objects of the call (never stored)."""

    messages: list[BaseMessage]
    stop: Optional[list[str]]
    kwargs: dict[str, Any]
    sink: Optional[ChunkSink] = None


@dataclass(frozen=True)
class ChatRequest(Request):
    """``prompt`` = the messages as JSON (see ``_codec.message_payload``)."""

    params: dict = field(default_factory=dict)
    format: str = SAMPLE_FORMAT
    call: Optional[LiveCall] = unkeyed(default=None)


class InnerModel(SingleRequestModel):
    def __init__(self, inner: BaseChatModel) -> None:
        self.inner = inner
        cls = type(inner)
        self.native_n = "n" in cls.model_fields
        self.can_stream = cls._astream is not BaseChatModel._astream or cls._stream is not BaseChatModel._stream
        # Usage in streams is opt-in for OpenAI-compatible models (``stream_usage``).
        self._stream_usage = (
            "stream_usage" in cls.model_fields
            or "stream_usage" in inspect.signature(inner._astream).parameters
        )
        self.pipeline: Any = None  # set by the wrapper once the pipeline exists (stream gate)

    async def request(self, request: Request) -> Response:
        call = getattr(request, "call", None)
        if not isinstance(call, LiveCall):
            raise InvalidRequestTypeError(
                "InnerModel only serves requests built by CacheSaverChatModel (ChatRequest with a "
                "LiveCall); call the chat model instead of its pipeline"
            )
        if request.n == 1 and call.sink is not None and self.can_stream and await self._streams_live(request):
            return await self._stream(call)
        if self.native_n:
            return self._response([await self._generate(call, request.n)])
        results = await asyncio.gather(*(self._generate(call) for _ in range(request.n)), return_exceptions=True)
        done = [r for r in results if not isinstance(r, BaseException)]
        if not done:
            raise next(r for r in results if isinstance(r, BaseException))
        if len(done) < len(results):
            log.warning("%d of %d calls to %s failed; the engine asks again for the missing samples",
                        len(results) - len(done), len(results), type(self.inner).__name__)
        return self._response(done)

    async def _generate(self, call: LiveCall, n: Optional[int] = None) -> ChatResult:
        inner = self.inner
        if inner.rate_limiter is not None:
            await inner.rate_limiter.aacquire(blocking=True)
        kwargs = dict(call.kwargs)
        if n is not None:
            kwargs["n"] = n
        return await inner._agenerate(call.messages, stop=call.stop, run_manager=None, **kwargs)

    def _response(self, results: list[ChatResult]) -> Response:
        samples: list[dict[str, Any]] = []
        prompt_tokens = completion_tokens = 0
        for result in results:
            generations = result.generations
            if not generations:
                continue
            llm_output = dict(result.llm_output or {})
            usage = _call_usage(generations, llm_output)
            if len(generations) > 1:
                llm_output.pop("token_usage", None)  # the whole call's figure, not this sample's
            shares = split_usage(usage, len(generations))
            for generation, share in zip(generations, shares):
                samples.append(make_sample(generation.message, generation.generation_info, share, llm_output))
            if usage:
                prompt_tokens += int(usage.get("input_tokens") or 0)
                completion_tokens += int(usage.get("output_tokens") or 0)
        return Response(data=samples, usage=Usage(prompt_tokens, completion_tokens, 0.0))

    # -- live streaming ----------------------------------------------------------------------
    async def _streams_live(self, request: Request) -> bool:
        """Will the sample generated now be the one the representative receives?"""
        pipeline = self.pipeline
        if pipeline is None:
            return False
        key = request_key(request)
        return await pipeline.ledger.position(request.namespace, key) == await pipeline.store.length(key)

    async def _stream(self, call: LiveCall) -> Response:
        inner, sink = self.inner, call.sink
        assert sink is not None
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
        sample = make_sample(merged.message, merged.generation_info, usage)
        sink.sample_id = sample["sample_id"]
        usage = usage or {}
        return Response(
            data=[sample],
            usage=Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0), 0.0),
        )


def _call_usage(generations: list[Any], llm_output: dict[str, Any]) -> Optional[dict[str, Any]]:
    """What one inner call billed, as LangChain usage metadata (providers put it per message)."""
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
