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

    def wanted(self) -> bool:
        """False once the caller has left, or has a cancellation on its way (Python 3.11+)."""
        if self.future.done():
            return False
        cancelling = getattr(self.task, "cancelling", None)
        return not (cancelling is not None and cancelling())

    def resolve(self, response: Response) -> None:
        if not self.future.done():
            self.future.set_result(response)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
