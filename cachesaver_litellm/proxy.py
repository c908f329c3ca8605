"""CacheSaver inside the LiteLLM Proxy: namespaced sample caching for any OpenAI client over HTTP.

In the proxy's ``config.yaml``::

    model_list:
      - model_name: gpt-4o-mini
        litellm_params: {model: cachesaver/openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY}
    litellm_settings:
      custom_provider_map:
        - {provider: cachesaver, custom_handler: cachesaver_litellm.proxy.handler}

The proxy imports ``cachesaver_litellm.proxy.handler`` while it loads the config; that first
access reads the settings below from the environment (or the config's
``environment_variables:`` section), calls :func:`cachesaver_litellm.register` once and returns
its handler. A bad value stops the proxy at start-up with an error naming the variable.

============================  ==================================================================
``CACHESAVER_STORE``          where samples live: a directory (default ``./.cachesaver``),
                              ``memory``, or ``redis://host:6379/0?prefix=team1`` for a fleet
``CACHESAVER_RUN_ID``         share one usage ledger between replicas and restarts (set it for
                              a fleet; unset, each proxy process is its own run)
``CACHESAVER_NAMESPACE``      namespace of requests that name none (default ``default``)
``CACHESAVER_BATCH_TIMEOUT``  batch window in seconds (default 0.02)
``CACHESAVER_BATCH_SIZE``     samples that close a batch early (default 64)
============================  ==================================================================

Clients name their namespace in the body (``metadata={"cachesaver_namespace": "A"}``) or with
the ``x-cachesaver-namespace`` / ``x-cachesaver-request-id`` headers. The proxy's response
then carries ``x-cachesaver-*`` headers saying what happened, and a request CacheSaver refuses
(a bad namespace, a request id already in flight) is an HTTP 400 (see :class:`ProxyHooks`).
"""
from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

from litellm.integrations.custom_logger import CustomLogger

from cachesaver.errors import InvalidRequestError, InvalidRequestTypeError

from ._http_identity import NAMESPACE_HEADER, REQUEST_ID_HEADER, identity_from_headers

__all__ = [
    "ProxyConfigError",
    "ProxySettings",
    "ProxyHooks",
    "settings_from_env",
    "build_handler",
    "identity_from_headers",
    "response_headers",
    "NAMESPACE_HEADER",
    "REQUEST_ID_HEADER",
    "ENV_STORE",
    "ENV_RUN_ID",
    "ENV_NAMESPACE",
    "ENV_BATCH_TIMEOUT",
    "ENV_BATCH_SIZE",
]

log = logging.getLogger("cachesaver.litellm.proxy")

ENV_STORE = "CACHESAVER_STORE"
ENV_RUN_ID = "CACHESAVER_RUN_ID"
ENV_NAMESPACE = "CACHESAVER_NAMESPACE"
ENV_BATCH_TIMEOUT = "CACHESAVER_BATCH_TIMEOUT"
ENV_BATCH_SIZE = "CACHESAVER_BATCH_SIZE"

DEFAULT_STORE = "./.cachesaver"
DEFAULT_NAMESPACE = "default"
DEFAULT_BATCH_TIMEOUT = 0.02
DEFAULT_BATCH_SIZE = 64
#: A batch window longer than this holds every miss for minutes: surely a unit mistake (ms).
MAX_BATCH_TIMEOUT = 60.0

_SHARED_STORES = ("redis://", "rediss://", "unix://")


class ProxyConfigError(InvalidRequestError):
    """A ``CACHESAVER_*`` setting of the proxy is invalid; the message names the variable."""


@dataclass(frozen=True)
class ProxySettings:
    """The ``register()`` arguments of a proxy, validated."""

    store: str = DEFAULT_STORE
    run_id: Optional[str] = None
    namespace: str = DEFAULT_NAMESPACE
    batch_timeout: float = DEFAULT_BATCH_TIMEOUT
    batch_size: int = DEFAULT_BATCH_SIZE

    def register_kwargs(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "run_id": self.run_id,
            "namespace": self.namespace,
            "timeout": self.batch_timeout,
            "batch_size": self.batch_size,
        }

    @property
    def shared_store(self) -> bool:
        return self.store.startswith(_SHARED_STORES)

    def describe(self) -> str:
        """For logs: the store without credentials."""
        return (f"store={redact_store(self.store)} run_id={self.run_id!r} namespace={self.namespace!r} "
                f"batch_timeout={self.batch_timeout} batch_size={self.batch_size}")


