"""The unit that travels through a pipeline: a validated request, its key and its future."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .typedefs import Request, Response

if TYPE_CHECKING:
    from .admission import Reservation

__all__ = ["Pending"]


@dataclass(eq=False)
class Pending:
    request: Request
    key: str
    future: "asyncio.Future[Response]"
    task: "Optional[asyncio.Task[object]]" = None  # the caller's task
    #: This request's place in its (namespace, key) queue, once it has one: taken by the
    #: synchronous hit path's miss (``OnlineAPI.try_now``) or by the tick's check; released
    #: when the request is done.
    reservation: "Optional[Reservation]" = None
    #: The canonical JSON of the request's keyed fields (its key is their hash), kept from
    #: admission for the store's key meta, so a miss does not walk the request twice.
    meta: Optional[bytes] = None
    #: The pipeline tick this request was checked in (batches are served tick by tick).
    tick: int = 0
    #: Whether the caller gave the request id (else the pipeline numbered it by arrival): only
    #: a caller's id is remembered with the positions it took (:mod:`cachesaver.idpositions`).
    explicit_id: bool = True
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
