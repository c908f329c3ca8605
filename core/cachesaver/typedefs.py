"""The engine's public data types, at the import path the seed README documents.

``Request`` is a frozen dataclass that users subclass to add decoding fields; every field except
``n``, ``request_id``, ``namespace`` and fields marked with :func:`unkeyed` becomes part of the
cache key, so ``temperature=0.7`` and ``temperature=1.0`` never share samples.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, List, Optional

__all__ = [
    "Request",
    "Response",
    "Batch",
    "Usage",
    "SingleRequestModel",
    "BatchRequestModel",
    "unkeyed",
    "UNKEYED",
    "merge_responses",
]

#: Field metadata flag: the field travels to the model but is not part of the cache key.
UNKEYED = "cachesaver_unkeyed"


def unkeyed(default: Any = None, **kwargs: Any) -> Any:
    """Declare a ``Request`` field that reaches the model but not the key nor the store.

    Use it for transport settings (API base, timeout, credentials) or per-call context that must
    not split or leak into the cache::

        @dataclass(frozen=True)
        class MyRequest(Request):
            temperature: float = 0.7
            api_key: str | None = unkeyed(default=None)
    """
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata[UNKEYED] = True
    if "default_factory" in kwargs:
        return field(compare=False, repr=False, metadata=metadata, **kwargs)
    return field(default=default, compare=False, repr=False, metadata=metadata, **kwargs)


_NO_PROMPT: Any = object()


@dataclass(frozen=True, init=False)
class Request:
    """One call for ``n`` samples of ``prompt`` on behalf of ``namespace``.

    ``request_id`` must be unique among requests in flight; inside a batch, samples are handed
    out in ``request_id`` order, which is what makes concurrent runs replay exactly.

    ``n``, ``request_id`` and ``namespace`` are keyword-only, so a subclass may add fields
    without defaults (the seed README's ``temperature: float``); ``prompt`` stays positional.

    cachesaver 0.0.6's form is accepted too: ``Request(args=..., kwargs=..., n=2,
    request_id="r1", namespace="ns")`` (the positional and keyword arguments of the model call).
    ``args`` and ``kwargs`` are keyed like ``prompt``; the transport fields among ``kwargs``
    (``stream``, ``api_key``, ``timeout``, ... :data:`cachesaver.keypolicy.TRANSPORT`) are not.
    """

    prompt: Any
    n: int = field(default=1, kw_only=True)
    request_id: str = field(default="", kw_only=True)
    namespace: str = field(default="default", kw_only=True)
    args: Any = field(default=None, kw_only=True)
    kwargs: Any = field(default=None, kw_only=True)

    def __init__(self, prompt: Any = _NO_PROMPT, *, n: int = 1, request_id: str = "",
                 namespace: str = "default", args: Any = None, kwargs: Any = None) -> None:
        if prompt is _NO_PROMPT:
            if args is None and kwargs is None:
                raise TypeError("Request() needs a prompt: Request('...'), or 0.0.6's Request(args=..., kwargs=...)")
            prompt = None
        put = object.__setattr__  # frozen: what the generated __init__ does too
        put(self, "prompt", prompt)
        put(self, "n", n)
        put(self, "request_id", request_id)
        put(self, "namespace", namespace)
        put(self, "args", args)
        put(self, "kwargs", kwargs)


@dataclass(frozen=True)
class Usage:
    """What one model call billed. Models attach it to ``Response.usage`` when they know it.

    ``prompt_tokens`` are billed once per call however many samples it returns; ``cost`` is in
    dollars for the whole call. The engine splits a call's usage evenly over its samples and
    stores each share beside the sample, so later hits can report what they saved.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost + other.cost,
        )

    def split(self, k: int) -> "List[Usage]":
        """This call's usage as ``k`` per-sample shares that add up to it exactly.

        The one policy every adapter reports (G8's "original"): the call's first sample carries
        the prompt tokens, which the provider billed once; completion tokens are split evenly in
        whole tokens (the remainder to the first samples); the cost follows the tokens.
        """
        if k <= 0:
            return []
        base, extra = divmod(max(int(self.completion_tokens), 0), k)
        completions = [base + (1 if i < extra else 0) for i in range(k)]
        prompts = [max(int(self.prompt_tokens), 0)] + [0] * (k - 1)
        total = sum(prompts) + sum(completions)
        shares = []
        for i in range(k):
            weight = (prompts[i] + completions[i]) / total if total else 1 / k
            shares.append(Usage(prompts[i], completions[i], self.cost * weight))
        return shares


