"""Batch API mode against the local fake server: `cachesaver serve-fake --port 8765` first."""
import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm  # noqa: E402

import cachesaver_litellm  # noqa: E402

cachesaver_litellm.register(store="./.cachesaver-batch", batch_api={"window": 0.5, "poll": 0.2})


async def ask(question: str, arm: str, n: int):
    return await litellm.acompletion(
        model="cachesaver/openai/gpt-4o-mini", messages=[{"role": "user", "content": question}], n=n,
        api_base="http://127.0.0.1:8765/v1", api_key="sk-fake",
        metadata={"cachesaver_namespace": arm})


async def main():
    questions = [f"Question {i}" for i in range(20)]
    # Arm A: 20 misses -> one batch file of 20 lines (n=2 each).
    await asyncio.gather(*(ask(q, "arm-a", 2) for q in questions))
    # Arm B wants 3 per question: 2 are stored, so one batch of 20 lines asking n=1.
    await asyncio.gather(*(ask(q, "arm-b", 3) for q in questions))
    print(cachesaver_litellm.stats().summary())


asyncio.run(main())
