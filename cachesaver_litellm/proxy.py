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
``CACHESAVER_MAX_N``          the most samples one request may ask for (default 128); a client
                              asking for more gets a 400 before anything is paid
``CACHESAVER_MAX_FANOUT``     upstream calls one request's samples take at once from a provider
                              without ``n`` (default 8)
``CACHESAVER_MAX_CONCURRENT_CALLS``  upstream calls the process has in flight at once, whatever
                              the clients send (default 64)
============================  ==================================================================

Clients name their namespace in the body (``metadata={"cachesaver_namespace": "A"}``) or with
the ``x-cachesaver-namespace`` / ``x-cachesaver-request-id`` headers. The proxy's response
then carries ``x-cachesaver-*`` headers saying what happened, and a request CacheSaver refuses
(a bad namespace, a request id already in flight) is an HTTP 400 (see :class:`ProxyHooks`).

A namespace or request id may be any Unicode text (``实验``, an emoji) without control
characters. Headers carry it percent-encoded UTF-8, both ways: the request headers are
percent-decoded (``x-cachesaver-namespace: %E5%AE%9E%E9%AA%8C`` is ``实验``; a literal ``%`` is
``%25``) and the response's name headers are percent-encoded (``urllib.parse.unquote`` reads
them); plain ASCII names without ``%`` look the same either way. Every name is checked, and
every keyed number must be finite, while the request is built, before any upstream call: a
CR/LF/NUL in a name or a ``NaN``/``Infinity`` anywhere in a keyed parameter is a 400 naming the
field (its JSON path), with nothing paid and no ledger position taken.
"""
from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from cachesaver.checks import MAX_CONCURRENT_CALLS, MAX_FANOUT, MAX_N
from cachesaver.errors import InvalidRequestError
from cachesaver.stores.urls import redact_url

from ._http_identity import NAMESPACE_HEADER, REQUEST_ID_HEADER, check_http_name, identity_from_headers

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
    "ENV_MAX_N",
    "ENV_MAX_FANOUT",
    "ENV_MAX_CONCURRENT_CALLS",
]

log = logging.getLogger("cachesaver.litellm.proxy")

ENV_STORE = "CACHESAVER_STORE"
ENV_RUN_ID = "CACHESAVER_RUN_ID"
ENV_NAMESPACE = "CACHESAVER_NAMESPACE"
ENV_BATCH_TIMEOUT = "CACHESAVER_BATCH_TIMEOUT"
ENV_BATCH_SIZE = "CACHESAVER_BATCH_SIZE"
ENV_MAX_N = "CACHESAVER_MAX_N"
ENV_MAX_FANOUT = "CACHESAVER_MAX_FANOUT"
ENV_MAX_CONCURRENT_CALLS = "CACHESAVER_MAX_CONCURRENT_CALLS"

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
    max_n: int = MAX_N
    max_fanout: int = MAX_FANOUT
    max_concurrent_calls: int = MAX_CONCURRENT_CALLS

    def register_kwargs(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "run_id": self.run_id,
            "namespace": self.namespace,
            "timeout": self.batch_timeout,
            "batch_size": self.batch_size,
            "max_n": self.max_n,
            "max_fanout": self.max_fanout,
            "max_concurrent_calls": self.max_concurrent_calls,
        }

    @property
    def shared_store(self) -> bool:
        return self.store.startswith(_SHARED_STORES)

    def describe(self) -> str:
        """For logs: the store without credentials."""
        return (f"store={redact_store(self.store)} run_id={self.run_id!r} namespace={self.namespace!r} "
                f"batch_timeout={self.batch_timeout} batch_size={self.batch_size} max_n={self.max_n} "
                f"max_fanout={self.max_fanout} max_concurrent_calls={self.max_concurrent_calls}")


def redact_store(store: str) -> str:
    """A store setting safe to show (the engine's one redaction rule for store URLs)."""
    return redact_url(store)


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
    try:
        check_http_name(namespace, ENV_NAMESPACE, f"{ENV_NAMESPACE}=experiment-1")
    except InvalidRequestError as exc:
        raise ProxyConfigError(str(exc)) from None

    batch_timeout = _env_number(
        env, ENV_BATCH_TIMEOUT, float, DEFAULT_BATCH_TIMEOUT, example="0.02",
        what="a number (the batch window in seconds)",
        valid=lambda t: math.isfinite(t) and 0 <= t <= MAX_BATCH_TIMEOUT,
        rule=f"must be between 0 and {MAX_BATCH_TIMEOUT:g} seconds (it is in seconds, not milliseconds)")
    batch_size = _env_number(env, ENV_BATCH_SIZE, int, DEFAULT_BATCH_SIZE, example="64",
                             what="a whole number", valid=lambda n: n >= 1, rule="must be >= 1")

    max_n = _env_number(env, ENV_MAX_N, int, MAX_N, example=str(MAX_N), what="a whole number",
                        valid=lambda n: n >= 1, rule="must be >= 1 (the most samples one request may ask for)")
    max_fanout = _env_number(env, ENV_MAX_FANOUT, int, MAX_FANOUT, example=str(MAX_FANOUT),
                             what="a whole number", valid=lambda n: n >= 1,
                             rule="must be >= 1 (upstream calls one request's samples take at once)")
    max_concurrent_calls = _env_number(env, ENV_MAX_CONCURRENT_CALLS, int, MAX_CONCURRENT_CALLS,
                                       example=str(MAX_CONCURRENT_CALLS), what="a whole number",
                                       valid=lambda n: n >= 1,
                                       rule="must be >= 1 (upstream calls in flight at once)")
    return ProxySettings(store=store, run_id=run_id, namespace=namespace, batch_timeout=batch_timeout,
                         batch_size=batch_size, max_n=max_n, max_fanout=max_fanout,
                         max_concurrent_calls=max_concurrent_calls)


def _env_number(env: Mapping[str, str], name: str, parse: Callable[[str], Any], default: Any, *,
                example: str, what: str, valid: Callable[[Any], bool], rule: str) -> Any:
    """A numeric setting from the environment: ``default`` if unset, else parsed and checked,
    with an error that names the variable, the value and an example."""
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ProxyConfigError(f"{name}={raw!r} is not {what}; e.g. {name}={example}") from None
    if not valid(value):
        raise ProxyConfigError(f"{name}={raw!r} {rule}; e.g. {name}={example}")
    return value


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
    handler.http_names = True  # names reach headers: control characters are refused (400)
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


# The proxy's hooks (response headers, stream costs, refused requests -> HTTP 400).
from ._proxy_hooks import (  # noqa: E402,F401  (re-exported: configs and tests name them here)
    ProxyHooks,
    client_error,
    correct_stream_cost,
    install_hooks,
    log_saving,
    response_headers,
)
