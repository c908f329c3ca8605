"""The experiment the bundle tests record and replay: a few prompts, n > 1, two namespaces.

Importable by the test process and by replay subprocesses alike, so both run the same requests.
"""
from __future__ import annotations

import asyncio

from cachesaver import Request

NAMESPACES = ("baseline", "ablation")
PROMPTS = [f"Solve puzzle {i}: combine 4 numbers to make 24" for i in range(6)]


async def run_experiment(pipeline, namespace: str, n: int = 2) -> list[list[str]]:
    """Every prompt with ``n`` samples, concurrently, then a follow-up on the first answers (n=1).

    A namespace that repeats recorded requests replays them (that is the point of namespaces);
    one that asks for more (another arm with a larger ``n``) needs samples nobody recorded.
    """
    first = await asyncio.gather(*[
        pipeline.request(Request(prompt=p, n=n, namespace=namespace, request_id=f"{namespace}-{i}"))
        for i, p in enumerate(PROMPTS)
    ])
    follow = await asyncio.gather(*[
        pipeline.request(Request(prompt=f"Check: {r.data[0]}", n=1, namespace=namespace, request_id=f"{namespace}-c{i}"))
        for i, r in enumerate(first)
    ])
    return [r.data for r in first] + [r.data for r in follow]
