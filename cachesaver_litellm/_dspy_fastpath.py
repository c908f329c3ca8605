"""``CacheSaverLM`` hits answered from the engine before litellm's pipeline (DSPy's cache shape).

DSPy answers its own cache hits at the top of its execution path, before any engine runs; a
``cachesaver/`` call instead went DSPy -> litellm's ``completion`` body -> the provider, and the
litellm pass is most of a hit's time. This module lets :class:`~cachesaver_litellm.dspy.CacheSaverLM`
check the engine on the caller's thread first, as :class:`~cachesaver_litellm.CacheSaverRouter`
does above a Router: a full hit is served there (DSPy's history, usage tracker and callbacks
see it as they see any call), anything else takes the normal path unchanged.

**The key is learned from the normal path, never re-derived.** What a ``cachesaver/`` sample is
keyed on is the provider's request, built from litellm's ``optional_params``, which litellm
computes from DSPy's arguments by rules of its own (dropped and mapped parameters, converted
response formats). Re-implementing those rules here could key a hit differently from its slow
twin, and a different key means other samples. So the first call of each *shape* (the LM's
model and every argument that can shape litellm's parameters: all of DSPy's request but the
messages, ``n``, ``rollout_id`` and the transport fields that never reach a key) goes the normal
way, and the provider reports the request it built (:func:`observe`). The shape is kept only if
that request's prompt, ``n`` and namespace are exactly what this module computes for the call;
later calls of that shape build their request from it: the same key, namespace and request id
as the normal path would (G1-G4: a hit takes the next ledger position like any hit, through the
same engine call, :meth:`~cachesaver.runtime.HostedPipeline.hit_now`).

Shapes belong to one registered provider (a new ``register()`` learns afresh); at most
:data:`MAX_SHAPES` are kept per provider. Process-wide litellm settings that change how litellm
maps parameters (``litellm.drop_params``) count as they were when the shape was learned: change
them before the calls, or register the provider anew (``unregister()``, then ``register()``).
Not on this path (always the normal one): explicit
``dspy.lm15.Request`` calls, streaming, non-chat model types, messages other than plain
``{"role", "content": str}`` dicts, identities given any other way than ``metadata``, the
LiteLLM Proxy's provider, shared runs (no synchronous hits) and Redis stores (whose synchronous
hits, one blocking round trip, this path does not take yet: ``pipeline.inline_hits``).
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from cachesaver.errors import CacheSaverError
from cachesaver.runtime import NAMESPACE_KEY, REQUEST_ID_KEY, read_identity

from ._backend import LiteLLMRequest
from ._issue_order import ISSUE_KEY, issue_request_id
from ._keys import LITELLM_TRANSPORT, normalise_messages
from ._namespace_warning import warn_no_namespace_once

__all__ = ["Plan", "plan", "observe", "learning", "MAX_SHAPES"]

#: Shapes kept per registered provider (a program has a handful; a runaway is cleared, not grown).
MAX_SHAPES = 1024

#: Request fields left out of a shape: the messages, ``n`` and ``rollout_id`` (per call, never
#: parameters) and the transport fields, which never reach a key, except those that decide
#: which parameters litellm keeps or where the call goes (kept, so they split shapes).
_NOT_SHAPED = frozenset({"messages", "n", "rollout_id"}) | (
    LITELLM_TRANSPORT - {"api_base", "base_url", "api_version", "drop_params", "additional_drop_params"})
#: Ways to give an identity that this path does not read (the normal path does).
_OTHER_IDENTITY = frozenset({"litellm_metadata", NAMESPACE_KEY, REQUEST_ID_KEY, "proxy_server_request"})


@dataclass(frozen=True)
class _Shape:
    """What a call of one shape is keyed on, as the provider built it on the normal path."""

    model: str
    params: dict
    endpoint: Optional[str]
    provider: str


#: A shape whose normal-path request differed from this module's reading: always the normal path.
_NOT_FAST = _Shape("", {}, None, "")

_shapes: "weakref.WeakKeyDictionary[Any, dict[tuple, _Shape]]" = weakref.WeakKeyDictionary()
_shapes_lock = threading.Lock()


class _Observed:
    """Where the provider reports the request it built for the call being learned."""

    __slots__ = ("handler", "request")

    def __init__(self) -> None:
        self.handler: Any = None
        self.request: Optional[LiteLLMRequest] = None


_observing: contextvars.ContextVar[Optional[_Observed]] = contextvars.ContextVar(
    "cachesaver_dspy_observing", default=None)


def observe(handler: Any, request: LiteLLMRequest) -> None:
    """(Called by the provider for every request it builds.) Report it to a learning call."""
    holder = _observing.get()
    if holder is not None and holder.request is None:
        holder.handler = handler
        holder.request = request


@dataclass
class Plan:
    """One eligible ``CacheSaverLM`` call: its DSPy call, identity and (when known) engine request."""

    handler: Any
    call: Any                      # DSPy's PreparedCall
    shape_key: tuple
    namespace: str
    request_id: str
    prompt: list
    request: Optional[LiteLLMRequest]   # None until the shape is learned
    provider: str = ""
    #: The call's kwargs for the normal path (an async call carries its issue number).
    kwargs: Optional[dict] = None

    def hit_now(self) -> Any:
        assert self.request is not None
        return self.handler.hosted.hit_now(self.request)

    async def hit_async(self) -> Any:
        assert self.request is not None
        return await self.handler.hosted.hit_async(self.request)

    def learn(self, holder: _Observed) -> None:
        """Keep the shape the normal path just showed, if it is what this plan would have built."""
        built = holder.request
        if built is None or holder.handler is not self.handler or self.request is not None:
            return
        same = (built.prompt == self.prompt and built.n == self.call.n and built.namespace == self.namespace
                and (not self.request_id or built.request_id == self.request_id))
        shape = _Shape(built.model, built.params, built.endpoint,
                       built.call.provider if built.call is not None else "") if same else _NOT_FAST
        with _shapes_lock:
            table = _shapes.setdefault(self.handler, {})
            if len(table) >= MAX_SHAPES:
                table.clear()
            table[self.shape_key] = shape


@contextlib.contextmanager
def learning(plan_: Optional[Plan]) -> Iterator[None]:
    """Around a normal-path call: learn its shape from the request the provider builds."""
    if plan_ is None or plan_.request is not None:
        yield
        return
    holder = _Observed()
    token = _observing.set(holder)
    try:
        yield
    finally:
        _observing.reset(token)
    plan_.learn(holder)


def plan(lm: Any, prompt: Any, messages: Any, kwargs: dict, *, asynchronous: bool,
         prepare: Any, send_stream: Any) -> Optional[Plan]:
    """The fast-path plan for a call, or None when the call must take the normal path."""
    from ._registry import _handler as handler

    if (handler is None or handler.closed or handler.http_names or lm.model_type != "chat"
            or send_stream is not None or "request" in kwargs or kwargs.get("cache")):
        return None
    pipeline = handler.hosted.pipeline
    if not pipeline.inline_hits:
        return None
    if messages is None:
        if not isinstance(prompt, str):
            return None
        rendered = [{"role": "user", "content": prompt}]
    else:
        if prompt is not None or not _plain_messages(messages):
            return None
        rendered = messages
    call = prepare(lm, prompt, messages, kwargs)
    legacy = call.legacy
    if call.request is not None or not call.managed or call.cache or _OTHER_IDENTITY.intersection(legacy):
        return None
    signature = _signature(legacy)
    if signature is None:
        return None
    shape_key = (lm.model, signature)
    shape = _shapes.get(handler, {}).get(shape_key)
    if shape is _NOT_FAST:
        return None
    metadata = legacy.get("metadata")
    try:
        namespace, request_id = read_identity(metadata, default_namespace=handler.settings.namespace,
                                              known_keys=(ISSUE_KEY,))
    except (TypeError, ValueError, CacheSaverError):
        return None  # the normal path refuses it, with its own error
    if not (isinstance(metadata, Mapping) and metadata.get(NAMESPACE_KEY) is not None):
        warn_no_namespace_once(lm.model, handler.settings.namespace)
    call_kwargs = kwargs
    if not request_id and asynchronous:
        # Numbered now, in issue order, as litellm's pre-call hook would number it (see
        # _issue_order); a miss carries the number to the normal path, which keeps it.
        number = handler.next_issue(namespace)
        request_id = issue_request_id({ISSUE_KEY: number}, namespace)
        call_kwargs = {**kwargs, "metadata": {**(metadata if isinstance(metadata, Mapping) else {}),
                                              ISSUE_KEY: number}}
    prompt_ = normalise_messages(rendered)
    result = Plan(handler, call, shape_key, namespace, request_id, prompt_, None, kwargs=call_kwargs)
    if shape is not None:
        result.request = LiteLLMRequest(prompt=prompt_, n=call.n, request_id=request_id, namespace=namespace,
                                        model=shape.model, params=shape.params, endpoint=shape.endpoint)
        result.provider = shape.provider
    return result


def _plain_messages(messages: Any) -> bool:
    if not isinstance(messages, list) or not messages:
        return False
    for message in messages:
        if type(message) is not dict or len(message) != 2:
            return False
        if type(message.get("role")) is not str or type(message.get("content")) is not str:
            return False
    return True


#: The last signature written per (model, field names): a call of the same shape compares its
#: fields with the copy kept here (types included) instead of writing its JSON again.
_recent_signatures: dict[tuple, tuple[dict, str]] = {}
#: Entries kept (one per shape a program uses; a runaway is cleared, not grown).
_MAX_RECENT = 256


def _signature(legacy: Mapping[str, Any]) -> Optional[str]:
    """The shape of a call: its request minus what is never a parameter (see :data:`_NOT_SHAPED`).

    None (normal path) for values without an exact JSON form."""
    fields = {name: value for name, value in legacy.items() if name not in _NOT_SHAPED}
    memo = (legacy.get("model"), tuple(fields))
    recent = _recent_signatures.get(memo)
    if recent is not None and _same(recent[0], fields):
        return recent[1]
    try:  # json, not orjson: orjson writes NaN and infinities as null, as it writes None
        signature = json.dumps(fields, sort_keys=True, default=_exact_form, allow_nan=True)
    except (TypeError, ValueError):
        return None
    if len(_recent_signatures) >= _MAX_RECENT:
        _recent_signatures.clear()
    _recent_signatures[memo] = (_snapshot(fields), signature)
    return signature


def _same(kept: Any, value: Any) -> bool:
    """``value`` equals ``kept`` with the same type at every level (1, 1.0 and True differ, as
    their JSON does); values other than JSON's containers and scalars only by identity."""
    kind = type(kept)
    if kind is not type(value):
        return False
    if kind is dict:
        return kept.keys() == value.keys() and all(_same(kept[name], value[name]) for name in kept)
    if kind is list or kind is tuple:
        return len(kept) == len(value) and all(_same(a, b) for a, b in zip(kept, value))
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return bool(kept == value)
    # A pydantic class (a typed output) is signed by name and schema: the same class, the same
    # signature. Anything else (a subclass of dict, say, which may change in place) is signed anew.
    return isinstance(kept, type) and kept is value


def _snapshot(value: Any) -> Any:
    """A copy of ``value``'s dicts and lists (what a caller could change in place later)."""
    kind = type(value)
    if kind is dict:
        return {name: _snapshot(item) for name, item in value.items()}
    if kind is list:
        return [_snapshot(item) for item in value]
    if kind is tuple:
        return tuple(_snapshot(item) for item in value)
    return value


def _exact_form(value: Any) -> Any:
    """Pydantic classes (DSPy's typed outputs) by their full name and schema; nothing else."""
    schema = getattr(value, "model_json_schema", None)
    if isinstance(value, type) and callable(schema):
        return {"pydantic_class": f"{value.__module__}.{value.__qualname__}", "schema": schema()}
    raise TypeError(type(value).__name__)
