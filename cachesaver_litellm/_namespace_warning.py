"""One WARNING per process when ``cachesaver/`` calls arrive with no namespace at all.

A call without ``metadata={"cachesaver_namespace": ...}`` lands in the provider's default
namespace. When that default is also the built-in one (``register()`` got no ``namespace=``),
every such call of a run shares one namespace: two methods or arms of an experiment take each
other's samples instead of each reusing the stored ones (their results depend on each other and
nothing is saved between them), and in a shared run (``run_id=``) a re-run continues the
namespace and pays again; nothing says why. The usual cause is a client that
drops metadata on the way to litellm: ``ChatLiteLLM`` (langchain-litellm) ignores LangChain's
``config={"metadata": ...}``; ``ChatLiteLLM(model_kwargs={"metadata": {...}})`` works.

The provider calls :func:`warn_no_namespace_once` where it reads the namespace; the warning names
the fix and is logged once per process on ``cachesaver.litellm.namespace`` (a library never prints).
"""
from __future__ import annotations

import logging

from cachesaver.runtime.once import Once

__all__ = ["warn_no_namespace_once", "BUILTIN_DEFAULT_NAMESPACE", "reset"]

log = logging.getLogger("cachesaver.litellm.namespace")

#: ``register()``'s own default namespace: calls that end up here had no namespace from anyone.
BUILTIN_DEFAULT_NAMESPACE = "default"

_once = Once()


def warn_no_namespace_once(model: str, default_namespace: str) -> bool:
    """Log the WARNING if this is the first call of the process that had no namespace at all.

    ``default_namespace`` is the provider's default (``register(namespace=...)``): a default the
    user chose is a namespace, not a missing one. Returns True when this call logged it.
    """
    if default_namespace != BUILTIN_DEFAULT_NAMESPACE or not _once.first():
        return False
    log.warning(
        "a cachesaver/%s call arrived with no metadata['cachesaver_namespace'], so it and every such call use the "
        "namespace %r: calls of different methods or arms then take each other's samples instead of "
        "reusing them (and a re-run of a shared run_id continues them and pays). Pass "
        "metadata={'cachesaver_namespace': ...} per call, or cachesaver_litellm.register(namespace=...). "
        "ChatLiteLLM (langchain-litellm) drops LangChain's config metadata: use "
        "ChatLiteLLM(model_kwargs={'metadata': {...}}). (Logged once per process.)",
        model, default_namespace,
    )
    return True


def reset() -> None:
    """Forget that the warning was logged (tests)."""
    _once.reset()
