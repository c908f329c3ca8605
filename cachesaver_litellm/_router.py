"""``CacheSaverRouter``: the engine *above* a ``litellm.Router`` (composition, not subclassing).

``litellm.Router`` refuses subclassing, and caching per deployment (``cachesaver/`` models in
the model list) splits samples by real model. This wrapper keys on the *model group* instead, so
every deployment of a group serves one sample list, and the router's load balancing, retries,
cooldowns and fallbacks all happen below the cache, only for samples that are missing.

A hit never enters litellm at all (no logging pass), which is why it is faster than litellm's
own cache hit. Misses call ``router.acompletion(model=<group>, n=<missing>)`` on the loop of
the caller they are made for; those real calls are logged and costed by litellm as usual
(there is no outer call to double them). Everything the wrapper does not define is delegated
to the wrapped router.

Fallbacks run *above* the cache: the inner call is made with ``disable_fallbacks=True``, so a
group's samples are only ever its own deployments' answers. When a group's call fails, the
router's fallback groups (``fallbacks``, ``default_fallbacks``, and ``context_window_fallbacks``
/ ``content_policy_fallbacks`` for those errors; or the call's own ``fallbacks=``) are asked in
order, each as a request keyed on that group: a fallback's sample is stored as that group's
sample and never served to a later request for the primary group.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator, Mapping, Optional

from cachesaver.checks import MAX_CONCURRENT_CALLS, MAX_FANOUT, MAX_N, call_bounds, check_max_n
from cachesaver.errors import CacheSaverError, InvalidRequestTypeError, PipelineClosedError
from cachesaver.pipelines import OnlineAPI
from cachesaver.runtime import HostedPipeline, PipelineSettings, check_n, check_namespace, read_identity
from cachesaver.stats import Stats
from cachesaver.typedefs import Response

from ._backend import LiteLLMBackend, LiteLLMRequest, RealCall, supports_n
from ._keys import normalise_messages, normalise_model, split_params
from ._provider import check_arguments_agree, identity_arguments
from ._samples import build_response, stream_chunks

__all__ = ["CacheSaverRouter"]

log = logging.getLogger("cachesaver.litellm.router")

#: Prefix of the keyed model field, so a group name never collides with a real model's key.
GROUP_PREFIX = "model_group:"


class CacheSaverRouter:
    """Cache above routing: ``await CacheSaverRouter(router, store=...).acompletion(model="gpt", ...)``.

    ``router`` is a ready ``litellm.Router``; or pass ``model_list=`` (and any Router keyword)
    to build one. ``store``, ``batch_size``, ``timeout``, ``run_id`` and ``namespace`` are the
    engine settings, ``max_n``, ``max_fanout`` and ``max_concurrent_calls`` its bounds on cost
    (see ``cachesaver_litellm.register``). Namespace and request id come from
    ``metadata`` / ``litellm_metadata`` (``cachesaver_namespace``, ``cachesaver_request_id``).
    """

    def __init__(self, router: Any = None, *, store: Any = "./.cachesaver", batch_size: int = 64,
                 timeout: float = 0.02, run_id: Optional[str] = None, namespace: str = "default",
                 offline: bool = False, max_n: int = MAX_N, max_fanout: int = MAX_FANOUT,
                 max_concurrent_calls: int = MAX_CONCURRENT_CALLS, **router_kwargs: Any) -> None:
        if router is None:
            import litellm

            if "model_list" not in router_kwargs:
                raise TypeError("CacheSaverRouter needs router=litellm.Router(...) or model_list=[...]")
            router = litellm.Router(**router_kwargs)
        elif router_kwargs:
            raise TypeError(
                f"CacheSaverRouter got router= and Router keywords {sorted(router_kwargs)}; configure the "
                "litellm.Router you pass instead"
            )
        if not callable(getattr(router, "acompletion", None)):
            raise InvalidRequestTypeError(
                f"router must be a litellm.Router (with acompletion), got {type(router).__name__}"
            )
        check_namespace(namespace)
        self.router = router
        self.default_namespace = namespace
        settings = PipelineSettings(store, batch_size=batch_size, timeout=timeout, run_id=run_id,
                                    namespace=namespace, extra={"offline": bool(offline), "max_n": check_max_n(max_n)},
                                    call_bounds=call_bounds(max_fanout, max_concurrent_calls))
        self._hosted = HostedPipeline(LiteLLMBackend, settings)

    # -- completion ------------------------------------------------------------------------------
    async def acompletion(self, model: str, messages: Any, **kwargs: Any) -> Any:
        """Like ``Router.acompletion``; ``stream=True`` replays the samples as chunks.

        The engine runs on the shared background loop; the routed real call of a miss runs on
        the loop of the caller it is made for, so litellm logs it where the user's other calls
        are logged. A failed group falls back to the next group (module docstring).
        """
        home = asyncio.get_running_loop()
        chain = _Fallbacks(self.router, model, kwargs.pop("fallbacks", None))
        for group in chain:
            try:
                return await self._acompletion_of(group, messages, kwargs, home)
            except Exception as exc:
                chain.failed(exc)
        raise AssertionError("unreachable: a fallback chain ends by raising")

    async def _acompletion_of(self, group: Any, messages: Any, kwargs: dict,
                              home: asyncio.AbstractEventLoop) -> Any:
        prepared = self._prepare(group, messages, dict(kwargs), home_loop=home)
        response = self._finish(prepared, await self._hosted.request_async(prepared.request))
        if prepared.stream:
            return _ReplayStream(response, prepared.include_usage)
        return response

    def completion(self, model: str, messages: Any, **kwargs: Any) -> Any:
        """Sync ``acompletion``, from any thread without a running event loop.

        Inside a running loop use ``await acompletion(...)``: a blocked loop could be the one a
        merged real call was sent to, and would wait for itself.
        """
        _refuse_inside_running_loop("completion", "acompletion")
        chain = _Fallbacks(self.router, model, kwargs.pop("fallbacks", None))
        for group in chain:
            try:
                return self._completion_of(group, messages, kwargs)
            except Exception as exc:
                chain.failed(exc)
        raise AssertionError("unreachable: a fallback chain ends by raising")

    def _completion_of(self, group: Any, messages: Any, kwargs: dict) -> Any:
        prepared = self._prepare(group, messages, dict(kwargs))
        response = self._finish(prepared, self._hosted.request_sync(prepared.request))
        if prepared.stream:
            return _ReplayStream(response, prepared.include_usage)
        return response


    @property
    def pipeline(self) -> OnlineAPI:
        """The engine pipeline of this router (one run)."""
        return self._hosted.pipeline

    @property
    def stats(self) -> Stats:
        """This router's counters: ``router.stats()``, as ``cachesaver_litellm.stats()`` (the
        attribute ``router.stats`` is the same object, for code written before)."""
        return self.pipeline.stats

    def consumption(self) -> Any:
        """What this router's run handed out so far (see ``cachesaver.bundle``)."""
        return self._hosted.consumption()

    # -- conversion ------------------------------------------------------------------------------
    def _prepare(self, group: Any, messages: Any, kwargs: dict,
                 home_loop: Optional[asyncio.AbstractEventLoop] = None) -> "_Prepared":
        if self._hosted.closed:
            raise PipelineClosedError("this CacheSaverRouter is closed; create a new one")
        if not isinstance(group, str) or not group:
            raise InvalidRequestTypeError(f"model must be a model group name (str), got {group!r}")
        n = check_n(kwargs.pop("n", None))
        stream = bool(kwargs.pop("stream", False))
        options = kwargs.pop("stream_options", None)
        include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
        params, arguments = identity_arguments(kwargs)  # cachesaver_namespace= as an argument
        metadata = (kwargs.get("metadata"), kwargs.get("litellm_metadata"))
        check_arguments_agree(arguments, metadata)
        namespace, request_id = read_identity(*metadata, arguments, default_namespace=self.default_namespace,
                                              known_keys=())
        keyed, call_kwargs = split_params(params)
        # The group's own deployments answer; fallbacks are this wrapper's (see module docstring).
        call_kwargs["disable_fallbacks"] = True
        call = RealCall(
            invoke=self.router.acompletion,
            model=group,
            messages=messages,
            kwargs=call_kwargs,
            use_n=lambda: self._group_supports_n(group),
            provider="",
            home_loop=home_loop,
        )
        request = LiteLLMRequest(
            prompt=normalise_messages(messages),
            n=n,
            request_id=request_id,
            namespace=namespace,
            model=GROUP_PREFIX + group,
            params=keyed,
            call=call,
        )
        return _Prepared(request, stream, include_usage)

    def _group_supports_n(self, group: str) -> bool:
        """``n`` only if every deployment of the group accepts it (the router may pick any)."""
        deployments = _deployments(self.router, group)
        models = [(d.get("litellm_params") or {}).get("model") for d in deployments if isinstance(d, Mapping)]
        if not models or not all(isinstance(m, str) and m for m in models):
            return False
        for model in models:
            if model.startswith("cachesaver/"):
                model = model[len("cachesaver/"):]
            keyed, provider = normalise_model(model)
            if not supports_n(keyed.partition("/")[2] or keyed, provider):
                return False
        return True

    def _finish(self, prepared: "_Prepared", result: Response) -> Any:
        request = prepared.request
        return build_response(result, namespace=request.namespace, request_id=request.request_id,
                              key=result.key or "", model=request.model, provider="")

    # -- lifecycle -------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Finish what is in flight and release the store."""
        await self._hosted.aclose()

    def close(self) -> None:
        """Sync ``aclose()``; inside a running event loop use ``await aclose()`` / ``async with``."""
        if self._hosted.closed:
            return
        _refuse_inside_running_loop("close", "aclose")
        self._hosted.close()

    async def __aenter__(self) -> "CacheSaverRouter":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __enter__(self) -> "CacheSaverRouter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found on the wrapper: the rest of the Router API.
        if name in ("router", "_hosted"):
            raise AttributeError(name)
        return getattr(self.router, name)


