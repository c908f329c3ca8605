"""The entry points of ``CacheSaverChatModel`` that read the run's metadata.

``_generate``/``_agenerate`` could read the namespace from their run manager, but ``_stream``/
``_astream`` get none, so ``invoke``/``ainvoke``/``stream``/``astream`` read
``ensure_config(config)["metadata"]`` themselves and pass it down as a private call keyword
(:class:`~._calls.Scope`), which never reaches the key, the inner model or the traced invocation
parameters. ``batch``/``abatch`` serve their inputs as one group, in input order (``_batching``).
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Iterator, Optional

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import RunnableConfig, ensure_config

from ._batching import arun_batch, run_batch
from ._calls import SCOPE_KW, Scope

__all__ = ["RunMetadataEntryPoints"]


class RunMetadataEntryPoints:
    """Mixed into ``CacheSaverChatModel`` before ``BaseChatModel`` (cooperative ``super()``);
    the model provides ``_get_hosted()``."""

    _get_hosted: Any

    def invoke(self, input: LanguageModelInput, config: Optional[RunnableConfig] = None, *,
               stop: Optional[list[str]] = None, **kwargs: Any) -> AIMessage:
        config = ensure_config(config)
        kwargs.setdefault(SCOPE_KW, Scope(config.get("metadata") or {}))
        return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(self, input: LanguageModelInput, config: Optional[RunnableConfig] = None, *,
                      stop: Optional[list[str]] = None, **kwargs: Any) -> AIMessage:
        config = ensure_config(config)
        kwargs.setdefault(SCOPE_KW, Scope(config.get("metadata") or {}))
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(self, input: LanguageModelInput, config: Optional[RunnableConfig] = None, *,
               stop: Optional[list[str]] = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        config = ensure_config(config)
        kwargs.setdefault(SCOPE_KW, Scope(config.get("metadata") or {}))
        yield from super().stream(input, config, stop=stop, **kwargs)

    async def astream(self, input: LanguageModelInput, config: Optional[RunnableConfig] = None, *,
                      stop: Optional[list[str]] = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        config = ensure_config(config)
        scope = kwargs.setdefault(SCOPE_KW, Scope(config.get("metadata") or {}))
        stream = super().astream(input, config, stop=stop, **kwargs)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            if isinstance(scope, Scope) and scope.leave is not None:
                scope.leave()  # at once, not when the garbage collector closes _astream
            await stream.aclose()

    def batch(self, inputs: list[LanguageModelInput], config: Any = None, *, return_exceptions: bool = False,
              **kwargs: Any) -> list[Any]:
        """LangChain's ``batch``, with the inputs served in input order (see ``_batching``)."""
        if len(inputs) < 2:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        return run_batch(self._get_hosted(), self.invoke, inputs, config, return_exceptions, kwargs)

    async def abatch(self, inputs: list[LanguageModelInput], config: Any = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """LangChain's ``abatch``, with the inputs served in input order (see ``_batching``)."""
        if len(inputs) < 2:
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        return await arun_batch(self._get_hosted(), self.ainvoke, inputs, config, return_exceptions, kwargs)
