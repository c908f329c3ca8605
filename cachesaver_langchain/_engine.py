"""The engine pipeline of one ``CacheSaverChatModel``, living on the shared background loop.

One pipeline per wrapper instance: an instance is one run (a new instance replays from the first
sample, as the engine's pipelines do), unless ``run_id`` makes several share one ledger.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from langchain_core.language_models import BaseChatModel

from cachesaver.pipelines import OnlineAPI

from ._loop import EngineLoop, engine_loop, register_closer
from ._model import InnerModel

__all__ = ["Engine"]


class Engine:
    def __init__(self, inner: BaseChatModel, store: Any, *, batch_size: int, batch_timeout: float,
                 run_id: Optional[str]) -> None:
        self.pid = os.getpid()
        self.loop: EngineLoop = engine_loop()
        self.model = InnerModel(inner)

        async def make() -> OnlineAPI:  # built on the loop it will run on
            return OnlineAPI(model=self.model, cache=store, batch_size=batch_size,
                             timeout=batch_timeout, run_id=run_id)

        self.pipeline: OnlineAPI = self.loop.run(make())
        self.model.pipeline = self.pipeline
        register_closer(self)

    @property
    def current(self) -> bool:
        """False in a forked child: the loop and pipeline belong to the parent."""
        return self.pid == os.getpid()

    async def aclose(self) -> None:
        await self.pipeline.aclose()
