"""The namespace and request id of a call that came over HTTP, from its request headers.

Clients that cannot add body fields (tools they did not write, SDKs that drop unknown fields)
name their namespace with headers::

    x-cachesaver-namespace: agent-1
    x-cachesaver-request-id: r-17

The LiteLLM Proxy hands the (non-secret) request headers to the provider in
``litellm_params["metadata"]["headers"]`` (``litellm_metadata`` on some routes) and in
``litellm_params["proxy_server_request"]["headers"]``; it strips ``Authorization`` and the
virtual key before either. :func:`identity_from_headers` reads both places and returns the
values under the metadata names the provider already reads (``cachesaver_namespace``,
``cachesaver_request_id``), so the body form and the header form go through one path.

Only these two headers are ever read; no header enters a cache key or the store.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachesaver.errors import InvalidRequestError

__all__ = ["identity_from_headers", "NAMESPACE_HEADER", "REQUEST_ID_HEADER"]

NAMESPACE_HEADER = "x-cachesaver-namespace"
REQUEST_ID_HEADER = "x-cachesaver-request-id"

#: header -> the metadata key the provider reads (same names as ``_provider.NAMESPACE_KEY`` ...).
_FIELDS = ((NAMESPACE_HEADER, "cachesaver_namespace"), (REQUEST_ID_HEADER, "cachesaver_request_id"))
#: Longer values are refused: a namespace is a name, not a payload.
MAX_HEADER_VALUE = 512


def _headers_in(litellm_params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = []
    for field in ("metadata", "litellm_metadata", "proxy_server_request"):
        holder = litellm_params.get(field)
        headers = holder.get("headers") if isinstance(holder, Mapping) else None
        if isinstance(headers, Mapping) and headers:
            found.append(headers)
    return found


def _lookup(headers: Mapping[str, Any], name: str) -> Any:
    value = headers.get(name)
    if value is not None:
        return value
    for key, value in headers.items():  # HTTP header names are case-insensitive
        if isinstance(key, str) and key.lower() == name:
            return value
    return None


def identity_from_headers(litellm_params: Mapping[str, Any] | None) -> dict[str, str]:
    """``{"cachesaver_namespace": ..., "cachesaver_request_id": ...}`` from the request headers.

    Keys are present only for headers that were sent. Raises
    :class:`~cachesaver.errors.InvalidRequestError` naming the header when a value is empty,
    not text, or longer than :data:`MAX_HEADER_VALUE` characters.
    """
    if not litellm_params:
        return {}
    found: dict[str, str] = {}
    for headers in _headers_in(litellm_params):
        for header, field in _FIELDS:
            if field in found:
                continue
            value = _lookup(headers, header)
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequestError(
                    f"header {header} must be a non-empty name (got {value!r}); "
                    f"send e.g. '{header}: experiment-1' or leave the header out"
                )
            if len(value) > MAX_HEADER_VALUE:
                raise InvalidRequestError(
                    f"header {header} is {len(value)} characters long; keep it under {MAX_HEADER_VALUE}"
                )
            found[field] = value.strip()
    return found
