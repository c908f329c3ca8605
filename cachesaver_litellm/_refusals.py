"""CacheSaver's refusals as litellm's own ``BadRequestError`` (HTTP 400).

litellm hands any other exception a custom provider raises to its exception mapper, which
reports it as a ``litellm.APIConnectionError`` (status 500) whose text carries the whole
traceback, and prints a red "Give Feedback / Get Help" banner when ``suppress_debug_info`` is
off. Its own exception types pass through that mapper untouched (``exception_type`` returns
them as they are), so the provider raises those for what is the caller's to fix:

- an invalid request (``n=0``, a namespace that is not a string, ``n`` above ``max_n``, a
  request id already in flight): :class:`~cachesaver.errors.InvalidRequestError` and
  :class:`~cachesaver.errors.InvalidRequestTypeError`;
- an offline miss (``register(offline=True)``, a bundle): :class:`~cachesaver.errors.OfflineMissError`.

The message is CacheSaver's one line (litellm prefixes ``litellm.BadRequestError: `` as it does
for all its errors); the CacheSaver exception stays reachable as ``__cause__``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from cachesaver.errors import InvalidRequestError, InvalidRequestTypeError, OfflineMissError

__all__ = ["REFUSALS", "as_bad_request", "refusals_as_bad_request"]

#: What the caller has to fix: answered as a bad request, never retried by litellm.
REFUSALS = (InvalidRequestError, InvalidRequestTypeError, OfflineMissError)


def as_bad_request(exc: BaseException, model: str) -> Exception:
    """litellm's ``BadRequestError`` carrying ``exc``'s message (first line only)."""
    import litellm

    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return litellm.BadRequestError(message=message, model=model, llm_provider="cachesaver")


@contextlib.contextmanager
def refusals_as_bad_request(model: str) -> Iterator[None]:
    """Re-raise a CacheSaver refusal inside the block as litellm's ``BadRequestError``."""
    try:
        yield
    except REFUSALS as exc:
        raise as_bad_request(exc, model) from exc
