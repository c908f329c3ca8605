"""One WARNING per process when ``CacheSaverChatModel`` calls arrive with no namespace at all.

A call whose run metadata has no ``cachesaver_namespace`` lands in the model's default
namespace. When that default is the built-in one (``CacheSaverChatModel(namespace=...)`` not
given), every method, agent and ablation arm of the program shares one namespace: each takes
the next unused sample instead of starting from the first stored one, so nothing is reused
between them and results depend on the order calls happen to arrive. As the LiteLLM adapter
does (``cachesaver_litellm._namespace_warning``), this is logged once per process on
``cachesaver.langchain.namespace`` (a library never prints), naming the fix.
"""
from __future__ import annotations

import logging

from cachesaver.runtime.once import Once

__all__ = ["warn_no_namespace_once", "BUILTIN_DEFAULT_NAMESPACE", "reset"]

log = logging.getLogger("cachesaver.langchain.namespace")

#: ``CacheSaverChatModel``'s own default namespace.
BUILTIN_DEFAULT_NAMESPACE = "default"

_once = Once()


def warn_no_namespace_once(default_namespace: str) -> bool:
    """Log the WARNING if this is the process's first call with no namespace from anyone
    (``default_namespace`` is the model's, which counts if the user chose it). True if logged."""
    if default_namespace != BUILTIN_DEFAULT_NAMESPACE or not _once.first():
        return False
    log.warning(
        "a CacheSaverChatModel call arrived with no 'cachesaver_namespace' in its run metadata, so it and every "
        "such call share the namespace %r: different methods, agents or arms then take each other's samples in "
        "turn instead of each replaying the stored ones from the first. Pass config={'metadata': "
        "{'cachesaver_namespace': ...}} per call (cachesaver_langchain.cachesaver_config(...)), or "
        "CacheSaverChatModel(namespace=...). (Logged once per process.)",
        default_namespace,
    )
    return True


def reset() -> None:
    """Forget that the warning was logged (tests)."""
    _once.reset()