def _deployments(router: Any, group: str) -> list:
    """The group's deployments (litellm 1.110: ``registry().deployments``; older: ``get_model_list``)."""
    try:
        registry = getattr(router, "registry", None)
        found = registry().deployments(group) if callable(registry) else router.get_model_list(model_name=group)
        return list(found or [])
    except Exception:  # unknown group or another Router version: no n, one call per sample
        return []


class _Fallbacks:
    """The groups one call is asked of, in order: the requested group, then, after it failed, the
    fallback groups for its error. ``failed(exc)`` after each failure; once every group failed
    (or an error no other group would answer differently), the iteration raises the error: the
    last one, chained to the requested group's."""

    def __init__(self, router: Any, group: Any, call_fallbacks: Any) -> None:
        self._router, self._group, self._call_fallbacks = router, group, call_fallbacks
        self._first: Optional[Exception] = None
        self._last: Optional[Exception] = None

    def failed(self, exc: Exception) -> None:
        if self._first is None:
            self._first = exc
        elif not _may_fall_back(exc):
            raise exc
        self._last = exc

    def __iter__(self) -> Iterator[Any]:
        yield self._group
        first = self._first
        assert first is not None  # only resumed after the requested group failed
        if _may_fall_back(first) and isinstance(self._group, str):
            yield from fallback_groups(self._router, self._group, first, self._call_fallbacks)
        if self._last is first:
            raise first
        raise self._last from first  # type: ignore[misc]


