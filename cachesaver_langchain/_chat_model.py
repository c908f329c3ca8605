"""``CacheSaverChatModel``: any LangChain chat model, with every call going through the engine.

Namespace and request id come from the run's metadata (``cachesaver_namespace``,
``cachesaver_request_id``), wherever LangChain put it: ``config=``, ``with_config``, a chain, a
LangGraph graph. ``_generate``/``_agenerate`` could read it from their run manager, but
``_stream``/``_astream`` get none, so ``invoke``/``ainvoke``/``stream``/``astream`` read
``ensure_config(config)["metadata"]`` themselves and pass it down as a private call keyword,
which never reaches the key, the inner model or the traced invocation parameters.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator, Mapping, Optional, Sequence, Union

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from cachesaver.errors import CorruptSampleError, InvalidRequestError, InvalidRequestTypeError
from cachesaver.keys import request_key
from cachesaver.pipelines import OnlineAPI
from cachesaver.stats import Stats
from cachesaver.stores import Store
from cachesaver.typedefs import Response

from ._codec import closing_chunk, key_params, message_payload, replay_chunks, to_generation
from ._loop import EngineLoop, engine_loop, register_closer
from ._model import ChatRequest, InnerModel, LiveCall
from ._runnables import repoint
from ._sink import END, AsyncChunkSink, ChunkSink, SyncChunkSink

__all__ = ["CacheSaverChatModel", "NAMESPACE_KEY", "REQUEST_ID_KEY", "STORE_ENV", "cachesaver_config"]

log = logging.getLogger("cachesaver.langchain")

#: Run-metadata keys read on every call (the LiteLLM adapter reads the same ones).
NAMESPACE_KEY = "cachesaver_namespace"
REQUEST_ID_KEY = "cachesaver_request_id"
#: Environment variable giving the default ``store`` (else ``./.cachesaver``).
STORE_ENV = "CACHESAVER_STORE"

_SCOPE = "__cachesaver_scope__"
#: Constructor parameters of the standard LangChain interface, applied to the inner model.
_FORWARDED = ("temperature", "max_tokens", "timeout", "stop", "max_retries", "api_key")
#: SDK clients that models build from their other fields; dropped when the inner model is rebuilt.
_SDK_CLIENTS = frozenset({"client", "async_client", "root_client", "root_async_client"})
_ENGINE_LOCK = threading.Lock()


def cachesaver_config(namespace: str, request_id: Optional[str] = None) -> RunnableConfig:
    """``config=`` for one call (or ``.with_config(**...)``): ``{"metadata": {...}}``."""
    metadata: dict[str, Any] = {NAMESPACE_KEY: namespace}
    if request_id is not None:
        metadata[REQUEST_ID_KEY] = request_id
    return {"metadata": metadata}


def _default_store() -> str:
    return os.environ.get(STORE_ENV) or "./.cachesaver"


@dataclass
class _Scope:
    """The run metadata of an ``invoke``/``stream`` call, carried to ``_generate``/``_stream``."""

    metadata: Mapping[str, Any]
    single: bool = True  # invoke/stream return one message: ask for one sample
    #: Set by ``_astream``: what to do if the caller leaves (LangChain does not close the inner
    #: generator when its own is closed, so ``astream`` calls this itself).
    leave: Optional[Any] = None


def _leave(future: Any, sink: ChunkSink) -> None:
    """The caller left a stream: its request takes no sample (G5), the producer stops waiting."""
    if not future.done():
        future.cancel()  # cancels the engine task before the producer is released (FIFO)
        sink.abandon()


class _Engine:
    """The pipeline of one wrapper, on the shared background loop (see ``_loop``)."""

    def __init__(self, chat: "CacheSaverChatModel") -> None:
        self.pid = os.getpid()
        self.loop: EngineLoop = engine_loop()
        self.model = InnerModel(chat.chat_model)

        async def make() -> OnlineAPI:
            return OnlineAPI(
                model=self.model, cache=chat.store, batch_size=chat.batch_size,
                timeout=chat.batch_timeout, run_id=chat.run_id,
            )

        self.pipeline: OnlineAPI = self.loop.run(make())
        self.model.pipeline = self.pipeline
        register_closer(self)

    async def aclose(self) -> None:
        await self.pipeline.aclose()


class CacheSaverChatModel(BaseChatModel):
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
    store: Any = Field(default_factory=_default_store)
    """Where samples live: a directory path, a ``diskcache.Cache``, ``"memory"``, a
    ``"redis://..."`` URL or a cachesaver ``Store`` (what the engine's ``cache=`` takes)."""
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

    _engine: Optional[_Engine] = PrivateAttr(default=None)

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
        if not isinstance(self.namespace, str) or not self.namespace:
            raise InvalidRequestError("namespace must be a non-empty str, e.g. 'default'")
        if self.batch_size < 1:
            raise InvalidRequestError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.batch_timeout < 0:
            raise InvalidRequestError(f"batch_timeout must be >= 0 seconds, got {self.batch_timeout}")
        if self.n < 1:
            raise InvalidRequestError(f"n must be >= 1, got {self.n}")
        if self.run_id is not None and not self.run_id:
            raise InvalidRequestError("run_id must be a non-empty str or None")
        _check_store(self.store)
        self.chat_model = self._configured_inner()
        return self

    def _configured_inner(self) -> BaseChatModel:
        """The inner model with the standard parameters given to the wrapper applied.

        Models build their SDK clients from timeout/api_key/max_retries at construction, so the
        inner model is rebuilt (never mutated: it may be shared) rather than copied.
        """
        inner = self.chat_model
        cls = type(inner)
        fields = cls.model_fields
        updates: dict[str, Any] = {}
        for name in _FORWARDED:
            if name not in self.model_fields_set or getattr(self, name) is None:
                continue
            target = _field_for(fields, name)
            if target is None:
                log.debug("%s has no %r parameter; not applied", cls.__name__, name)
                continue
            value = getattr(self, name)
            if getattr(inner, target, None) != value:
                updates[target] = value
        if "streaming" in fields and getattr(inner, "streaming", False) is True:
            updates["streaming"] = False  # the wrapper decides when to stream
        if not updates:
            return inner
        by_name = bool(cls.model_config.get("populate_by_name") or cls.model_config.get("validate_by_name"))

        def arg(name: str) -> str:
            alias = fields[name].alias
            return name if by_name or not alias else alias

        kwargs = {
            arg(name): getattr(inner, name)
            for name in inner.model_fields_set - _SDK_CLIENTS - set(updates)
            if name in fields
        }
        kwargs.update({arg(name): value for name, value in updates.items()})
        try:
            return cls(**kwargs)
        except Exception as exc:
            raise ValueError(
                f"could not apply {sorted(updates)} to {cls.__name__} ({exc}); pass these "
                "parameters to the inner model instead of CacheSaverChatModel"
            ) from exc

    # -- LangChain model interface -----------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "cachesaver-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        inner = self.chat_model
        store = self.store if isinstance(self.store, str) else getattr(self.store, "location", type(self.store).__name__)
        return {
            "chat_model": {"_type": inner._llm_type, **inner._identifying_params},
            "store": str(store),
            "namespace": self.namespace,
        }

    def _get_invocation_params(self, stop: Optional[list[str]] = None, **kwargs: Any) -> dict[str, Any]:
        kwargs.pop(_SCOPE, None)
        return super()._get_invocation_params(stop=stop, **kwargs)

    def _get_ls_params(self, stop: Optional[list[str]] = None, **kwargs: Any) -> Any:
        kwargs.pop(_SCOPE, None)
        params = self.chat_model._get_ls_params(stop=stop or self._own_stop(), **kwargs)
        return params

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

    # -- entry points that know the run's metadata -------------------------------------------
    def invoke(self, input: LanguageModelInput, config: Optional[RunnableConfig] = None, *,
               stop: Optional[list[str]] = None, **kwargs: Any) -> AIMessage:
        config = ensure_config(config)
        kwargs.setdefault(_SCOPE, _Scope(config.get("metadata") or {}))
        return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(self, input: LanguageModelInput, config: Optional[RunnableConfig] = None, *,
                      stop: Optional[list[str]] = None, **kwargs: Any) -> AIMessage:
        config = ensure_config(config)
        kwargs.setdefault(_SCOPE, _Scope(config.get("metadata") or {}))
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(self, input: LanguageModelInput, config: Optional[RunnableConfig] = None, *,
               stop: Optional[list[str]] = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        config = ensure_config(config)
        kwargs.setdefault(_SCOPE, _Scope(config.get("metadata") or {}))
        yield from super().stream(input, config, stop=stop, **kwargs)

    async def astream(self, input: LanguageModelInput, config: Optional[RunnableConfig] = None, *,
                      stop: Optional[list[str]] = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        config = ensure_config(config)
        scope = kwargs.setdefault(_SCOPE, _Scope(config.get("metadata") or {}))
        stream = super().astream(input, config, stop=stop, **kwargs)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            if isinstance(scope, _Scope) and scope.leave is not None:
                scope.leave()  # at once, not when the garbage collector closes _astream
            await stream.aclose()

    # -- generation --------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        engine = self._get_engine()
        request = self._request(messages, stop, kwargs, run_manager)
        return self._result(engine.loop.run(engine.pipeline.request(request)), request)

    async def _agenerate(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        engine = self._get_engine()
        request = self._request(messages, stop, kwargs, run_manager)
        response = await asyncio.wrap_future(engine.loop.submit(engine.pipeline.request(request)))
        return self._result(response, request)

    def _stream(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        engine = self._get_engine()
        sink = SyncChunkSink(engine.loop)
        request = self._request(messages, stop, kwargs, run_manager, sink=sink)
        future = engine.loop.submit(engine.pipeline.request(request))
        future.add_done_callback(sink.finish)
        live = False
        try:
            while (item := sink.get()) is not END:
                live = True
                yield item
            response = future.result()
        finally:
            _leave(future, sink)
        yield from self._stream_tail(response, request, sink, live)

    async def _astream(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                       run_manager: Any = None, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        engine = self._get_engine()
        sink = AsyncChunkSink(engine.loop, asyncio.get_running_loop())
        scope = kwargs.get(_SCOPE)
        request = self._request(messages, stop, kwargs, run_manager, sink=sink)
        future = engine.loop.submit(engine.pipeline.request(request))
        future.add_done_callback(sink.finish)
        if isinstance(scope, _Scope):
            scope.leave = lambda: _leave(future, sink)
        live = False
        try:
            while (item := await sink.get()) is not END:
                live = True
                yield item
            response = future.result()
        finally:
            _leave(future, sink)
        for chunk in self._stream_tail(response, request, sink, live):
            yield chunk

    # -- helpers -----------------------------------------------------------------------------
    def _get_engine(self) -> _Engine:
        engine = self._engine
        if engine is None or engine.pid != os.getpid():
            with _ENGINE_LOCK:
                if self._engine is None or self._engine.pid != os.getpid():
                    self._engine = _Engine(self)
                engine = self._engine
        return engine

    def _own_stop(self) -> Optional[list[str]]:
        """The wrapper's ``stop``, for inner models that have no ``stop`` field of their own."""
        if self.stop is not None and _field_for(type(self.chat_model).model_fields, "stop") is None:
            return self.stop
        return None

    def _wants_many(self, kwargs: Mapping[str, Any]) -> bool:
        scope = kwargs.get(_SCOPE)
        if scope is not None and scope.single:
            return False
        n = kwargs.get("n", self.n)
        return isinstance(n, int) and n > 1

    def _request(self, messages: list[BaseMessage], stop: Optional[list[str]], kwargs: dict[str, Any],
                 run_manager: Any, sink: Optional[ChunkSink] = None) -> ChatRequest:
        scope = kwargs.pop(_SCOPE, None)
        metadata = scope.metadata if scope is not None else getattr(run_manager, "metadata", None) or {}
        n = kwargs.pop("n", None)
        kwargs.pop("stream", None)
        if sink is not None or (scope is not None and scope.single):
            n = 1
        elif n is None:
            n = self.n
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidRequestError(f"n must be an int >= 1, got {n!r}")
        namespace = metadata.get(NAMESPACE_KEY, self.namespace)
        if not isinstance(namespace, str) or not namespace:
            raise InvalidRequestTypeError(
                f"run metadata {NAMESPACE_KEY!r} must be a non-empty str, got {namespace!r}; pass "
                f"config={{'metadata': {{'{NAMESPACE_KEY}': 'agent-1'}}}}"
            )
        request_id = metadata.get(REQUEST_ID_KEY) or ""
        if not isinstance(request_id, str):
            raise InvalidRequestTypeError(
                f"run metadata {REQUEST_ID_KEY!r} must be a str, got {type(request_id).__name__}"
            )
        if stop is None:
            stop = self._own_stop()
        return ChatRequest(
            prompt=message_payload(messages),
            n=n,
            request_id=request_id,
            namespace=namespace,
            params=key_params(self.chat_model, stop, kwargs),
            call=LiveCall(list(messages), stop, kwargs, sink),
        )

    def _flags(self, response: Response, i: int, request: ChatRequest) -> dict[str, Any]:
        return {
            "namespace": request.namespace,
            "request_id": request.request_id or None,
            "cached": bool(response.cached[i]),
            "duplicated": bool(response.duplicated[i]),
        }

    def _result(self, response: Response, request: ChatRequest) -> ChatResult:
        generations = []
        for i, sample in enumerate(response.data):
            where = f"sample {i} delivered to namespace {request.namespace!r}"
            try:
                generations.append(
                    to_generation(sample, cached=bool(response.cached[i]),
                                  cachesaver=self._flags(response, i, request), where=where)
                )
            except CorruptSampleError as exc:
                raise CorruptSampleError(f"{exc} (key {request_key(request)})") from None
        return ChatResult(generations=generations)

    def _stream_tail(self, response: Response, request: ChatRequest, sink: ChunkSink,
                     live: bool) -> Iterator[ChatGenerationChunk]:
        """After the live chunks (if any), what completes the caller's stream."""
        flags = self._flags(response, 0, request)
        sample = response.data[0]
        if live:
            if not (isinstance(sample, dict) and sample.get("sample_id") == sink.sample_id):
                # Only possible when another process appended to this key meanwhile.
                log.warning("namespace %r was streamed a sample but received another one (a "
                            "process sharing the store appended to this key meanwhile)",
                            request.namespace)
                flags["streamed_other_sample"] = True
            flags["sample_usage"] = sample.get("usage") if isinstance(sample, dict) else None
            yield closing_chunk(sink.list_content, flags)
            return
        yield from replay_chunks(self._result(response, request).generations[0])

    # -- engine access -----------------------------------------------------------------------
    @property
    def pipeline(self) -> OnlineAPI:
        """The engine pipeline of this instance (started on first use)."""
        return self._get_engine().pipeline

    @property
    def stats(self) -> Stats:
        """What this instance requested, generated and saved, per namespace."""
        return self.pipeline.stats

    def close(self) -> None:
        """Finish in-flight work and release the store (if this instance opened it)."""
        engine = self._engine
        if engine is not None and engine.pid == os.getpid():
            self._engine = None
            engine.loop.run(engine.aclose())

    async def aclose(self) -> None:
        engine = self._engine
        if engine is not None and engine.pid == os.getpid():
            self._engine = None
            await asyncio.wrap_future(engine.loop.submit(engine.aclose()))


def _field_for(fields: Mapping[str, Any], name: str) -> Optional[str]:
    """The field a constructor argument ``name`` sets (by name or alias), if any."""
    if name in fields:
        return name
    for field_name, info in fields.items():
        if info.alias == name or info.validation_alias == name:
            return field_name
    return None


def _check_store(store: Any) -> None:
    if isinstance(store, (str, os.PathLike, Store)):
        if isinstance(store, str) and not store:
            raise InvalidRequestError("store is empty; give a directory such as './.cachesaver'")
        return
    try:
        import diskcache
    except ImportError:  # pragma: no cover
        diskcache = None  # type: ignore[assignment]
    if diskcache is not None and isinstance(store, diskcache.Cache):
        return
    raise InvalidRequestTypeError(
        f"store has type {type(store).__name__}; pass a directory path, a diskcache.Cache, "
        "'memory', a 'redis://...' URL or a cachesaver Store"
    )
