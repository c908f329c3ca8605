"""A call's identity, read the same way by every adapter: namespace, request id, ``n``.

Frameworks carry per-call metadata in different places (litellm's ``metadata`` and
``litellm_metadata``, LangChain's run config, the proxy's request body), but the keys and the
rules are one: ``cachesaver_namespace`` (a non-empty str; default: the adapter's namespace) and
``cachesaver_request_id`` (a str; empty means "arrival order"). Bad values are checked by the
engine's one validation (:mod:`cachesaver.checks`), so they raise the same class as everywhere.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ..checks import check_n, check_namespace, check_request_id

__all__ = ["NAMESPACE_KEY", "REQUEST_ID_KEY", "read_identity", "check_n", "check_namespace"]

#: Metadata key of the namespace (every adapter reads this one).
NAMESPACE_KEY = "cachesaver_namespace"
#: Metadata key of the request id (orders concurrent requests for exact replays, G4).
REQUEST_ID_KEY = "cachesaver_request_id"


def read_identity(*sources: Optional[Mapping[str, Any]], default_namespace: str,
                  where: str = "metadata") -> tuple[str, str]:
    """``(namespace, request_id)`` from the first source that names each (checked).

    ``sources`` are metadata mappings in priority order; non-mappings are skipped.
    """
    namespace: Any = None
    request_id: Any = None
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        if namespace is None:
            namespace = source.get(NAMESPACE_KEY)
        if request_id is None:
            request_id = source.get(REQUEST_ID_KEY)
    if namespace is None:
        namespace = default_namespace
    example = f"{where}={{'{NAMESPACE_KEY}': 'agent-1'}}"
    check_namespace(namespace, f"{where}[{NAMESPACE_KEY!r}]", example)
    request_id = check_request_id(request_id, f"{where}[{REQUEST_ID_KEY!r}]", f"{where}={{'{REQUEST_ID_KEY}': 'q-17'}}")
    return namespace, request_id
