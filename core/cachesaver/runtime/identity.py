"""A call's identity, read the same way by every adapter: namespace, request id, ``n``.

Frameworks carry per-call metadata in different places (litellm's ``metadata`` and
``litellm_metadata``, LangChain's run config, the proxy's request body), but the keys and the
rules are one: ``cachesaver_namespace`` (a non-empty str; default: the adapter's namespace) and
``cachesaver_request_id`` (a str; empty means "arrival order"). Bad values raise the engine's
own error classes, with the field named and the fix given.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ..errors import InvalidRequestError, InvalidRequestTypeError

__all__ = ["NAMESPACE_KEY", "REQUEST_ID_KEY", "read_identity", "check_n", "check_namespace"]

#: Metadata key of the namespace (every adapter reads this one).
NAMESPACE_KEY = "cachesaver_namespace"
#: Metadata key of the request id (orders concurrent requests for exact replays, G4).
REQUEST_ID_KEY = "cachesaver_request_id"


def read_identity(*sources: Optional[Mapping[str, Any]], default_namespace: str,
                  where: str = "metadata") -> tuple[str, str]:
    """``(namespace, request_id)`` from the first source that names each (checked).

    ``sources`` are metadata mappings in priority order; non-mappings are skipped.
    """
    namespace: Any = None
    request_id: Any = None
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        if namespace is None:
            namespace = source.get(NAMESPACE_KEY)
        if request_id is None:
            request_id = source.get(REQUEST_ID_KEY)
    if namespace is None:
        namespace = default_namespace
    if not isinstance(namespace, str) or not namespace:
        raise InvalidRequestTypeError(
            f"{where}[{NAMESPACE_KEY!r}] must be a non-empty str, got {namespace!r}; pass e.g. "
            f"{where}={{'{NAMESPACE_KEY}': 'agent-1'}}"
        )
    if request_id is None:
        request_id = ""
    if not isinstance(request_id, str):
        raise InvalidRequestTypeError(
            f"{where}[{REQUEST_ID_KEY!r}] must be a str, got {type(request_id).__name__}; pass e.g. "
            f"{where}={{'{REQUEST_ID_KEY}': 'q-17'}}"
        )
    return namespace, request_id


def check_n(n: Any, field: str = "n") -> int:
    """``n`` as a number of samples: ``None`` means 1; anything but an int >= 1 is refused."""
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int):
        raise InvalidRequestTypeError(f"{field} must be an int >= 1, got {type(n).__name__} {n!r}")
    if n < 1:
        raise InvalidRequestError(f"{field} must be an int >= 1, got {n}")
    return n


def check_namespace(namespace: Any, field: str = "namespace") -> str:
    """A default namespace given to an adapter's constructor (a wrong type is a ``TypeError``,
    an empty string a ``ValueError``, in every adapter)."""
    if not isinstance(namespace, str):
        raise InvalidRequestTypeError(f"{field} must be a non-empty str, e.g. 'default'; got {namespace!r}")
    if not namespace:
        raise InvalidRequestError(f"{field} must be a non-empty str, e.g. 'default'; got ''")
    return namespace