def redact_store(store: str) -> str:
    """A store setting safe to show: a URL loses its user, password and query."""
    if not store.startswith(_SHARED_STORES):
        return store
    parts = urlsplit(store)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _text(environ: Mapping[str, str], name: str) -> Optional[str]:
    value = environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def settings_from_env(environ: Optional[Mapping[str, str]] = None) -> ProxySettings:
    """Read and validate the ``CACHESAVER_*`` variables (``os.environ`` by default).

    Unset or empty variables take their defaults. Raises :class:`ProxyConfigError` naming the
    variable and the fix for a value that cannot work.
    """
    env = os.environ if environ is None else environ
    store = _text(env, ENV_STORE) or DEFAULT_STORE
    if store.startswith(("http://", "https://")):
        raise ProxyConfigError(
            f"{ENV_STORE} is an http(s) URL; use a directory, 'memory' or 'redis://host:6379/0'"
        )

    run_id = _text(env, ENV_RUN_ID)
    namespace = _text(env, ENV_NAMESPACE) or DEFAULT_NAMESPACE

    raw_timeout = _text(env, ENV_BATCH_TIMEOUT)
    batch_timeout = DEFAULT_BATCH_TIMEOUT
    if raw_timeout is not None:
        try:
            batch_timeout = float(raw_timeout)
        except ValueError:
            raise ProxyConfigError(
                f"{ENV_BATCH_TIMEOUT}={raw_timeout!r} is not a number; give the batch window in "
                f"seconds, e.g. {ENV_BATCH_TIMEOUT}=0.02"
            ) from None
        if not math.isfinite(batch_timeout) or batch_timeout < 0 or batch_timeout > MAX_BATCH_TIMEOUT:
            raise ProxyConfigError(
                f"{ENV_BATCH_TIMEOUT}={raw_timeout!r} must be between 0 and {MAX_BATCH_TIMEOUT:g} "
                f"seconds (it is in seconds, not milliseconds), e.g. {ENV_BATCH_TIMEOUT}=0.02"
            )

    raw_size = _text(env, ENV_BATCH_SIZE)
    batch_size = DEFAULT_BATCH_SIZE
    if raw_size is not None:
        try:
            batch_size = int(raw_size)
        except ValueError:
            raise ProxyConfigError(
                f"{ENV_BATCH_SIZE}={raw_size!r} is not a whole number; e.g. {ENV_BATCH_SIZE}=64"
            ) from None
        if batch_size < 1:
            raise ProxyConfigError(f"{ENV_BATCH_SIZE}={raw_size!r} must be >= 1, e.g. {ENV_BATCH_SIZE}=64")

    return ProxySettings(store=store, run_id=run_id, namespace=namespace, batch_timeout=batch_timeout,
                         batch_size=batch_size)


# -- the handler the proxy imports ------------------------------------------------------------------
_lock = threading.Lock()
_built: Any = None


def build_handler(environ: Optional[Mapping[str, str]] = None) -> Any:
    """Register the ``cachesaver`` provider from the environment and return its handler.

    Also installs :class:`ProxyHooks` (``x-cachesaver-*`` response headers, HTTP 400 for
    requests CacheSaver refuses). Idempotent: the same settings return the same handler (one
    run per process).
    """
    import litellm

    from ._registry import register

    settings = settings_from_env(environ)
    try:
        handler = register(**settings.register_kwargs())
    except ProxyConfigError:
        raise
    except (ValueError, TypeError, ImportError) as exc:
        raise ProxyConfigError(
            f"{ENV_STORE}={redact_store(settings.store)!r} cannot be opened: {_safe_message(exc, settings.store)}"
        ) from None
    if settings.shared_store and settings.run_id is None:
        log.warning(
            "%s is shared (%s) but %s is unset: each proxy process is its own run, so replicas "
            "behind one load balancer can hand one sample out twice in a namespace; set %s",
            ENV_STORE, redact_store(settings.store), ENV_RUN_ID, ENV_RUN_ID,
        )
    install_hooks(litellm)
    log.info("cachesaver provider ready for the LiteLLM Proxy (%s)", settings.describe())
    return handler


def _safe_message(exc: BaseException, store: str) -> str:
    """An exception's message with the raw store setting (maybe with a password) replaced."""
    return str(exc).replace(store, redact_store(store))


def __getattr__(name: str) -> Any:
    """``cachesaver_litellm.proxy.handler``: built on first access (the proxy's config load)."""
    global _built
    if name != "handler":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        if _built is None or getattr(_built, "closed", False):
            _built = build_handler()
        return _built


# -- response headers -------------------------------------------------------------------------------
def response_headers(flags: Mapping[str, Any]) -> dict[str, str]:
    """The ``x-cachesaver-*`` headers for one response, from its ``_hidden_params["cachesaver"]``.

    - ``x-cachesaver-cache-hit``: ``true`` when every choice came from the store (nothing was
      billed; the proxy's ``x-litellm-response-cost`` is then 0), ``partial``, or ``false``;
    - ``x-cachesaver-cached`` / ``x-cachesaver-duplicated``: one ``0``/``1`` per choice, in order;
    - ``x-cachesaver-namespace``, ``x-cachesaver-request-id``;
    - ``x-litellm-cache-key``: the sample list's key on a full hit (where litellm's own cache
      puts its key on a hit); a SHA-256 of the request, never a secret.
    """
    cached = [bool(x) for x in flags.get("cached") or []]
    duplicated = [bool(x) for x in flags.get("duplicated") or []]
    full = bool(cached) and all(cached)
    state = "true" if full else ("partial" if any(cached) else "false")
    headers = {
        "x-cachesaver-cache-hit": state,
        "x-cachesaver-cached": ",".join("1" if x else "0" for x in cached),
        "x-cachesaver-duplicated": ",".join("1" if x else "0" for x in duplicated),
        "x-cachesaver-namespace": str(flags.get("namespace") or ""),
    }
    if flags.get("request_id"):
        headers["x-cachesaver-request-id"] = str(flags["request_id"])
    if full and flags.get("key"):
        headers["x-litellm-cache-key"] = str(flags["key"])
    return headers


