"""The engine's model: the real litellm call (``n=m``, or ``m`` calls for providers without n).

A :class:`~cachesaver.runtime.FanOutModel`: the runtime decides between one call with ``n`` and
``m`` calls (partial failures tolerated), and splits usage over samples. This module only says
how to make one real call and how to read its answer.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from cachesaver.errors import ModelOutputError
from cachesaver.runtime import FanOutModel, get_host
from cachesaver.typedefs import Request, Usage, unkeyed

from ._clients import close_litellm_clients
from ._samples import is_priced, response_cost, response_tokens, split_response

__all__ = ["LiteLLMRequest", "RealCall", "LiteLLMBackend", "supports_n", "NO_LITELLM_CACHE"]

#: Always passed to inner calls: a user's global ``litellm.cache`` must neither answer nor
#: store them (it would replay one answer for every sample).
NO_LITELLM_CACHE = {"caching": False, "cache": {"no-cache": True, "no-store": True}}


@dataclass(frozen=True)
class RealCall:
    """Everything the real call needs beyond ``n``; never hashed, never stored."""

    invoke: Callable[..., Awaitable[Any]]        # litellm.acompletion or router.acompletion
    model: str                                   # what to pass as model= to ``invoke``
    messages: Any
    kwargs: dict = field(default_factory=dict)   # optional params + transport settings
    use_n: Any = True                            # bool, or a callable deciding lazily (misses only)
    provider: str = ""
    home_loop: Optional[asyncio.AbstractEventLoop] = None  # run the call there (see LiteLLMBackend)


@dataclass(frozen=True)
class LiteLLMRequest(Request):
    """An engine request for a chat completion. ``prompt`` holds the normalised messages."""

    model: str = ""                                  # keyed: provider/name or the model group
    params: dict = field(default_factory=dict)       # keyed: output-shaping optional params
    endpoint: Optional[str] = None                   # keyed only when the user asks (key_api_base)
    call: Optional[RealCall] = unkeyed(default=None)
    sink: Any = unkeyed(default=None)                # a streaming caller's live-chunk sink


class LiteLLMBackend(FanOutModel):
    """Makes the real calls the engine asks for; reports litellm's own cost figures.

    ``wrap_call``: a context-manager factory entered around every real call
    (``internal_sub_call`` for the provider, so litellm neither logs nor bills it twice).
    """

    def __init__(self, wrap_call: Optional[Callable[[], Any]] = None) -> None:
        self._wrap_call = wrap_call
        # Clients litellm opens for real calls made on the engine's loop are closed with it.
        get_host().on_close(close_litellm_clients)

    def describe(self, request: Request) -> str:
        call = _real_call(request)
        return call.model

    def native_n(self, request: Request) -> bool:
        use_n = _real_call(request).use_n
        return bool(use_n() if callable(use_n) else use_n)

    async def call(self, request: Request, n: Optional[int]) -> tuple[list[Any], Usage]:
        call = _real_call(request)
        kwargs = dict(call.kwargs)
        kwargs.update(NO_LITELLM_CACHE)
        if n is not None:
            kwargs["n"] = n
        response = await self._on_home_loop(call, kwargs)
        prompt_tokens, completion_tokens = response_tokens(response)
        usage = Usage(prompt_tokens, completion_tokens, response_cost(response, call.model))
        return split_response(response, call.provider), usage

    def can_stream(self, request: Request) -> bool:
        return _real_call(request).home_loop is None  # the Router path replays instead

    async def stream_call(self, request: Request, sink: Any) -> tuple[list[Any], Usage]:
        """One streamed real call: each chunk goes to ``sink`` as it arrives; the whole answer
        is read to the end (also when the caller left) and returned as one sample."""
        import litellm

        call = _real_call(request)
        kwargs = dict(call.kwargs)
        kwargs.update(NO_LITELLM_CACHE)
        kwargs.update(stream=True, stream_options={"include_usage": True})
        chunks = []
        # The whole stream inside the wrap: litellm logs a stream when it ends.
        with self._wrap_call() if self._wrap_call is not None else contextlib.nullcontext():
            stream = await call.invoke(model=call.model, messages=call.messages, **kwargs)
            async for chunk in stream:
                chunks.append(chunk)
                if chunk.choices:  # the usage tail is sent by the caller's side (_streams)
                    await sink.push(chunk.model_copy(deep=True))
        response = _assemble(litellm, chunks, call)
        if response is None:
            raise ModelOutputError(f"{call.model} streamed no chunks")
        prompt_tokens, completion_tokens = response_tokens(response)
        usage = Usage(prompt_tokens, completion_tokens, response_cost(response, call.model))
        samples = split_response(response, call.provider)
        sink.sample_id = samples[0]["id"] if samples else None
        return samples, usage

    async def _on_home_loop(self, call: RealCall, kwargs: dict) -> Any:
        """The caller's own loop if it has one (the Router): litellm then logs the call there,
        next to the user's other calls, instead of moving its logging worker to the engine's."""
        home = call.home_loop
        if home is not None and home is not asyncio.get_running_loop() and home.is_running():
            try:
                future = asyncio.run_coroutine_threadsafe(self._invoke(call, kwargs), home)
            except RuntimeError:  # the loop closed meanwhile: make the call here
                return await self._invoke(call, kwargs)
            return await asyncio.wrap_future(future)
        return await self._invoke(call, kwargs)

    async def _invoke(self, call: RealCall, kwargs: dict) -> Any:
        if self._wrap_call is None:
            return await call.invoke(model=call.model, messages=call.messages, **kwargs)
        with self._wrap_call():
            return await call.invoke(model=call.model, messages=call.messages, **kwargs)


def _assemble(litellm: Any, chunks: list, call: RealCall) -> Any:
    """``litellm.stream_chunk_builder`` of a streamed answer, without its print.

    The builder prices the answer by the model name the server sent; for a name litellm cannot
    place (a local or self-hosted model) its provider lookup prints a red "Provider List" line
    (twice per stream) and a library never prints. Such chunks are built under the name the call
    was made with (``openai/my-model``, which names its provider; the price is then simply not
    found) and the answer keeps the server's name."""
    served = getattr(chunks[0], "model", None) if chunks else None
    if not served or is_priced(litellm, served):
        return litellm.stream_chunk_builder(chunks, messages=call.messages)
    for chunk in chunks:
        chunk.model = call.model
    response = litellm.stream_chunk_builder(chunks, messages=call.messages)
    if response is not None:
        response.model = served
    return response


def _real_call(request: Request) -> RealCall:
    call = getattr(request, "call", None)
    if not isinstance(call, RealCall):
        raise TypeError("LiteLLMRequest.call is missing: build requests through cachesaver_litellm")
    return call


@functools.lru_cache(maxsize=1024)
def supports_n(model: str, provider: str) -> bool:
    """Whether litellm says ``model`` accepts ``n`` (unknown: assume no, never send it)."""
    import litellm

    try:
        supported = litellm.get_supported_openai_params(model=model, custom_llm_provider=provider or None)
    except Exception:
        return False
    return bool(supported) and "n" in supported
