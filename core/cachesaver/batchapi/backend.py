"""What batch mode needs from a provider: the engine-level interface adapters implement.

The engine never imports a provider SDK; ``cachesaver_litellm`` implements this interface
with litellm's files and batches calls. Every method gets a *request of the batch* (any line's):
it carries the transport settings (endpoint, credentials) the call needs, which the journal
never stores.
"""
from __future__ import annotations

import dataclasses
from typing import Hashable, Optional, Protocol

from ..errors import CacheSaverError, InvalidRequestError
from ..typedefs import Request, Usage

__all__ = ["BatchBackend", "BatchStatus", "LineResult", "BatchUnsupportedError", "BatchLineError",
           "BatchNotAnsweredError", "CreationReplyLost", "ENDED"]

#: Provider batch states after which nothing more will be answered.
ENDED = ("completed", "failed", "expired", "cancelled")


class BatchUnsupportedError(InvalidRequestError):
    """Batch mode was asked for a provider (or store) that cannot do it."""


class BatchLineError(CacheSaverError, RuntimeError):
    """The provider answered this line of a batch with an error (its error file)."""


class BatchNotAnsweredError(CacheSaverError, RuntimeError):
    """The batch ended (failed, expired, cancelled) without answering this line."""


class CreationReplyLost(CacheSaverError, ConnectionError):
    """A batch creation was sent once and its reply lost (a connection error or a timeout).

    Backends send the creation without client retries (a retry after a lost reply creates, and
    bills, a second batch) and raise this instead: the collector keeps the batch's record (a
    ``ConnectionError``: the batch may exist) and a later miss finds it by its input file
    (:meth:`BatchBackend.find`) instead of creating another.
    """

    def __init__(self, input_file: str, cause: BaseException) -> None:
        super().__init__(
            f"no reply to the creation of the batch of file {input_file} ({type(cause).__name__}): it may "
            "exist at the provider; asking again finds it by its input file instead of creating another")


@dataclasses.dataclass(frozen=True)
class BatchStatus:
    state: str                               # validating, in_progress, finalizing, or one of ENDED
    output_file: Optional[str] = None
    error_file: Optional[str] = None
    message: str = ""                        # why a batch failed, when the provider says


@dataclasses.dataclass(frozen=True)
class LineResult:
    """One line's answer: its samples and what they were billed (at the batch price), or an error."""

    samples: Optional[list] = None
    usage: Usage = Usage()
    error: str = ""
    price_note: str = ""                      # where the batch price came from (for logs/docs)
    batch: str = ""                           # set by the collector: the journal batch and line
    custom_id: str = ""


class BatchBackend(Protocol):
    """A provider's Batch API, as batch mode uses it (see the module docstring)."""

    def check(self, request: Request) -> None:
        """Raise :class:`BatchUnsupportedError` (naming the provider and the fix) if
        ``request``'s provider has no batch API this backend can use."""

    def group(self, request: Request) -> Hashable:
        """Requests of one group go into one batch file (one provider, endpoint, credentials
        and model). Kept in memory only: it may hold credentials."""

    def describe(self, request: Request) -> dict:
        """What the journal may keep about the batch: provider, model, endpoint without
        credentials. Never a secret."""

    def line(self, custom_id: str, request: Request, n: int) -> bytes:
        """One JSONL line (with its newline) asking for ``n`` samples of ``request``."""

    async def upload(self, request: Request, content: bytes) -> str:
        """Upload a batch input file; return the provider's file id."""

    async def create(self, request: Request, input_file: str, journal_id: str) -> str:
        """Create the batch of ``input_file`` (sent once, no client retry); return the provider's
        batch id. A lost reply raises :class:`CreationReplyLost`."""

    async def find(self, request: Request, input_file: str) -> Optional[str]:
        """The provider's batch of ``input_file`` if one was created (a crash may have come
        between creation and its record), else None."""

    async def status(self, request: Request, batch_id: str) -> BatchStatus: ...

    async def results(self, request: Request, status: BatchStatus) -> "dict[str, LineResult]":
        """Every answered line of an ended batch, by custom_id (output and error files)."""

    async def cancel(self, request: Request, batch_id: str) -> None: ...

    # Optional (looked up with getattr; a backend without it lists pending lines as unestimated):
    # def estimate(self, request: Request, n: int) -> Optional[float]:
    #     """What a line asking ``n`` samples of ``request`` will cost at batch prices, as far as
    #     can be known before the answer (``cachesaver batches`` shows it as pending)."""
