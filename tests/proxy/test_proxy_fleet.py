"""Two proxy processes (two ports) on one Redis store with one shared run: a fleet of replicas
behind a load balancer. Within a namespace no sample is handed out twice across them (G1);
no sample is generated twice (G2, the store's generation lease across processes); every sample
generated is billed once, in the response headers of whichever replica delivered it first (G8).
"""
from __future__ import annotations

import asyncio
import os
from collections import Counter

import openai
import pytest

from _proxy_helpers import MASTER_KEY, MODEL, requires_proxy, unique_prompt, upstream_requests

pytestmark = requires_proxy


def _ns(namespace: str) -> dict:
    return {"metadata": {"cachesaver_namespace": namespace}}


@pytest.fixture
def redis_fleet(fleet):
    if fleet.redis_url is None:
        message = "no Redis reachable: the proxies run on a disk store"
        if os.environ.get("CACHESAVER_REQUIRE_REDIS") == "1":
            pytest.fail(message + " (CACHESAVER_REQUIRE_REDIS=1)")
        pytest.skip(message)
    assert fleet.store.startswith("redis://")
    return fleet


async def test_two_replicas_on_one_redis_store_share_one_ledger(redis_fleet, upstream):
    clients = [openai.AsyncOpenAI(base_url=f"{p.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)
               for p in redis_fleet.proxies]
    prompt = unique_prompt("fleet")
    messages = [{"role": "user", "content": prompt}]

    async def ask(i: int, namespace: str, text_messages=messages) -> str:
        response = await clients[i % 2].chat.completions.create(
            model=MODEL, messages=text_messages, temperature=0.7, extra_body=_ns(namespace))
        return response.choices[0].message.content

    try:
        # eight concurrent requests in namespace F, alternating between the replicas
        first = await asyncio.gather(*(ask(i, "F") for i in range(8)))
        assert len(set(first)) == 8  # no sample handed out twice in F
        generated = sum(body.get("n", 1) for body in upstream_requests(upstream, prompt))
        assert generated == 8  # and none generated twice
        # namespace G, across both replicas: the same eight, nothing generated
        second = await asyncio.gather(*(ask(i, "G") for i in range(8)))
        assert Counter(second) == Counter(first)
        assert sum(body.get("n", 1) for body in upstream_requests(upstream, prompt)) == 8
        # F goes on across the replicas with fresh samples
        more = [await ask(i, "F") for i in range(2)]
        assert not set(more) & set(first) and len(set(more)) == 2

        # a new prompt missed on both replicas at once, in two namespaces: generated once
        fresh = unique_prompt("fleet-race")
        fresh_messages = [{"role": "user", "content": fresh}]
        one, two = await asyncio.gather(ask(0, "H", fresh_messages), ask(1, "I", fresh_messages))
        assert one == two
        assert sum(body.get("n", 1) for body in upstream_requests(upstream, fresh)) == 1
    finally:
        for client in clients:
            await client.close()


async def test_a_fleet_bills_every_generated_sample_exactly_once(redis_fleet, upstream):
    """80 requests over 4 prompts x 4 namespaces, alternating replicas, all at once: the
    ``x-cachesaver-cached`` zeros of all responses add up to the samples generated upstream
    (before: 5 of 148 generated samples were billed in no response)."""
    clients = [openai.AsyncOpenAI(base_url=f"{p.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)
               for p in redis_fleet.proxies]
    prompts = [unique_prompt(f"fleet-bill-{i}") for i in range(4)]

    async def billed(i: int, prompt: str, namespace: str) -> int:
        raw = await clients[i % 2].chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], temperature=0.7,
            extra_body=_ns(namespace))
        return raw.headers["x-cachesaver-cached"].split(",").count("0")

    try:
        jobs = [(i, prompts[i % 4], f"bill-{(i // 4) % 4}") for i in range(80)]
        flags = await asyncio.gather(*(billed(*job) for job in jobs))
        generated = sum(body.get("n", 1) for prompt in prompts for body in upstream_requests(upstream, prompt))
        assert generated == 4 * 5  # each namespace asked each prompt 5 times: 5 samples each
        assert sum(flags) == generated
    finally:
        for client in clients:
            await client.close()