def fallback_groups(router: Any, group: str, error: Exception, call_fallbacks: Any = None) -> list[str]:
    """The fallback groups litellm's Router would try for ``group`` after ``error``, in order.

    ``context_window_fallbacks`` / ``content_policy_fallbacks`` for those errors, else the
    call's ``fallbacks=`` (group names, or ``[{group: [...]}]``), else the router's
    ``fallbacks`` (its ``default_fallbacks`` are the ``"*"`` entry there).
    """
    import litellm

    settings = router.settings() if callable(getattr(router, "settings", None)) else router
    tables: list[Any] = []
    if isinstance(error, litellm.ContextWindowExceededError):
        tables.append(getattr(settings, "context_window_fallbacks", None))
    if isinstance(error, litellm.ContentPolicyViolationError):
        tables.append(getattr(settings, "content_policy_fallbacks", None))
    tables.append(call_fallbacks if call_fallbacks is not None else getattr(settings, "fallbacks", None))
    for table in tables:
        found = _groups_in(table, group)
        if found:
            limit = getattr(settings, "max_fallbacks", None)
            return found[:limit] if isinstance(limit, int) and limit > 0 else found
    return []


def _groups_in(table: Any, group: str) -> list[str]:
    if not isinstance(table, (list, tuple)):
        return []
    if all(isinstance(entry, str) for entry in table):
        return [g for g in table if g != group]
    wildcard: list[str] = []
    for entry in table:
        if isinstance(entry, Mapping):
            if isinstance(entry.get(group), (list, tuple)):
                return [g for g in entry[group] if isinstance(g, str) and g != group]
            if isinstance(entry.get("*"), (list, tuple)):
                wildcard = [g for g in entry["*"] if isinstance(g, str) and g != group]
    return wildcard


def _may_fall_back(error: Exception) -> bool:
    """Provider and routing errors may be answered by another group; cachesaver's own errors
    (a bad request, a closed router, an offline miss) would fail the same way there."""
    return not isinstance(error, CacheSaverError)


def _refuse_inside_running_loop(name: str, async_name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"CacheSaverRouter.{name}() was called inside a running event loop, which it would block "
        f"while a real call it waits for may be scheduled on that very loop; use "
        f"`await router.{async_name}(...)` there (the cachesaver/ provider's sync path does work inside loops)"
    )


@dataclass(frozen=True)
class _Prepared:
    request: LiteLLMRequest
    stream: bool
    include_usage: bool


class _ReplayStream:
    """A complete response replayed as ``ModelResponseStream`` chunks (sync and async iteration)."""

    def __init__(self, response: Any, include_usage: bool) -> None:
        self.response = response
        self._chunks = list(stream_chunks(response, include_usage, usage_chunk=True))
        self._hidden_params = response._hidden_params

    def __iter__(self) -> Iterator[Any]:
        return iter(self._chunks)

    async def __aiter__(self) -> AsyncIterator[Any]:
        for chunk in self._chunks:
            yield chunk
