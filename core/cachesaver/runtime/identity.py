"""A call's identity, read the same way by every adapter: namespace, request id, ``n``.

Frameworks carry per-call metadata in different places (litellm's ``metadata`` and
``litellm_metadata``, LangChain's run config, the proxy's request body), but the keys and the
rules are one: ``cachesaver_namespace`` (a non-empty str; default: the adapter's namespace) and
``cachesaver_request_id`` (a str; empty means "arrival order"). Bad values are checked by the
engine's one validation (:mod:`cachesaver.checks`), so they raise the same class as everywhere.
"""
from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from ..checks import check_n, check_namespace, check_request_id
from ..errors import MetadataKeyWarning

__all__ = ["NAMESPACE_KEY", "REQUEST_ID_KEY", "KEY_PREFIX", "read_identity", "warn_unknown_keys", "check_n",
           "check_namespace"]

#: Metadata key of the namespace (every adapter reads this one).
NAMESPACE_KEY = "cachesaver_namespace"
#: Metadata key of the request id (orders concurrent requests for exact replays, G4).
REQUEST_ID_KEY = "cachesaver_request_id"
#: Metadata keys starting with this are CacheSaver's: one it does not read is a mistake.
KEY_PREFIX = "cachesaver_"


def warn_unknown_keys(source: Any, where: str, known: Iterable[str] = ()) -> None:
    """A :class:`~cachesaver.errors.MetadataKeyWarning` for each ``cachesaver_*`` key of
    ``source`` that is neither :data:`NAMESPACE_KEY`, :data:`REQUEST_ID_KEY` nor in ``known``
    (an adapter's own keys), naming the key it most resembles. Only the prefix, which is
    CacheSaver's, is looked at; the key is left where it is."""
    if not isinstance(source, Mapping):
        return
    public = (NAMESPACE_KEY, REQUEST_ID_KEY)
    allowed = set(public).union(known)
    for name in source:
        if not isinstance(name, str) or not name.startswith(KEY_PREFIX) or name in allowed:
            continue
        # Compared without the shared prefix (else every cachesaver_* name looks close).
        close = difflib.get_close_matches(name[len(KEY_PREFIX):], [p[len(KEY_PREFIX):] for p in public], n=1,
                                          cutoff=0.6)
        hint = (f"did you mean {KEY_PREFIX + close[0]!r}?" if close
                else f"CacheSaver reads {NAMESPACE_KEY!r} and {REQUEST_ID_KEY!r}")
        warnings.warn(f"{where}[{name!r}] is not a CacheSaver key, so CacheSaver ignores it: {hint}",
                      MetadataKeyWarning, stacklevel=3)


def read_identity(*sources: Optional[Mapping[str, Any]], default_namespace: str,
                  where: str = "metadata", known_keys: Optional[Iterable[str]] = None) -> tuple[str, str]:
    """``(namespace, request_id)`` from the first source that names each (checked).

    ``sources`` are metadata mappings in priority order; non-mappings are skipped. With
    ``known_keys`` (the adapter's own ``cachesaver_*`` keys), every other ``cachesaver_*`` key
    in a source is warned about (:func:`warn_unknown_keys`); ``None`` checks nothing (for a
    second read of the same call).
    """
    namespace: Any = None
    request_id: Any = None
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        if known_keys is not None:
            warn_unknown_keys(source, where, known_keys)
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
