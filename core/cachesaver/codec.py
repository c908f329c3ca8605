"""Sample records as JSON bytes: the only thing the stores ever write (G7: no pickle).

A record is ``{"d": <sample>, "u": [prompt_tokens, completion_tokens, cost]}``: the sample as the
model returned it and this sample's share of what its call billed (used to report savings).
"""
from __future__ import annotations

import math
from typing import Any

import orjson

from .errors import CorruptSampleError, NotSerializableError

__all__ = ["exact_bytes", "encode_sample", "decode_sample", "SampleRecord"]

# Dataclasses, datetimes and numpy arrays are *not* plain JSON: orjson would silently turn them
# into dicts/strings, and the replayed sample would differ in type from the live one.
_STRICT = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


class SampleRecord(tuple):
    """(data, prompt_tokens, completion_tokens, cost) decoded from the store."""

    __slots__ = ()

    @property
    def data(self) -> Any:
        return self[0]

    @property
    def prompt_tokens(self) -> int:
        return self[1]  # whole tokens: shares come from Usage.split

    @property
    def completion_tokens(self) -> int:
        return self[2]

    @property
    def cost(self) -> float:
        return self[3]


def encode_sample(data: Any, prompt_tokens: float = 0, completion_tokens: float = 0,
                  cost: float = 0.0, *, where: str = "sample") -> bytes:
    """Encode one sample strictly as JSON; raise ``NotSerializableError`` naming ``where``."""
    try:
        encoded = orjson.dumps({"d": data, "u": [prompt_tokens, completion_tokens, cost]}, option=_STRICT)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise NotSerializableError(
            f"{where} is not plain JSON ({exc}); return str/int/float/bool/list/dict samples "
            "from the model (convert objects with .model_dump() or dataclasses.asdict())"
        ) from None
    # orjson writes NaN and infinities as null: a silent change of value. They can only be
    # there if "null" is, so the walk runs only then.
    if b"null" in encoded:
        bad = _non_finite_path(data, "$")
        if bad is not None:
            raise NotSerializableError(
                f"{where} holds a NaN or infinite number at {bad}; JSON has neither, so it would "
                "come back as null: replace it (e.g. with None or a string) in the model's output"
            )
    # orjson's result keeps the buffer it wrote into (4 kB at least): a ~100-byte record held
    # by a store or a waiting frame would cost 4 kB. An exact-size copy costs a memcpy.
    return exact_bytes(encoded)


def exact_bytes(data: bytes) -> bytes:
    """``data`` as a bytes object of exactly its size (see :func:`encode_sample`)."""
    return bytes(memoryview(data))


def _non_finite_path(value: Any, path: str) -> "str | None":
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for k, v in value.items():
            found = _non_finite_path(v, f"{path}.{k}")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _non_finite_path(v, f"{path}[{i}]")
            if found:
                return found
    return None


def decode_sample(raw: Any, *, key: str, index: int) -> SampleRecord:
    """Decode a stored record; anything we did not write raises ``CorruptSampleError``.

    ``index`` is the record's 0-based position in the key's list; the message counts from 1 (the
    position ``cachesaver inspect`` shows as ``#index+1``)."""
    if isinstance(raw, str):
        raw = raw.encode()
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise CorruptSampleError(
            f"sample {index + 1} of key {key} is a {type(raw).__name__}, not JSON bytes; "
            "the store was written by something else: remove that key (cachesaver prune)"
        )
    try:
        obj = orjson.loads(raw)
        data = obj["d"]
        pt, ct, cost = obj.get("u") or (0, 0, 0.0)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptSampleError(
            f"sample {index + 1} of key {key} is not a CacheSaver record ({exc}); "
            "the store was modified by something else: remove that key"
        ) from None
    return SampleRecord((data, pt, ct, cost))
