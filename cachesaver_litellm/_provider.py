"""The ``cachesaver/<model>`` provider: a ``litellm.CustomLLM`` in front of the engine.

``litellm.acompletion(model="cachesaver/openai/gpt-4o-mini", ...)`` reaches
:class:`CacheSaverLLM`, which turns the call into an engine request (key from the real model,
messages and output-shaping params; namespace and request id from metadata) and hands it to the
runtime's :class:`~cachesaver.runtime.HostedPipeline`: a hit is answered on the caller's own
thread, a miss on the engine's loop. On a miss the engine makes litellm's provider request for
the real model (:mod:`._inner_call`: no second pass of litellm's pipeline; streams through
``litellm.acompletion``), inside ``litellm._internal_context.internal_sub_call()``, so litellm
logs and bills the call once, as the outer ``cachesaver/`` call, with the cost the engine billed
to that caller.

Streaming: a stored sample replays as a stream of chunks; a miss streams live to the caller the
engine hands the first new sample to, and is stored whole when it ends.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Mapping
from typing import Any, AsyncIterator, Iterator

import litellm
from litellm import CustomLLM

from cachesaver.errors import InvalidRequestError, InvalidRequestTypeError
from cachesaver.pipelines import OnlineAPI
from cachesaver.runtime import NAMESPACE_KEY, REQUEST_ID_KEY, HostedPipeline, check_n, read_identity
from cachesaver.secrets import url_without_userinfo
from cachesaver.typedefs import Response

from ._backend import LiteLLMBackend, LiteLLMRequest, RealCall, supports_n
from ._callback import never_store, record_call
from ._dspy_fastpath import observe
from ._http_identity import check_http_name, identity_from_headers
from ._inner_call import inner_acompletion
from ._issue_order import ISSUE_KEY, issue_request_id
from ._keys import normalise_messages, normalise_model, split_params
from ._namespace_warning import warn_no_namespace_once
from ._refusals import refusals_as_bad_request
from ._samples import build_response
from ._streams import async_stream, sync_stream

__all__ = ["CacheSaverLLM", "build_request", "make_backend", "PROVIDER", "NAMESPACE_KEY", "REQUEST_ID_KEY"]

log = logging.getLogger("cachesaver.litellm.provider")

PROVIDER = "cachesaver"

#: litellm_params worth forwarding to the real call (credentials and pricing, never keyed).
FORWARDED_LITELLM_PARAMS = (
    "api_version",
    "azure_ad_token",
    "azure_ad_token_provider",
    "azure_username",
    "azure_password",
    "azure_scope",
    "client_id",
    "client_secret",
    "tenant_id",
    "base_model",
    "drop_params",
    "ssl_verify",
    "input_cost_per_token",
    "output_cost_per_token",
    "input_cost_per_second",
    "output_cost_per_second",
    "cost_per_query",
)


def _internal_sub_call():
    """litellm's private 'nested call' marker (pinned: litellm 1.110.x); a no-op if missing."""
    try:
        from litellm._internal_context import internal_sub_call
    except ImportError:  # pragma: no cover - other litellm versions
        log.warning("litellm._internal_context.internal_sub_call is missing in litellm %s: "
                    "inner calls will be logged and costed twice", getattr(litellm, "version", "?"))
        return contextlib.nullcontext
    return internal_sub_call


def make_backend() -> LiteLLMBackend:
    """The engine model (built again in a forked child)."""
    return LiteLLMBackend(wrap_call=_internal_sub_call())


