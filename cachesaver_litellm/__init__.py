"""CacheSaver for LiteLLM: namespaced sample caching behind ``cachesaver/<model>``.

::

    import litellm, cachesaver_litellm
    cachesaver_litellm.register(store="./.cachesaver")
    r = await litellm.acompletion(model="cachesaver/openai/gpt-4o-mini", messages=msgs, n=2,
                                  metadata={"cachesaver_namespace": "agent-1"})
    print(cachesaver_litellm.stats().summary())

Within a namespace every stored sample is handed out once; another namespace reuses them;
only missing samples are generated, identical concurrent calls are merged into one ``n=k``
call. ``CacheSaverRouter`` does the same above a ``litellm.Router`` (keyed on the model group).
Tested with litellm 1.110 (``internal_sub_call`` is private litellm API; see README).
"""
from __future__ import annotations

from ._backend import LiteLLMBackend, LiteLLMRequest
from ._callback import CostCallback
from ._capabilities import mirror_model
from ._provider import NAMESPACE_KEY, PROVIDER, REQUEST_ID_KEY, CacheSaverLLM
from ._registry import (
    consumption,
    get_callback,
    get_handler,
    get_pipeline,
    install_stand_in,
    register,
    stats,
    unregister,
)
from ._router import CacheSaverRouter

__all__ = [
    "register",
    "unregister",
    "get_pipeline",
    "get_callback",
    "get_handler",
    "stats",
    "consumption",
    "CacheSaverLLM",
    "CacheSaverRouter",
    "CostCallback",
    "mirror_model",
    "LiteLLMBackend",
    "LiteLLMRequest",
    "PROVIDER",
    "NAMESPACE_KEY",
    "REQUEST_ID_KEY",
]

# A cachesaver/ call before register() names register() (see _unregistered); registers no engine.
install_stand_in()
