"""What the cacher tells a model about the call it is making: which samples, for whom first.

A model is called with one representative request and ``n`` = the missing count; that is all a
plain model needs. An adapter that can stream a generation live (LangChain, litellm) needs one
more fact: which waiting caller the *first* new sample will be handed to. Only that caller may
see the generation's chunks as they arrive; every other caller receives a stored sample.

The cacher sets :func:`current_generation` around each model call (a context variable, so it is
visible inside ``model.request`` and the tasks it starts, and nowhere else). Models that do not
stream ignore it.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from .typedefs import Request

__all__ = ["Generation", "current_generation"]


@dataclass(frozen=True)
class Generation:
    """One model call of the cacher: samples ``first_index .. first_index+count-1`` of ``key``."""

    key: str
    first_index: int
    count: int
    #: The request the sample at ``first_index`` will be delivered to first, if a waiting caller
    #: is due to receive it (in a shared run another process may claim it first: a prediction).
    first_receiver: Optional[Request] = None
    #: Called with the first index once the call's samples are appended (batch mode marks its
    #: journal line stored there); a failing hook is logged, never fails the call. Added with
    #: :meth:`when_stored`; None until then (most calls have none: no list per call).
    on_stored: "Optional[list[Callable[[int], Awaitable[Any]]]]" = field(default=None, compare=False, repr=False)
    #: The canonical request JSON the samples are stored with (set by the cacher for the call):
    #: batch mode records it with its line, so that a line collected by another process (the
    #: ``cachesaver batches collect`` command) is stored with the request, as the engine would.
    meta: Optional[bytes] = field(default=None, compare=False, repr=False)
    #: Set by a model that streams the first sample to ``first_receiver`` as it is generated
    #: (:meth:`streamed_live`): that caller may have been shown it, so in a private run it is
    #: handed exactly that sample, even if callers before it in its namespace leave meanwhile.
    live: bool = field(default=False, compare=False, repr=False)

    def streamed_live(self) -> None:
        """The model shows the sample at ``first_index`` to ``first_receiver`` as it arrives."""
        object.__setattr__(self, "live", True)  # (frozen: only this field changes)

    def when_stored(self, hook: "Callable[[int], Awaitable[Any]]") -> None:
        """Call ``hook(first_index)`` once this call's samples are appended."""
        if self.on_stored is None:
            object.__setattr__(self, "on_stored", [hook])  # (frozen: only this field changes)
        else:
            self.on_stored.append(hook)


_current: contextvars.ContextVar[Optional[Generation]] = contextvars.ContextVar(
    "cachesaver_generation", default=None
)


def current_generation() -> Optional[Generation]:
    """The cacher's call being made in this context (None outside ``model.request``)."""
    return _current.get()


def set_generation(generation: Optional[Generation]) -> contextvars.Token:
    return _current.set(generation)


def reset_generation(token: contextvars.Token) -> None:
    _current.reset(token)
