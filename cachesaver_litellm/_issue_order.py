"""Issue order for concurrent ``acompletion`` calls without a request id (G4).

litellm runs each async call's set-up on a thread pool, so calls issued together (one
``asyncio.gather``) reach the ``cachesaver/`` handler in the order those threads finish, not in
the order they were issued; samples handed out in arrival order then differ from run to run.
litellm calls ``async_pre_call_deployment_hook`` in the caller's task *before* that thread pool,
so in issue order: there each call without a ``cachesaver_request_id`` is numbered (per run and
namespace), and the handler uses the number as its request id. The engine's records of where
each id took its samples (:mod:`cachesaver.idpositions`) then make the k-th call issued in a
namespace get the same samples in every replay, whatever the threads do.

The number travels in a copy of the call's ``metadata`` (the caller's dict is never changed: a
program may pass one dict to many calls).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional

from litellm.integrations.custom_logger import CustomLogger

from cachesaver.runtime import NAMESPACE_KEY, REQUEST_ID_KEY, read_identity

__all__ = ["IssueOrder", "ISSUE_KEY", "issue_request_id"]

#: The metadata key the number travels under (private to this adapter).
ISSUE_KEY = "cachesaver_issue"

_PREFIX = "cachesaver/"


def issue_request_id(metadata: Any, namespace: str) -> str:
    """The request id a numbered call gets (``""`` if the call was not numbered): its number in
    its namespace, and the namespace (ids in flight are unique across a pipeline's namespaces)."""
    if isinstance(metadata, Mapping):
        number = metadata.get(ISSUE_KEY)
        if isinstance(number, int) and not isinstance(number, bool) and number >= 0:
            return f"issue-{number:010d}@{namespace}"
    return ""


def _numbered(metadata: Any) -> bool:
    return isinstance(metadata, Mapping) and isinstance(metadata.get(ISSUE_KEY), int)


class IssueOrder(CustomLogger):
    """Numbers async ``cachesaver/`` calls without a request id in issue order (see module docstring).

    ``handler()`` returns the registered handler (its run numbers its own calls), or None.
    """

    def __init__(self, handler: Callable[[], Any]) -> None:
        super().__init__()
        self._handler = handler

    async def async_pre_call_deployment_hook(self, kwargs: dict, call_type: Any) -> Optional[dict]:
        model = kwargs.get("model")
        handler = self._handler()
        if handler is None or not (isinstance(model, str) and model.startswith(_PREFIX)):
            return None
        metadata = kwargs.get("metadata")
        try:
            arguments = {k: kwargs[k] for k in (NAMESPACE_KEY, REQUEST_ID_KEY) if k in kwargs}  # as the provider
            namespace, request_id = read_identity(metadata, kwargs.get("litellm_metadata"), arguments,
                                                  default_namespace=handler.settings.namespace)
        except (TypeError, ValueError):
            return None  # the handler refuses the call with the field named
        if request_id or _numbered(metadata):
            return None  # ordered by its id, or numbered at issue already (CacheSaverLM)
        kwargs["metadata"] = {**(metadata if isinstance(metadata, Mapping) else {}),
                              ISSUE_KEY: handler.next_issue(namespace)}
        return kwargs
