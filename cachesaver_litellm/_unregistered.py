"""The ``cachesaver`` provider's stand-in while no engine is registered.

Without it, a ``cachesaver/<model>`` call made before :func:`cachesaver_litellm.register` (or
after ``unregister()``) fails inside litellm's provider lookup with "LLM Provider NOT provided"
and a red "Provider List" line on stdout, saying nothing about the cause. Importing
``cachesaver_litellm`` installs this stand-in (it holds no engine, store or thread): such a call
raises litellm's own ``BadRequestError`` naming ``cachesaver_litellm.register()``. A process that
never imports ``cachesaver_litellm`` gets litellm's message; nothing can hook litellm before that.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Iterator, NoReturn

import litellm
from litellm import CustomLLM

__all__ = ["Unregistered", "not_registered_error"]


def not_registered_error(model: Any) -> Exception:
    name = f"cachesaver/{model}" if isinstance(model, str) and model else "cachesaver/<model>"
    return litellm.BadRequestError(
        message=f"model {name!r} needs the cachesaver provider, which is not registered in this process: "
                "call cachesaver_litellm.register(store=...) before the first cachesaver/ call",
        model=str(model), llm_provider="cachesaver")


class Unregistered(CustomLLM):
    """Refuses every call with :func:`not_registered_error`."""

    def completion(self, **call: Any) -> NoReturn:
        raise not_registered_error(call.get("model"))

    async def acompletion(self, **call: Any) -> NoReturn:
        raise not_registered_error(call.get("model"))

    def streaming(self, **call: Any) -> Iterator[Any]:
        raise not_registered_error(call.get("model"))

    def astreaming(self, **call: Any) -> AsyncIterator[Any]:
        raise not_registered_error(call.get("model"))
