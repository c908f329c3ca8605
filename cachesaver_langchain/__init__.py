"""LangChain adapter: :class:`CacheSaverChatModel` wraps any chat model so that every call goes
through the CacheSaver engine, with the namespace taken from the run's metadata.

```python
from cachesaver_langchain import CacheSaverChatModel, cachesaver_config
chat = CacheSaverChatModel(chat_model=ChatOpenAI(model="gpt-4o-mini"), store="./.cachesaver")
await chat.ainvoke(messages, config=cachesaver_config("agent-1"))
```
"""
from __future__ import annotations

from ._calls import cachesaver_config
from ._chat_model import NAMESPACE_KEY, REQUEST_ID_KEY, STORE_ENV, CacheSaverChatModel
from ._codec import SAMPLE_FORMAT

__all__ = [
    "CacheSaverChatModel",
    "cachesaver_config",
    "NAMESPACE_KEY",
    "REQUEST_ID_KEY",
    "STORE_ENV",
    "SAMPLE_FORMAT",
]
