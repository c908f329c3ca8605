"""The engine's one validation of a request's identity fields: ``n``, namespace, request id.

Every entry point checks them here (``Pipeline``, the adapters' metadata via
:func:`cachesaver.runtime.read_identity`, adapters' constructors, the proxy), so the same bad
value raises the same class everywhere: a wrong *type* is an
:class:`~cachesaver.errors.InvalidRequestTypeError` (a ``TypeError``), a wrong *value* of the
right type (``n=0``, an empty namespace) an :class:`~cachesaver.errors.InvalidRequestError` (a
``ValueError``). Each message names the field and shows a good value.

A namespace or request id is a *name*: any Unicode text (``'实验'``, an emoji) except control
characters (C0 ``U+0000-U+001F``, ``DEL`` and C1 ``U+007F-U+009F``: CR, LF, NUL, tab...) and lone
surrogates, which are refused. Names reach log lines, the CLI's tables and, percent-encoded, HTTP
headers (the proxy's ``x-cachesaver-*``); a CR/LF or NUL has no business in any of them, and a
lone surrogate is not text at all (it cannot be written as UTF-8). Numbers in keyed fields must
be finite: that check lives in the one walk that keys a request (:mod:`cachesaver.keys`).
"""
from __future__ import annotations

import re
from typing import Any, Optional

from .errors import InvalidRequestError, InvalidRequestTypeError

__all__ = ["check_n", "check_max_n", "check_namespace", "check_request_id", "check_name_text", "is_name_text",
           "MAX_N"]

#: The default limit of samples one request may ask for (OpenAI's own limit of ``n``): one
#: careless or hostile request cannot cost more than this many samples (G2).
MAX_N = 128


def check_n(n: Any, field: str = "n", *, optional: bool = True, limit: Optional[int] = None) -> int:
    """``n`` as a number of samples: ``None`` means 1 where ``optional`` (framework arguments);
    anything else but an int >= 1 (and <= ``limit``) is refused."""
    if n is None and optional:
        return 1
    if isinstance(n, bool) or not isinstance(n, int):
        raise InvalidRequestTypeError(f"{field} must be an int >= 1, got {type(n).__name__} {n!r}")
    if n < 1:
        raise InvalidRequestError(f"{field} must be an int >= 1, got {n}")
    if limit is not None and n > limit:
        raise InvalidRequestError(
            f"{field} is {n}, above the limit of {limit} samples per request; ask in several "
            f"requests, or raise the limit with max_n= (the pipeline's or the adapter's)")
    return n


def check_max_n(max_n: Any, field: str = "max_n") -> int:
    """A pipeline's limit of samples per request: an int >= 1."""
    if isinstance(max_n, bool) or not isinstance(max_n, int):
        raise InvalidRequestTypeError(f"{field} must be an int >= 1, e.g. {MAX_N}; got {max_n!r}")
    if max_n < 1:
        raise InvalidRequestError(f"{field} must be an int >= 1, e.g. {MAX_N}; got {max_n}")
    return max_n


#: What a name may not hold: control characters (Unicode category Cc) and surrogates (Cs).
_NOT_NAME_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def is_name_text(name: str) -> bool:
    """Whether ``name`` holds no control character and no surrogate (the hot path's test)."""
    return _NOT_NAME_TEXT.search(name) is None


def check_name_text(name: str, field: str, example: str) -> str:
    """``name`` unless it holds a control character or a lone surrogate (see module docstring)."""
    bad = _NOT_NAME_TEXT.search(name)
    if bad is not None:
        char = bad.group()
        what = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
        raise InvalidRequestError(
            f"{field} holds {what} (U+{ord(char):04X} at position {bad.start()}); a name may be any "
            f"Unicode text without control characters (CR, LF, NUL, tab...) or lone surrogates: remove it, e.g. {example}")
    return name


def check_namespace(namespace: Any, field: str = "namespace", example: str = "'agent-1'") -> str:
    """A namespace: a non-empty str of name text (no control characters, see module docstring)."""
    if not isinstance(namespace, str):
        raise InvalidRequestTypeError(
            f"{field} must be a non-empty str, e.g. {example}; got {type(namespace).__name__} {namespace!r}")
    if not namespace:
        raise InvalidRequestError(f"{field} must be a non-empty str, e.g. {example}; got ''")
    return check_name_text(namespace, field, example)


def check_request_id(request_id: Any, field: str = "request_id", example: str = "'q-17'", *,
                     optional: bool = True) -> str:
    """A request id: a str of name text (``""``, or ``None`` where ``optional``, mean "none":
    arrival order)."""
    if request_id is None and optional:
        return ""
    if not isinstance(request_id, str):
        raise InvalidRequestTypeError(
            f"{field} must be a str, e.g. {example}; got {type(request_id).__name__} {request_id!r}")
    return check_name_text(request_id, field, example)
