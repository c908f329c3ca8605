"""The key policy: what a request's key is made of, decided by where a value travels.

A key hashes everything that reaches the model and shapes its output: the model, the prompt or
messages, sampling parameters, ``stop``, tools (names, descriptions, schemas), ``tool_choice``,
``response_format``, ``extra_body`` and any parameter this project does not know, verbatim
(canonical JSON, :mod:`cachesaver.keys`). Nothing is dropped or changed because of how it looks:
a tool property named ``token`` or a description starting "Basic ..." is keyed like any other.

What is *not* keyed is a fixed list of **transport** fields: how a request travels (credentials,
endpoint, headers, timeouts, retries, organisation), who watches it (callbacks, metadata, tracing
ids), client objects, and the engine's own fields (``n``, stream flags). Each adapter names its
transport fields as :data:`TRANSPORT` plus the ones its framework adds
(``cachesaver_litellm._keys.LITELLM_TRANSPORT``, ``cachesaver_langchain._codec.TRANSPORT_PARAMS``);
the README lists them. Credentials belong in transport fields, so they never enter a key, a
stored request or a log. A credential a user puts into an output-shaping field (say
``extra_body``) is keyed like any content; it is caught where samples leave the machine (bundles,
exports) by the secret scanner (:mod:`cachesaver.secrets`).

The model is part of every key (G2/G4 are per model): an engine pipeline keys the identity its
model declares (:func:`model_identity`); adapters' requests name their model themselves.

:data:`KEY_POLICY` numbers this policy. Policy 1 (cachesaver-integrations before 0.2) dropped
values that *looked* like credentials before hashing and did not key an engine model's identity;
``cachesaver migrate-keys`` carries samples of engine keys over to policy 2 (see the README).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterable, Optional

from .errors import InvalidRequestTypeError

__all__ = [
    "KEY_POLICY",
    "TRANSPORT",
    "MODEL_FIELD",
    "MODEL_IN_REQUEST",
    "split_transport",
    "model_identity",
]

#: The number of this key policy (see the module docstring).
KEY_POLICY = 2

#: Transport fields every adapter shares (top-level parameter names; never looked for deeper).
TRANSPORT = frozenset(
    {
        # the engine's own fields
        "n", "stream", "stream_options", "streaming",
        # credentials and where the request goes
        "api_key", "api_base", "base_url", "api_version", "organization", "headers",
        "extra_headers", "default_headers", "default_query",
        # how long and how often it is tried
        "timeout", "request_timeout", "max_retries", "num_retries",
        # who watches it
        "metadata", "callbacks", "tags", "run_name", "run_id",
        # client objects
        "client", "async_client", "http_client", "http_async_client",
    }
)

#: The name under which an engine pipeline keys its model's identity.
MODEL_FIELD = "cachesaver_model"


class _ModelInRequest:
    """The marker type of :data:`MODEL_IN_REQUEST` (a singleton with a readable repr)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MODEL_IN_REQUEST"


#: Declared by a model (``model_id = MODEL_IN_REQUEST``) or passed as ``model_id=`` to a
#: pipeline when every request names its model in its own keyed fields (the adapters' requests
#: do): the pipeline then adds nothing to the key.
MODEL_IN_REQUEST: Any = _ModelInRequest()


def split_transport(params: Mapping[str, Any], transport: Iterable[str] = TRANSPORT,
                    not_sent: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(keyed, sent)`` from one call's parameters (``params`` is never changed).

    ``keyed``: every parameter whose name is not a transport field, with its value unchanged
    (the key hashes it verbatim); ``sent``: every parameter but ``not_sent`` (what the real call
    receives, transport included). ``None`` values are left out of both.
    """
    transport = transport if isinstance(transport, (frozenset, set)) else frozenset(transport)
    not_sent = not_sent if isinstance(not_sent, (frozenset, set)) else frozenset(not_sent)
    keyed: dict[str, Any] = {}
    sent: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name not in not_sent:
            sent[name] = value
        if name not in transport:
            keyed[name] = value
    return keyed, sent


def model_identity(model: Any, explicit: Any = None) -> Optional[str]:
    """The model identity an engine pipeline keys (``None``: it keys none).

    In order: ``explicit`` (the pipeline's ``model_id=`` argument); the model's ``model_id``
    attribute (how a ``SingleRequestModel``/``BatchRequestModel`` declares what it is, e.g.
    ``"openai/gpt-4o-mini"``); the model's ``model`` attribute when it is a string (the seed
    README's ``OnlineLLM(client, "gpt-4o-mini")`` keeps its model name there). A pipeline is a
    model too: it declares the identity it keys, so pipelines compose. :data:`MODEL_IN_REQUEST`
    at either place means the requests name the model themselves.
    """
    if explicit is not None:
        return _checked(explicit, "model_id")
    declared = getattr(model, "model_id", None)
    if declared is not None:
        return _checked(declared, f"{type(model).__name__}.model_id")
    name = getattr(model, "model", None)
    if isinstance(name, str) and name:
        return name
    return None


def _checked(value: Any, where: str) -> Any:
    if value is MODEL_IN_REQUEST:
        return value
    if not isinstance(value, str) or not value:
        raise InvalidRequestTypeError(
            f"{where} must be a non-empty str naming the model (e.g. 'openai/gpt-4o-mini') or "
            f"cachesaver.keypolicy.MODEL_IN_REQUEST, got {value!r}"
        )
    return value
