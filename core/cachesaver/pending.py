"""The unit that travels through a pipeline: a validated request, its key and its future."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .typedefs import Request, Response

__all__ = ["Pending"]


@dataclass(eq=False)
class Pending:
    request: Request
    key: str
    future: "asyncio.Future[Response]"

    def resolve(self, response: Response) -> None:
        if not self.future.done():
            self.future.set_result(response)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