@dataclass
class Response:
    """The samples for one request, with per-sample provenance flags.

    - ``cached[i]``: sample i was not billed to this response (it was stored before, or another
      response claimed it first). The false flags over all responses add up to samples generated.
    - ``duplicated[i]``: sample i came from a model call shared with other requests and is not
      that call's original (input tokens were not billed for it).
    - ``usage``: set by models to report what the call billed (see :class:`Usage`); on responses
      returned by a pipeline it is the share billed to this response (zero on a full hit).
    - ``sample_usage``: on responses returned by a pipeline, each sample's stored share of what
      its call billed (:meth:`Usage.split`), whoever it was billed to: what adapters report as a
      sample's usage, the same in every adapter and every replay. A model that made several
      calls for one response may set it (each call's split); otherwise the engine splits
      ``usage``.
    """

    data: List[Any]
    cached: Optional[List[bool]] = None
    duplicated: Optional[List[bool]] = None
    usage: Optional[Usage] = None
    sample_usage: Optional[List[Usage]] = None
    #: On responses returned by a pipeline: the request's cache key (adapters report it).
    key: Optional[str] = None
    #: On responses returned by a pipeline: model calls whose original sample this response
    #: received (what ``Stats`` counts as this namespace's model calls).
    model_calls: int = 0

    def __post_init__(self) -> None:
        if self.cached is None:
            self.cached = [False] * len(self.data)
        if self.duplicated is None:
            self.duplicated = [False] * len(self.data)


@dataclass
class Batch:
    """Requests sent to a ``BatchRequestModel`` together (hardware batching for local models)."""

    requests: List[Request] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.requests)


def merge_responses(responses: "List[Response]") -> Response:
    """One response holding the samples of several model calls, in order: each call's usage is
    split over its own samples (its ``sample_usage``, else :meth:`Usage.split`, so each call's
    prompt is billed once) and the totals are added. What a model that answers one request with
    several calls returns (a fan-out over a provider without ``n``, a hardware batch of items)."""
    data: List[Any] = []
    shares: List[Usage] = []
    usage = Usage()
    for response in responses:
        own = response.usage if isinstance(response.usage, Usage) else Usage()
        data.extend(response.data)
        shares.extend(response.sample_usage or own.split(len(response.data)))
        usage = usage + own
    return Response(data=data, usage=usage, sample_usage=shares)


class SingleRequestModel(ABC):
    """A model the pipeline can ask for ``request.n`` samples of one request.

    Subclass it, or just define ``async def request(self, request)``: like cachesaver 0.0.6's
    runtime-checkable protocol, ``isinstance(model, SingleRequestModel)`` is true for any object
    with a callable ``request`` (as ``collections.abc`` checks ``__iter__``).
    """

    @abstractmethod
    async def request(self, request: Request) -> Response:
        """Return a ``Response`` whose ``data`` holds up to ``request.n`` JSON-serialisable samples."""

    @classmethod
    def __subclasshook__(cls, other: type) -> Any:
        if cls is SingleRequestModel:
            return _defines(other, "request")
        return NotImplemented


class BatchRequestModel(ABC):
    """A model that answers several requests in one call (``LocalAPI`` uses it).

    Subclass it, or just define ``async def batch_request(self, batch)`` (duck typing, as for
    :class:`SingleRequestModel`).
    """

    @abstractmethod
    async def batch_request(self, batch: Batch) -> List[Response]:
        """Return one ``Response`` per request of ``batch``, in the same order."""

    @classmethod
    def __subclasshook__(cls, other: type) -> Any:
        if cls is BatchRequestModel:
            return _defines(other, "batch_request")
        return NotImplemented


def _defines(other: type, method: str) -> Any:
    """True if ``other`` (or a base) defines a callable ``method``; else let ABC decide."""
    for base in other.__mro__:
        if method in base.__dict__:
            return True if callable(base.__dict__[method]) else NotImplemented
    return NotImplemented


def request_fields(request: Request) -> dict[str, Any]:
    """The request's fields that shape the output distribution (the key material)."""
    names = _KEYED_FIELDS.get(type(request))
    if names is None:
        names = tuple(
            f.name
            for f in dataclasses.fields(request)
            if f.name not in _NOT_KEYED and not f.metadata.get(UNKEYED)
        )
        _KEYED_FIELDS[type(request)] = names
    # None is never keyed (canonical JSON drops it): leaving it out here saves the walk.
    fields = {name: value for name in names if (value := getattr(request, name)) is not None}
    call_kwargs = fields.get("kwargs")
    if call_kwargs is not None and isinstance(call_kwargs, Mapping):
        # 0.0.6's call kwargs: their transport fields are not keyed
        from .keypolicy import TRANSPORT, split_transport

        fields["kwargs"] = split_transport(call_kwargs, TRANSPORT)[0]
    return fields


_NOT_KEYED = frozenset({"n", "request_id", "namespace"})
_KEYED_FIELDS: dict[type, tuple[str, ...]] = {}
