"""Re-point a runnable built by the inner model (``bind_tools``, ``with_structured_output``) at
the wrapper.

Letting the inner model build these keeps every provider's own behaviour (how it formats tools,
which structured-output methods it has, which parser reads the answer); the calls must still go
through the wrapper, so every reference to the inner model inside the returned runnable graph
(``RunnableBinding.bound``, sequence steps, parallel branches, fallbacks) is replaced by the
wrapper. Runnables are pydantic models, so the walk is generic: any field holding the inner model,
directly or in a list or dict, is swapped in a shallow copy.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel

__all__ = ["repoint"]


def repoint(runnable: Any, old: Any, new: Any) -> Any:
    """``runnable`` with every reference to ``old`` replaced by ``new``.

    Raises ``NotImplementedError`` if ``old`` is not reachable through fields (a closure holds
    it), since the calls would then bypass the cache without anyone noticing.
    """
    result, replaced = _walk(runnable, old, new, depth=0)
    if not replaced:
        raise NotImplementedError(
            f"{type(old).__name__} returned a {type(runnable).__name__} that does not expose the "
            "model it calls, so CacheSaverChatModel cannot route it through the cache; build the "
            "runnable on the CacheSaverChatModel with .bind(...) instead"
        )
    return result


def _walk(value: Any, old: Any, new: Any, depth: int) -> tuple[Any, int]:
    if value is old:
        return new, 1
    if depth > 32:
        return value, 0
    if isinstance(value, BaseModel):
        updates = {}
        count = 0
        for name in type(value).model_fields:
            child = getattr(value, name, None)
            replaced, n = _walk(child, old, new, depth + 1)
            if n:
                updates[name] = replaced
                count += n
        return (value.model_copy(update=updates), count) if count else (value, 0)
    if isinstance(value, (list, tuple)):
        items, count = [], 0
        for child in value:
            replaced, n = _walk(child, old, new, depth + 1)
            items.append(replaced)
            count += n
        return (type(value)(items) if count else value), count
    if isinstance(value, Mapping):
        out, count = {}, 0
        for k, child in value.items():
            replaced, n = _walk(child, old, new, depth + 1)
            out[k] = replaced
            count += n
        return (out if count else value), count
    return value, 0