class CacheSaverLLM(CustomLLM):
    """litellm handler for ``cachesaver/<real model>``: one engine run per handler.

    Build it with :func:`register`. litellm calls every entry point with keywords only
    (``model``, ``messages``, ``optional_params``, ``litellm_params``, ``api_key``, ...).
    """

    def __init__(self, hosted: HostedPipeline, key_api_base: bool = False) -> None:
        super().__init__()
        self.hosted = hosted
        self.settings = hosted.settings
        self.key_api_base = key_api_base
        #: Names arrive over HTTP and leave in headers (set by the proxy's handler): refuse
        #: control characters in them (see ``_http_identity.check_http_name``).
        self.http_names = False
        self._issued: dict[str, int] = {}
        self._issue_lock = threading.Lock()

    def next_issue(self, namespace: str) -> int:
        """The issue number of the next async call without an id in ``namespace`` (this run's;
        see :mod:`cachesaver_litellm._issue_order`)."""
        with self._issue_lock:
            number = self._issued.get(namespace, 0)
            self._issued[namespace] = number + 1
            return number

    @property
    def pipeline(self) -> OnlineAPI:
        return self.hosted.pipeline

    @property
    def closed(self) -> bool:
        return self.hosted.closed

    async def aclose(self) -> None:
        """Close the engine run; ``unregister()`` is the public way."""
        await self.hosted.aclose()

    # -- litellm entry points ------------------------------------------------------------------
    # A refusal (invalid request, offline miss) is raised as litellm's BadRequestError (see
    # _refusals): anything else would reach the user as a 500 with a traceback in its text.
    async def acompletion(self, **call: Any) -> Any:
        with refusals_as_bad_request(str(call.get("model"))):
            request = self._request(call)
            result = await self.hosted.request_async(request)
        return self._finish(request, result, call)

    def completion(self, **call: Any) -> Any:
        with refusals_as_bad_request(str(call.get("model"))):
            request = self._request(call)
            result = self.hosted.request_sync(request)
        return self._finish(request, result, call)

    def astreaming(self, **call: Any) -> AsyncIterator[Any]:
        with refusals_as_bad_request(str(call.get("model"))):
            request = self._request(call)
            return async_stream(self.hosted, request, lambda r: self._finish(request, r, call, True),
                                on_miss=lambda: _flag_miss(request, call))

    def streaming(self, **call: Any) -> Iterator[Any]:
        with refusals_as_bad_request(str(call.get("model"))):
            request = self._request(call)
            return sync_stream(self.hosted, request, lambda r: self._finish(request, r, call, True))

    # -- conversion ------------------------------------------------------------------------------
    def _request(self, call: Mapping[str, Any]) -> LiteLLMRequest:
        never_store(call.get("logging_obj"))
        request = build_request(
            model=call.get("model"),
            messages=call.get("messages"),
            optional_params=call.get("optional_params") or {},
            litellm_params=call.get("litellm_params") or {},
            api_key=call.get("api_key"),
            api_base=call.get("api_base"),
            headers=call.get("headers"),
            timeout=call.get("timeout"),
            default_namespace=self.settings.namespace,
            key_api_base=self.key_api_base,
            http_names=self.http_names,
        )
        observe(self, request)  # a CacheSaverLM call learning its shape (see _dspy_fastpath)
        return request

    def _finish(self, request: LiteLLMRequest, result: Response, call: Mapping[str, Any],
                stream: bool = False) -> Any:
        real = request.call
        response = build_response(
            result,
            namespace=request.namespace,
            request_id=request.request_id,
            key=result.key or "",
            model=request.model,
            provider=real.provider if real is not None else "",
        )
        hidden = response._hidden_params
        details = getattr(call.get("logging_obj"), "model_call_details", None)
        if isinstance(details, dict):
            # Streams are logged from the chunks, not from this response: the flags travel here.
            details["cachesaver"] = hidden["cachesaver"]
            # Log under the real provider, as litellm's own cache hits are: its cost map is keyed
            # by it (pricing and saved-cost lookups stay exact and take the fast path).
            if hidden.get("custom_llm_provider"):
                details["custom_llm_provider"] = hidden["custom_llm_provider"]
            if stream and hidden["cache_hit"]:
                details["cache_hit"] = True
        record_call(hidden["cachesaver"], response)  # the cost tally is complete on return
        return response


def _flag_miss(request: LiteLLMRequest, call: Mapping[str, Any]) -> None:
    """Before a live stream's first chunk: what is known (not a full hit; flags per choice
    follow when it ends), for whoever reads the call's logging details first (proxy headers)."""
    details = getattr(call.get("logging_obj"), "model_call_details", None)
    if isinstance(details, dict):
        details["cachesaver"] = {"namespace": request.namespace, "request_id": request.request_id,
                                 "model": request.model, "cached": [], "duplicated": [], "pending": True}


