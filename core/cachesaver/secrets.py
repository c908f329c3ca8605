"""What looks like a credential, by name or by value, at any depth: never keyed, never stored (G7).

Adapters key a request on its output-shaping parameters, and the key's canonical request is
stored beside the samples (for ``inspect``, exports and bundles). Credentials travel in many
shapes: ``api_key=``, ``extra_body={"api_key": ...}``, ``token=``, ``authorization="Bearer ..."``,
``https://user:pass@host/v1``. One rule, used by every adapter, removes them from what is keyed
(the real call still receives them): a mapping entry whose *name* looks like a credential, or
whose *value* does, is dropped; a URL keeps everything but its user info.

Credentials do not shape the output distribution, so two calls that differ only in a credential
share their samples (as they should: the same model, the same prompt).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["is_secret_name", "is_secret_value", "holds_credentials", "without_secrets", "url_without_userinfo"]

# Names: anywhere in the name for unambiguous words; whole words for "token"/"auth" (max_tokens
# and author are not credentials).
_SECRET_NAME = re.compile(
    r"api[_-]?key|secret|passw(or)?d|credential|access[_-]?key|private[_-]?key|cookie|bearer"
    r"|(^|[_-])(auth|authorization|token|access[_-]?token|session[_-]?token|ad[_-]?token)($|[_-])",
    re.I,
)
# Values: an authorization scheme, or the prefix of a well-known provider key format.
_SECRET_VALUE = re.compile(
    r"^(bearer|basic|token)\s+\S{8,}|^(sk|rk|pk)[-_][A-Za-z0-9_-]{8,}|^sk-ant-|^xox[abposr]-|^gh[pousr]_\w{20,}"
    r"|^AKIA[0-9A-Z]{16}$|^AIza[0-9A-Za-z_-]{30,}$|^hf_[A-Za-z0-9]{20,}$",
    re.I,
)
_URL_WITH_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#]*@", re.I)
_PASSWORD_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def is_secret_name(name: Any) -> bool:
    return isinstance(name, str) and bool(_SECRET_NAME.search(name))


def is_secret_value(value: Any) -> bool:
    return isinstance(value, str) and bool(_SECRET_VALUE.search(value.strip()))


def holds_credentials(value: Any) -> bool:
    """A string that is a credential, or quotes a URL with a password anywhere in it."""
    return is_secret_value(value) or (isinstance(value, str) and bool(_PASSWORD_IN_URL.search(value)))


def url_without_userinfo(value: str) -> str:
    """``https://user:pass@host/v1`` -> ``https://host/v1`` (anything else unchanged)."""
    if not _URL_WITH_USERINFO.match(value):
        return value
    parts = urlsplit(value)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def without_secrets(value: Any) -> Any:
    """``value`` with every credential-looking entry removed, at any depth (a new object;
    the argument is never changed). Lists keep their length: a secret item becomes None."""
    if isinstance(value, Mapping):
        return {k: without_secrets(v) for k, v in value.items()
                if not is_secret_name(k) and not is_secret_value(v)}
    if isinstance(value, (list, tuple)):
        return [None if is_secret_value(v) else without_secrets(v) for v in value]
    if isinstance(value, str):
        return url_without_userinfo(value)
    return value
