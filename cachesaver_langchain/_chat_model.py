"""``CacheSaverChatModel``: any LangChain chat model, with every call going through the engine.

Namespace and request id come from the run's metadata (``cachesaver_namespace``,
``cachesaver_request_id``), wherever LangChain put it: ``config=``, ``with_config``, a chain, a
LangGraph graph (read by the entry points in ``_entrypoints``). Calls run through the engine
runtime's ``HostedPipeline``: a hit is answered on the caller's own thread.
"""
from __future__ import annotations

import inspect
import logging
import os
import threading
from typing import Any, AsyncIterator, Callable, Iterator, Mapping, Optional, Sequence, Union

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator, model_validator

from cachesaver.checks import MAX_CONCURRENT_CALLS, MAX_FANOUT, MAX_N, call_bounds, check_max_n
from cachesaver.errors import InvalidRequestError, PipelineClosedError
from cachesaver.pipelines import OnlineAPI
from cachesaver.runtime import HostedPipeline, PipelineSettings, check_n, check_namespace
from cachesaver.stats import Stats
from cachesaver.stores import check_store_spec

from ._batches import batch_api_option
from ._batching import leave_group, member_of
from ._calls import NAMESPACE_KEY, REQUEST_ID_KEY, SCOPE_KW, Scope, chat_result, identity
from ._codec import message_payload
from ._entrypoints import RunMetadataEntryPoints
from ._inner import FORWARDED, InnerView, configure_inner
from ._model import ChatRequest, InnerFactory, LiveCall
from ._pricing import litellm_price
from ._runnables import repoint
from ._streaming import async_stream, sync_stream

__all__ = ["CacheSaverChatModel", "NAMESPACE_KEY", "REQUEST_ID_KEY", "STORE_ENV"]

log = logging.getLogger("cachesaver.langchain")

#: Environment variable giving the default ``store`` (else ``./.cachesaver``).
STORE_ENV = "CACHESAVER_STORE"

_HOSTED_LOCK = threading.Lock()


def _default_store() -> str:
    return os.environ.get(STORE_ENV) or "./.cachesaver"


def _private(model: BaseModel, name: str) -> Any:
    """``model.<name>`` for a private attribute, read from pydantic's private dict: the attribute
    itself is found only after a failed lookup and ``__getattr__`` (~2 us a read; a hit reads
    them four times)."""
    private = model.__pydantic_private__
    return private.get(name) if private is not None else getattr(model, name)