def _flags_of(data: Mapping[str, Any], response: Any) -> Optional[Mapping[str, Any]]:
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, Mapping) and isinstance(hidden.get("cachesaver"), Mapping):
        return hidden["cachesaver"]
    # Streams: the handler leaves the flags on the call's logging object before the first chunk.
    logging_obj = data.get("litellm_logging_obj") if isinstance(data, Mapping) else None
    details = getattr(logging_obj, "model_call_details", None)
    if isinstance(details, Mapping) and isinstance(details.get("cachesaver"), Mapping):
        return details["cachesaver"]
    return None


_headers_hook: Any = None


def install_hooks(litellm: Any) -> None:
    """Add one :class:`ProxyHooks` to ``litellm.callbacks`` (idempotent)."""
    global _headers_hook
    if _headers_hook is None:
        _headers_hook = ProxyHooks()
    if _headers_hook not in litellm.callbacks:
        litellm.logging_callback_manager.add_litellm_callback(_headers_hook)


def correct_stream_cost(kwargs: dict) -> None:
    """Log a streamed ``cachesaver/`` response at what it was billed, not at its list price.

    litellm logs a stream from the chunks it assembled and prices them as if they had all been
    generated for this caller, so a streamed full hit would be logged (and charged to the
    virtual key by the proxy's spend tracking) at the full price, with ``cache_hit`` false.
    The handler leaves the engine's flags in the call's logging details (``kwargs["cachesaver"]``);
    this sets ``response_cost`` to what the engine billed this caller (0 for a full hit), marks
    full hits ``cache_hit`` and keeps litellm's price as ``saved_cache_cost``. Runs after
    litellm built its logging payload and before any success callback reads it.
    """
    flags = kwargs.get("cachesaver")
    if not kwargs.get("stream") or not isinstance(flags, Mapping):
        return
    billed = float(flags.get("cost_billed") or 0.0)
    cached = list(flags.get("cached") or [])
    full_hit = bool(cached) and all(cached)
    payload = kwargs.get("standard_logging_object")
    listed = payload.get("response_cost") if isinstance(payload, dict) else kwargs.get("response_cost")
    kwargs["response_cost"] = billed
    if full_hit:
        kwargs["cache_hit"] = True
    if isinstance(payload, dict):
        payload["response_cost"] = billed
        if full_hit:
            payload["cache_hit"] = True
            if not payload.get("saved_cache_cost") and isinstance(listed, (int, float)):
                payload["saved_cache_cost"] = float(listed)


def client_error(exc: BaseException) -> Optional[BaseException]:
    """The CacheSaver request error behind ``exc`` (litellm wraps it), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (InvalidRequestError, InvalidRequestTypeError)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class ProxyHooks(CustomLogger):
    """LiteLLM Proxy hooks for ``cachesaver/`` deployments (other requests are left alone):

    - the ``x-cachesaver-*`` response headers (:func:`response_headers`);
    - a request CacheSaver refuses (:class:`~cachesaver.errors.InvalidRequestError`, e.g. an
      empty namespace or over-long header) answers HTTP 400 with its message; litellm would
      report it as a 500 connection error;
    - the logged cost of streamed responses (:func:`correct_stream_cost`), which the proxy's
      spend tracking reads.
    """

    async def async_logging_hook(self, kwargs: dict, result: Any, call_type: str) -> tuple[dict, Any]:
        try:
            correct_stream_cost(kwargs)
        except Exception as exc:  # a logging hook must never break logging
            log.debug("could not correct the logged cost of a cachesaver stream: %r", exc)
        return kwargs, result

    def logging_hook(self, kwargs: dict, result: Any, call_type: str) -> tuple[dict, Any]:
        try:
            correct_stream_cost(kwargs)
        except Exception as exc:
            log.debug("could not correct the logged cost of a cachesaver stream: %r", exc)
        return kwargs, result

    async def async_post_call_response_headers_hook(self, data: dict, user_api_key_dict: Any, response: Any,
                                                    request_headers: Optional[dict] = None,
                                                    litellm_call_info: Optional[dict] = None) -> Optional[dict]:
        try:
            flags = _flags_of(data, response)
            return response_headers(flags) if flags is not None else None
        except Exception as exc:  # a header hook must never fail a response
            log.debug("could not build cachesaver response headers: %r", exc)
            return None

    async def async_post_call_failure_hook(self, request_data: dict, original_exception: Exception,
                                           user_api_key_dict: Any, traceback_str: Optional[str] = None) -> Any:
        refused = client_error(original_exception)
        if refused is None:
            return None
        from fastapi import HTTPException

        return HTTPException(status_code=400, detail=str(refused))
