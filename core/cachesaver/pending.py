"""The unit that travels through a pipeline: a validated request, its key and its future."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Optional

from .typedefs import Request, Response

__all__ = ["Pending"]


@dataclass(eq=False)
class Pending:
    request: Request
    key: str
    future: "asyncio.Future[Response]"
    task: "Optional[asyncio.Task[object]]" = None  # the caller's task
    #: Set when the synchronous hit path already queued this request's (namespace, key)
    #: (``OnlineAPI.try_now``); released when the request is done.
    reservation: "Optional[object]" = None
    _cancel_baseline: int = 0

    def __post_init__(self) -> None:
        # A task that once swallowed a CancelledError keeps cancelling() > 0 for good: only a
        # cancellation requested after this request arrived counts.
        self._cancel_baseline = self._cancelling()

    def _cancelling(self) -> int:
        cancelling = getattr(self.task, "cancelling", None)  # Python 3.11+
        return cancelling() if cancelling is not None else 0

    def wanted(self) -> bool:
        """False once the caller has left, or has a cancellation on its way."""
        return not self.future.done() and self._cancelling() <= self._cancel_baseline

    def resolve(self, response: Response) -> None:
        if not self.future.done():
            self.future.set_result(response)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