def identity_arguments(optional_params: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict]:
    """``(params, identity)``: ``cachesaver_namespace=`` / ``cachesaver_request_id=`` passed as
    arguments of ``litellm.completion`` (litellm puts unknown arguments among the optional
    params) taken out of the params. Left there, they would be keyed (a namespace would split
    the sample list it is meant to share) and sent to the provider; taken out, they mean what
    they say, as in metadata."""
    if NAMESPACE_KEY not in optional_params and REQUEST_ID_KEY not in optional_params:
        return optional_params, {}
    params = dict(optional_params)
    identity = {name: params.pop(name) for name in (NAMESPACE_KEY, REQUEST_ID_KEY) if name in params}
    return params, identity


def check_arguments_agree(arguments: Mapping[str, Any], metadata: tuple) -> None:
    """An identity given both as an argument and in metadata must be the same value."""
    for name, value in arguments.items():
        for source in metadata:
            if isinstance(source, Mapping) and source.get(name) is not None and source[name] != value:
                raise InvalidRequestError(
                    f"{name} is given twice, {value!r} as an argument and {source[name]!r} in metadata: "
                    f"give it once, e.g. metadata={{'{name}': {value!r}}}")


def build_request(*, model: Any, messages: Any, optional_params: Mapping[str, Any],
                  litellm_params: Mapping[str, Any], api_key: Any, api_base: Any, headers: Any, timeout: Any,
                  default_namespace: str, key_api_base: bool, http_names: bool = False) -> LiteLLMRequest:
    """The engine request for one ``cachesaver/`` call (see ``_keys`` for what is keyed).

    ``http_names`` (the proxy): the namespace and request id must also be HTTP names
    (:func:`~cachesaver_litellm._http_identity.check_http_name`), checked here, before any
    model call."""
    if not isinstance(model, str) or not model:
        raise InvalidRequestTypeError("model must be 'cachesaver/<litellm model>', e.g. 'cachesaver/openai/gpt-4o-mini'")
    keyed_model, provider = normalise_model(model)
    n = check_n(optional_params.get("n"))
    optional_params, arguments = identity_arguments(optional_params)
    # Body metadata first (SDK, Router, proxy body), then the proxy's x-cachesaver-* headers,
    # then cachesaver_namespace= / cachesaver_request_id= given as arguments.
    metadata = (litellm_params.get("metadata"), litellm_params.get("litellm_metadata"),
                identity_from_headers(litellm_params))
    check_arguments_agree(arguments, metadata)
    if not any(isinstance(m, Mapping) and m.get(NAMESPACE_KEY) is not None for m in (*metadata, arguments)):
        warn_no_namespace_once(model, default_namespace)  # once per process (see _namespace_warning)
    namespace, request_id = read_identity(*metadata, arguments, default_namespace=default_namespace,
                                          known_keys=(ISSUE_KEY,))
    if http_names:
        check_http_name(namespace, f"metadata[{NAMESPACE_KEY!r}]", f"{{'{NAMESPACE_KEY}': 'experiment-1'}}")
        check_http_name(request_id, f"metadata[{REQUEST_ID_KEY!r}]", f"{{'{REQUEST_ID_KEY}': 'q-17'}}")
    if not request_id:  # an async call numbered in issue order (see _issue_order)
        request_id = issue_request_id(metadata[0], namespace)
    keyed, kwargs = split_params(optional_params)
    for name in FORWARDED_LITELLM_PARAMS:
        value = litellm_params.get(name)
        if value is not None:
            kwargs.setdefault(name, value)
    for name, value in (("api_key", api_key), ("api_base", api_base), ("timeout", timeout)):
        if value is not None:
            kwargs[name] = value
    if headers:
        kwargs["headers"] = dict(headers)
    name = keyed_model.partition("/")[2] or keyed_model
    return LiteLLMRequest(
        prompt=normalise_messages(messages),
        n=n,
        request_id=request_id,
        namespace=namespace,
        model=keyed_model,
        params=keyed,
        endpoint=url_without_userinfo(str(api_base)) if key_api_base and api_base else None,
        call=RealCall(
            invoke=inner_acompletion,
            model=model,
            messages=messages,
            kwargs=kwargs,
            use_n=functools.partial(supports_n, name, provider),
            provider=provider,
        ),
    )
