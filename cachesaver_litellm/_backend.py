"""The engine's model: one real litellm call (or several, for providers without ``n``).

The engine calls :meth:`LiteLLMBackend.request` with ``n`` = the missing count only. Providers
that accept ``n`` get one call with ``n=m``; the others (Anthropic, ...) get ``m`` concurrent
calls without ``n`` (an unsupported parameter is never sent). Calls that fail while others of
the same top-up succeed are dropped: the engine stores what arrived and asks again for the
rest, so no paid-for sample is thrown away and no caller gets fewer choices than asked.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from cachesaver.typedefs import Request, Response, SingleRequestModel, Usage, unkeyed

from ._samples import response_cost, response_tokens, split_response

__all__ = ["LiteLLMRequest", "RealCall", "LiteLLMBackend", "supports_n"]

log = logging.getLogger("cachesaver.litellm.backend")

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


class LiteLLMBackend(SingleRequestModel):
    """Makes the real calls the engine asks for; reports litellm's own cost figures."""

    def __init__(self, wrap_call: Optional[Callable[[], Any]] = None) -> None:
        # A context manager factory entered around every real call (internal_sub_call for the
        # provider, so litellm neither logs nor bills the inner call a second time).
        self._wrap_call = wrap_call
        #: Real litellm calls made (one per HTTP request the provider sees, retries aside) and
        #: how many of them failed. Equal to the engine's model calls when ``n`` is supported.
        self.real_calls = 0
        self.failed_real_calls = 0

    async def request(self, request: LiteLLMRequest) -> Response:  # type: ignore[override]
        call = request.call
        if call is None:
            raise TypeError("LiteLLMRequest.call is missing: build requests through cachesaver_litellm")
        m = request.n
        use_n = call.use_n() if callable(call.use_n) else call.use_n
        if use_n:
            responses = [await self._invoke(call, m)]
        else:
            outcomes = await asyncio.gather(*(self._invoke(call, None) for _ in range(m)),
                                            return_exceptions=True)
            responses = [r for r in outcomes if not isinstance(r, BaseException)]
            errors = [r for r in outcomes if isinstance(r, BaseException)]
            if not responses:
                raise errors[0]
            if errors:
                log.warning("%d of %d calls to %s failed; the engine asks again for the rest: %r",
                            len(errors), m, call.model, errors[0])
        data: list = []
        prompt_tokens = completion_tokens = 0
        cost = 0.0
        for response in responses:
            data.extend(split_response(response, call.provider))
            p, c = response_tokens(response)
            prompt_tokens += p
            completion_tokens += c
            cost += response_cost(response, call.model)
        return Response(data=data, usage=Usage(prompt_tokens, completion_tokens, cost))

    async def _invoke(self, call: RealCall, n: Optional[int]) -> Any:
        kwargs = dict(call.kwargs)
        kwargs.update(NO_LITELLM_CACHE)
        if n is not None:
            kwargs["n"] = n
        self.real_calls += 1
        try:
            home = call.home_loop
            if home is not None and home is not asyncio.get_running_loop() and home.is_running():
                # The caller's own loop: litellm logs the call there, next to the user's other
                # calls, instead of moving its global logging worker onto the engine's loop.
                try:
                    future = asyncio.run_coroutine_threadsafe(self._call(call, kwargs), home)
                except RuntimeError:  # the loop closed meanwhile: make the call here
                    return await self._call(call, kwargs)
                return await asyncio.wrap_future(future)
            return await self._call(call, kwargs)
        except BaseException:
            self.failed_real_calls += 1
            raise

    async def _call(self, call: RealCall, kwargs: dict) -> Any:
        if self._wrap_call is None:
            return await call.invoke(model=call.model, messages=call.messages, **kwargs)
        with self._wrap_call():
            return await call.invoke(model=call.model, messages=call.messages, **kwargs)


@functools.lru_cache(maxsize=1024)
def supports_n(model: str, provider: str) -> bool:
    """Whether litellm says ``model`` accepts ``n`` (unknown: assume no, never send it)."""
    import litellm

    try:
        supported = litellm.get_supported_openai_params(model=model, custom_llm_provider=provider or None)
    except Exception:
        return False
    return bool(supported) and "n" in supported
