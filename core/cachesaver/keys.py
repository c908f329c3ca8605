"""Canonical cache keys.

A key is the SHA-256 of the canonical JSON of everything that shapes the output distribution
(what that is: :mod:`cachesaver.keypolicy`).
Canonical means: object keys sorted, ``None`` values dropped (``stop=None`` is the same request as
no ``stop``), integral floats written as integers (``temperature=1`` is ``temperature=1.0``),
tuples as lists, pydantic classes as their JSON schema and pydantic objects as their dump. The
result does not depend on dict order, process, machine, Python version or ``PYTHONHASHSEED``.

A NaN or infinity anywhere in keyed material is the caller's mistake, refused by this walk (every
request is keyed once at admission, before any model call, in every adapter) with a
:class:`~cachesaver.errors.NonFiniteNumberError` naming its path (an ``InvalidRequestError``:
HTTP 400 at the proxy).
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from collections.abc import Mapping
from typing import Any, Optional

import orjson

from .errors import InvalidRequestTypeError, NonFiniteNumberError, NotSerializableError
from .keypolicy import MODEL_FIELD, MODEL_IN_REQUEST
from .typedefs import Request, request_fields

__all__ = ["canonical", "canonical_json", "keyed_json", "make_key", "request_key"]

_MAX_DEPTH = 64


class _NeedsPath(Exception):
    """The fast walk met something to report or convert: redo it with paths."""


def _fast(value: Any, depth: int) -> Any:
    """``canonical`` for plain JSON data, without building a path for every element (the hot
    path of every request); anything unusual is left to the path-tracking walk."""
    if value is None or type(value) is str or type(value) is bool:
        return value
    if type(value) is int:
        return value
    if type(value) is float:
        if math.isfinite(value):
            return int(value) if value.is_integer() and abs(value) < 2**53 else value
        raise _NeedsPath
    if depth > _MAX_DEPTH:
        raise _NeedsPath
    if type(value) is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _NeedsPath
            if v is not None:
                out[k] = _fast(v, depth + 1)
        return out
    if type(value) is list or type(value) is tuple:
        return [_fast(v, depth + 1) for v in value]
    raise _NeedsPath


def canonical(value: Any, *, _path: str = "$", _depth: int = 0) -> Any:
    """Return ``value`` as plain JSON data in canonical form (see module docstring)."""
    try:
        return _fast(value, _depth)
    except _NeedsPath:
        return _canonical_at(value, _path, _depth)


def _canonical_at(value: Any, _path: str, _depth: int) -> Any:
    """The general walk: converts pydantic objects, enums and dataclasses, and names the path
    of anything it cannot convert."""
    if _depth > _MAX_DEPTH:
        raise NotSerializableError(f"key field {_path} is nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return int(value)
        if not math.isfinite(value):
            raise NonFiniteNumberError(
                f"key field {_path} is {value!r}; JSON has no NaN or infinity: pass a finite number"
            )
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise NotSerializableError(
                    f"key field {_path} has a non-string dict key {k!r}; use string keys"
                )
            if v is None:
                continue
            out[k] = _canonical_at(v, f"{_path}.{k}", _depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical_at(v, f"{_path}[{i}]", _depth + 1) for i, v in enumerate(value)]
    if isinstance(value, enum.Enum):
        return _canonical_at(value.value, _path, _depth + 1)
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        # A pydantic class (structured output): its schema is what reaches the model.
        return _canonical_at(value.model_json_schema(), _path, _depth + 1)
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return _canonical_at(value.model_dump(mode="json"), _path, _depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical_at({f.name: getattr(value, f.name) for f in dataclasses.fields(value)},
                             _path, _depth + 1)
    raise NotSerializableError(
        f"key field {_path} has type {type(value).__name__}, which has no canonical JSON form; "
        "pass str/int/float/bool/list/dict (or a pydantic model or dataclass)"
    )


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes of ``value`` (sorted keys, no whitespace)."""
    plain = canonical(value)
    try:
        return orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:  # e.g. a lone surrogate: "str is not valid UTF-8"
        path = _bad_string_path(plain, "$") or "$"
        raise NotSerializableError(
            f"key field {path} cannot be written as JSON ({exc}); pass valid Unicode text "
            "(lone surrogates such as '\\ud800' are not)"
        ) from None


def _bad_string_path(value: Any, path: str) -> "str | None":
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _bad_string_path(k, f"{path}.<key>") or _bad_string_path(v, f"{path}.{k}")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _bad_string_path(v, f"{path}[{i}]")
            if found:
                return found
    return None


def make_key(payload: Mapping[str, Any]) -> str:
    """SHA-256 hex key of a request payload. Adapters call this with what they hashed."""
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def keyed_json(request: Request, model_id: Optional[str] = None) -> tuple[str, bytes]:
    """``request_key(request, model_id)`` and the canonical JSON it hashes (what the store keeps
    as the key's meta): one walk of the request for both."""
    fields = request_fields(request)
    if model_id is not None and model_id is not MODEL_IN_REQUEST:
        if MODEL_FIELD in fields:
            raise InvalidRequestTypeError(
                f"{type(request).__name__} has a keyed field named {MODEL_FIELD!r}, which the "
                "pipeline uses for its model's identity; rename the field"
            )
        fields[MODEL_FIELD] = model_id
    raw = canonical_json(fields)
    return hashlib.sha256(raw).hexdigest(), raw


def request_key(request: Request, model_id: Optional[str] = None) -> str:
    """Key of an engine ``Request``: all keyed fields (prompt and any user-added decoding field)
    and, when given, the identity of the model that answers it (``Pipeline.model_id``)."""
    return keyed_json(request, model_id)[0]