class CacheSaverChatModel(RunMetadataEntryPoints, BaseChatModel):
    """Wrap any chat model so that its samples are cached per namespace.

    Within a namespace every stored sample is handed out once (fresh samples on every call);
    another namespace, or a new instance (a new run), replays the stored ones from the first;
    concurrent identical calls are merged into one ``n=k`` call.

    ```python
    chat = CacheSaverChatModel(chat_model=ChatOpenAI(model="gpt-4o-mini"), store="./.cachesaver")
    await chat.ainvoke(messages, config={"metadata": {"cachesaver_namespace": "agent-1"}})
    ```

    ``n``: ``generate``/``agenerate`` return ``n`` generations per prompt (one call with ``n=k``
    when the inner model has ``n``, else ``k`` calls); ``invoke`` and ``stream`` always take one.
    """

    chat_model: BaseChatModel
    """The model that generates the samples the store lacks."""
    store: Any = Field(default_factory=_default_store, repr=False)
    """Where samples live: a directory path, a ``diskcache.Cache``, ``"memory"``, a
    ``"redis://..."`` URL or a cachesaver ``Store`` (what the engine's ``cache=`` takes). Kept out
    of ``repr`` and tracing: a Redis URL may hold a password."""
    namespace: str = "default"
    """Namespace of calls whose run metadata names none."""
    run_id: Optional[str] = None
    """Share one usage ledger with other processes/instances (default: this instance is a run)."""
    batch_size: int = 64
    """A batch of misses closes at this many samples..."""
    batch_timeout: float = 0.01
    """...or after this many seconds; identical calls in one batch share one model call."""
    n: int = 1
    """Generations per prompt for ``generate``/``agenerate`` (``invoke`` always takes one)."""
    offline: bool = False
    """Serve stored samples only: a miss raises ``OfflineMissError`` and calls no model (a
    bundle as ``store`` is always offline)."""
    max_n: int = MAX_N
    """The most generations one call may ask for (refused above it, before anything is paid)."""
    max_fanout: int = MAX_FANOUT
    """Inner calls one call's generations take at once when the inner model has no ``n`` (one
    call per generation): many generations are spread over time, never sent all at once."""
    max_concurrent_calls: int = MAX_CONCURRENT_CALLS
    """Inner calls this instance has in flight at once, whatever its callers ask (bounded cost)."""
    price: Optional[Callable[[str, int, int], float]] = Field(default=litellm_price, exclude=True)
    """Dollars of one inner call, ``(model, input_tokens, output_tokens) -> float``, kept with
    its samples for ``stats`` and bundles. Default: litellm's cost map when litellm is installed
    (0 for a model it does not know); None: no prices."""
    batch_api: Union[bool, dict, None] = False
    """Send misses through OpenAI's Batch API (about half price) instead of one call each:
    ``True`` or a dict of :class:`cachesaver.batchapi.BatchAPI` options (``{"window": 5.0}``).
    Hits are served at once; a call with misses returns when its batch does; submitted batches
    are recorded in the store, so a restart collects them instead of paying again. The inner
    model must be a ``ChatOpenAI`` (others are refused here). See docs/batch.md."""

    # Standard parameters, applied to (a copy of) the inner model where it has them.
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    timeout: Optional[float] = None
    stop: Optional[list[str]] = None
    max_retries: Optional[int] = None
    api_key: Optional[SecretStr] = Field(default=None, exclude=True)
    streaming: bool = False
    """Stream inside ``invoke`` too (LangChain's ``streaming`` switch; the inner model never does)."""

    cache: Union[BaseCache, bool, None] = False
    """LangChain's own response cache; it would replay one answer for every call, so it stays off."""

    _hosted: Optional[HostedPipeline] = PrivateAttr(default=None)
    _closed: bool = PrivateAttr(default=False)
    _view: Optional[InnerView] = PrivateAttr(default=None)

    # -- validation --------------------------------------------------------------------------
    @field_validator("cache", mode="before")
    @classmethod
    def _langchain_cache_stays_off(cls, value: Any) -> Any:
        if value is None or value is False:
            return False
        raise ValueError(
            "cache= is LangChain's own response cache: it replays one answer for every call and "
            "would collapse the per-namespace sample lists. Leave it unset and pass where "
            "CacheSaver keeps samples as store=..."
        )

    @field_validator("chat_model", mode="before")
    @classmethod
    def _inner_is_a_chat_model(cls, value: Any) -> Any:
        if isinstance(value, CacheSaverChatModel):
            raise TypeError("chat_model is already a CacheSaverChatModel; wrap the inner model once")
        if not isinstance(value, BaseChatModel):
            raise TypeError(
                f"chat_model must be a LangChain chat model (BaseChatModel), got {type(value).__name__}"
            )
        return value

    @model_validator(mode="after")
    def _check_and_configure(self) -> "CacheSaverChatModel":
        check_namespace(self.namespace)
        if self.batch_size < 1:
            raise InvalidRequestError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.batch_timeout < 0:
            raise InvalidRequestError(f"batch_timeout must be >= 0 seconds, got {self.batch_timeout}")
        check_max_n(self.max_n)
        check_n(self.n, limit=self.max_n)
        call_bounds(self.max_fanout, self.max_concurrent_calls)
        if self.run_id is not None and not self.run_id:
            raise InvalidRequestError("run_id must be a non-empty str or None")
        check_store_spec(self.store)
        given = {name: getattr(self, name) for name in FORWARDED
                 if name in self.model_fields_set and getattr(self, name) is not None}
        self.chat_model = configure_inner(self.chat_model, given)
        batch_api_option(self.batch_api, self.chat_model, self.price)  # refused here, not on the first miss
        return self

    # -- LangChain model interface -----------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "cachesaver-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"chat_model": self._inner_view().identifying, "namespace": self.namespace}

    def _get_invocation_params(self, stop: Optional[list[str]] = None, **kwargs: Any) -> dict[str, Any]:
        # What LangChain's own version returns (``asdict()`` plus stop and the call's kwargs),
        # without its per-call detour through the deprecated ``dict()``.
        kwargs.pop(SCOPE_KW, None)
        return {**self._identifying_params, "_type": self._llm_type, "stop": stop, **kwargs}

    def _get_ls_params(self, stop: Optional[list[str]] = None, **kwargs: Any) -> Any:
        """The inner model's tracing parameters (its provider and model name, per-call ``model``)."""
        kwargs.pop(SCOPE_KW, None)
        stop = stop or self._own_stop()
        if stop is None and not kwargs:
            return dict(self._inner_view().ls_params)
        return self.chat_model._get_ls_params(stop=stop, **kwargs)

    def _resolve_model_profile(self) -> Any:
        return self.chat_model.profile

    def _should_stream(self, *, async_api: bool, run_manager: Any = None, **kwargs: Any) -> bool:
        if self._wants_many(kwargs):
            return False  # one stream carries one message
        return super()._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    def _should_use_protocol_streaming(self, *, async_api: bool, run_manager: Any = None, **kwargs: Any) -> bool:
        if self._wants_many(kwargs):
            return False
        return super()._should_use_protocol_streaming(async_api=async_api, run_manager=run_manager, **kwargs)

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Optional[Union[str, dict[str, Any], bool]] = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The inner model formats the tools (its own rules); the calls go through the wrapper."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return repoint(self.chat_model.bind_tools(tools, **kwargs), self.chat_model, self)

    def with_structured_output(self, schema: Any = None, *, include_raw: bool = False, **kwargs: Any) -> Runnable:
        """Every method the inner model supports (its binding and parser, our calls)."""
        runnable = self.chat_model.with_structured_output(schema, include_raw=include_raw, **kwargs)
        return repoint(runnable, self.chat_model, self)

    # -- generation (the entry points that read the run's metadata: _entrypoints) -----------
    def _generate(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        member = member_of(kwargs)
        request = self._request(messages, stop, kwargs, run_manager)
        return chat_result(self._get_hosted().request_sync(request, member), request)

    async def _agenerate(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        member = member_of(kwargs)
        request = self._request(messages, stop, kwargs, run_manager)
        return chat_result(await self._get_hosted().request_async(request, member), request)

    def _stream(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        leave_group(kwargs)
        request = self._request(messages, stop, kwargs, run_manager, streaming=True)
        yield from sync_stream(self._get_hosted(), request)

    async def _astream(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                       run_manager: Any = None, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        leave_group(kwargs)
        scope = kwargs.get(SCOPE_KW)
        request = self._request(messages, stop, kwargs, run_manager, streaming=True)
        async for chunk in async_stream(self._get_hosted(), request, scope if isinstance(scope, Scope) else None):
            yield chunk

    # -- helpers -----------------------------------------------------------------------------
    def _get_hosted(self) -> HostedPipeline:
        hosted = _private(self, "_hosted")
        if hosted is None:
            with _HOSTED_LOCK:
                if self._closed:
                    raise PipelineClosedError("this CacheSaverChatModel is closed; create a new one")
                if self._hosted is None:
                    settings = PipelineSettings(self.store, batch_size=self.batch_size,
                                                timeout=self.batch_timeout, run_id=self.run_id,
                                                namespace=self.namespace,
                                                extra={"offline": self.offline, "max_n": self.max_n,
                                                       **self._batch_api_extra()},
                                                call_bounds=call_bounds(self.max_fanout,
                                                                        self.max_concurrent_calls))
                    self._hosted = HostedPipeline(InnerFactory(self.chat_model, self.price), settings)
                hosted = self._hosted
        return hosted

    def _batch_api_extra(self) -> dict[str, Any]:
        batch_api = batch_api_option(self.batch_api, self.chat_model, self.price)
        return {} if batch_api is None else {"batch_api": batch_api}

    def _inner_view(self) -> InnerView:
        previous = _private(self, "_view")
        view = InnerView.of(self.chat_model, previous)
        if view is not previous:
            self._view = view
        return view

    def _own_stop(self) -> Optional[list[str]]:
        """The wrapper's ``stop``, for inner models that have no ``stop`` field of their own."""
        if self.stop is not None and not self._inner_view().has_stop:
            return self.stop
        return None

    def _wants_many(self, kwargs: Mapping[str, Any]) -> bool:
        scope = kwargs.get(SCOPE_KW)
        if scope is not None and scope.single:
            return False
        n = kwargs.get("n", self.n)
        return isinstance(n, int) and n > 1

    def _request(self, messages: list[BaseMessage], stop: Optional[list[str]], kwargs: dict[str, Any],
                 run_manager: Any, streaming: bool = False) -> ChatRequest:
        scope = kwargs.pop(SCOPE_KW, None)
        metadata = scope.metadata if scope is not None else getattr(run_manager, "metadata", None) or {}
        n = kwargs.pop("n", None)
        kwargs.pop("stream", None)
        if n is not None:
            check_n(n)  # refused as everywhere, even where one sample is served
        if streaming or (scope is not None and scope.single):
            n = 1
        elif n is None:
            n = self.n
        n = check_n(n)
        namespace, request_id = identity(metadata, self.namespace)
        if stop is None:
            stop = self._own_stop()
        return ChatRequest(
            prompt=message_payload(messages),
            n=n,
            request_id=request_id,
            namespace=namespace,
            params=self._inner_view().key_params(stop, kwargs),
            call=LiveCall(list(messages), stop, kwargs),
        )

    # -- engine access -----------------------------------------------------------------------
    @property
    def pipeline(self) -> OnlineAPI:
        """The engine pipeline of this instance (started on first use)."""
        return self._get_hosted().pipeline

    @property
    def stats(self) -> Stats:
        """What this instance requested, generated and saved, per namespace: ``chat.stats()``,
        as on every surface (``chat.stats`` is the same object)."""
        return self.pipeline.stats

    def consumption(self) -> Any:
        """What this instance's run handed out so far (see ``cachesaver.bundle``)."""
        return self._get_hosted().consumption()

    def close(self) -> None:
        """Finish in-flight work and release the store (if this instance opened it).

        Final: a later call raises ``PipelineClosedError`` (a new run would hand out, in the
        same namespace, samples this one already handed out); ``stats`` stay readable.
        """
        with _HOSTED_LOCK:
            self._closed = True
            hosted = self._hosted
        if hosted is not None:
            hosted.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        with _HOSTED_LOCK:
            self._closed = True
            hosted = self._hosted
        if hosted is not None:
            await hosted.aclose()


# LangChain inspects ``_generate``'s signature on every uncached call (does it take run_manager?);
# a precomputed ``__signature__`` turns that into a lookup.
for _name in ("_generate", "_agenerate"):
    _method = CacheSaverChatModel.__dict__[_name]
    _method.__signature__ = inspect.signature(_method)
del _name, _method
