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

Names are Unicode, headers are ASCII: **a header value is percent-decoded** (UTF-8, RFC 3986),
so ``x-cachesaver-namespace: %E5%AE%9E%E9%AA%8C`` names the namespace ``实验`` (in Python:
``urllib.parse.quote("实验")``). A plain ASCII name without ``%`` reads as itself; a literal ``%``
is sent as ``%25``; a header holding raw non-ASCII bytes or a ``%`` escape that is not UTF-8 is
refused, naming the header and the fix. The response's ``x-cachesaver-namespace`` and
``x-cachesaver-request-id`` use the same rule the other way (:func:`header_value`): printable
ASCII other than ``%`` is sent as is, so plain ASCII names look the same in both directions.

A name that travels over HTTP (from a header or, at the proxy, from the body's metadata) may be
any Unicode text except control characters (C0 ``U+0000-U+001F``, ``DEL``, C1 ``U+0080-U+009F``:
CR, LF, NUL, tab...) and lone surrogates (:func:`check_http_name`): they have no business in a
name that reaches headers and log lines, and refusing them while the request is built means a
400 before any upstream call. (The engine itself stores any ``str`` as a name.)
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from cachesaver.checks import check_namespace
from cachesaver.errors import InvalidRequestError

__all__ = ["identity_from_headers", "header_value", "check_http_name", "NAMESPACE_HEADER", "REQUEST_ID_HEADER"]

NAMESPACE_HEADER = "x-cachesaver-namespace"
REQUEST_ID_HEADER = "x-cachesaver-request-id"

#: header -> the metadata key the provider reads (same names as ``_provider.NAMESPACE_KEY`` ...).
_FIELDS = ((NAMESPACE_HEADER, "cachesaver_namespace"), (REQUEST_ID_HEADER, "cachesaver_request_id"))
#: Longer values are refused: a namespace is a name, not a payload.
MAX_HEADER_VALUE = 512
#: Sent as is in a response header: printable ASCII except ``%`` (which starts an escape).
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


#: What a name over HTTP may not hold: control characters (category Cc) and surrogates (Cs).
_NOT_NAME_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_http_name(name: str, field: str, example: str) -> str:
    """``name`` unless it holds a control character or a lone surrogate (module docstring);
    the :class:`~cachesaver.errors.InvalidRequestError` names the field, the character and
    where it is."""
    bad = _NOT_NAME_TEXT.search(name)
    if bad is not None:
        char = bad.group()
        what = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
        raise InvalidRequestError(
            f"{field} holds {what} (U+{ord(char):04X} at position {bad.start()}); a namespace or "
            f"request id may be any Unicode text without control characters (CR, LF, NUL, tab...) "
            f"or lone surrogates: remove it, e.g. {example}")
    return name


def header_value(name: str) -> str:
    """``name`` (a namespace or request id) as an HTTP header value: percent-encoded UTF-8 for
    anything but printable ASCII other than ``%``, and for a space at either end (HTTP trims
    those). ``urllib.parse.unquote`` gives the name back; plain ASCII names are unchanged."""
    value = quote(name, safe=_SAFE)
    if value[:1] == " ":
        value = "%20" + value[1:]
    if value[-1:] == " ":
        value = value[:-1] + "%20"
    return value


def _decoded(header: str, value: str) -> str:
    """A header value percent-decoded (see the module docstring), or a refusal naming the fix."""
    if not value.isascii():
        raise InvalidRequestError(
            f"header {header} holds non-ASCII characters; percent-encode the name's UTF-8, e.g. "
            f"'{header}: {quote('实验')}' for 实验 (Python: urllib.parse.quote(name))")
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequestError(
            f"header {header} has a %-escape that is not UTF-8 ({value!r}); percent-encode the "
            f"name's UTF-8 (Python: urllib.parse.quote(name)), and a literal '%' as %25") from None


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

    Keys are present only for headers that were sent; values are percent-decoded (see the module
    docstring). Raises :class:`~cachesaver.errors.InvalidRequestError` naming the header when a
    value is empty, not text, longer than :data:`MAX_HEADER_VALUE` characters, not ASCII, not
    percent-encoded UTF-8, or decodes to a name with a control character.
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
            name = _decoded(header, value.strip())
            example = f"'{header}: experiment-1'" if field == "cachesaver_namespace" else f"'{header}: q-17'"
            check_namespace(name, f"header {header}", example)
            found[field] = check_http_name(name, f"header {header}", example)
    return found
