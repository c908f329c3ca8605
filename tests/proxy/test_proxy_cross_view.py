"""Issue 22: every view of what one experiment paid shows one figure, across front ends.

One scripted experiment, one shared run on one disk store, driven through three front ends at
once: litellm's ``cachesaver/`` provider in this process, a LangChain ``CacheSaverChatModel`` in
this process, and a real LiteLLM Proxy process. Its arms reuse each other's samples across
front ends (the provider and the proxy key the same model alike), so savings cross from one to
the other. Then each view is read and compared with the upstream server's own count:

- the responses' flags (``_hidden_params``, ``response_metadata``, ``x-cachesaver-cached``);
- ``stats()`` of the provider and of the chat model, and the provider's cost callback;
- the proxy's spend: its ``x-litellm-response-cost`` headers and the ``response_cost`` and
  ``saved_cache_cost`` it logged (what its spend tracking writes);
- a bundle of the run (``cachesaver.bundle``): its samples, its cost to generate once, what
  was consumed and what that would have cost without a cache.

Before issue 22 these disagreed: the callback's footer said 0/0, LangChain showed $0 billed,
and a sample another front end claimed first was billed nowhere.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import litellm
import pytest

import cachesaver_litellm
from cachesaver.testing.server import FakeOpenAIServer

from _proxy_helpers import MASTER_KEY, MODEL, ProxyProcess, build_test_config, proxy_env, requires_proxy

pytestmark = requires_proxy

RUN = "cross-view"
PRICE_MODEL = "gpt-4o-mini"  # every front end's model: one price table (litellm's cost map)


def _flags_false(cached: list) -> int:
    return sum(1 for c in cached if c is False)


@pytest.fixture
def upstream():
    with FakeOpenAIServer(seed=22, follow_prompt=True) as server:
        yield server


@pytest.fixture
def shared_proxy(upstream, tmp_path):
    """A proxy process on the experiment's disk store and run (the in-process front ends join)."""
    workdir = tmp_path / "proxy"
    workdir.mkdir()
    env = proxy_env(upstream=upstream.base_url, store=str(tmp_path / "store"), run_id=RUN, batch_timeout=0.05)
    proxy = ProxyProcess("cross", workdir, build_test_config(workdir), env).start()
    try:
        proxy.wait_ready()
        yield proxy
    finally:
        proxy.stop()


def _logged(proxy: ProxyProcess, count: int) -> list[dict]:
    """The proxy's logged success rows (written after the response: wait for all of them)."""
    deadline = time.monotonic() + 30
    while True:
        rows = [r for r in proxy.records() if r["event"] == "success"]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


async def test_every_view_of_one_experiment_across_front_ends_shows_one_figure(
        litellm_globals_restored, upstream, shared_proxy, tmp_path):
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    from cachesaver.bundle import consumption_of_runs, read_bundle, write_bundle
    from cachesaver.stores import DiskStore
    from cachesaver_langchain import CacheSaverChatModel

    store = str(tmp_path / "store")
    tag = uuid.uuid4().hex[:8]
    q1, q2, q3 = (f"question {i} of {tag}" for i in (1, 2, 3))

    cachesaver_litellm.register(store=store, run_id=RUN, timeout=0.02)
    chat = CacheSaverChatModel(chat_model=ChatOpenAI(model=PRICE_MODEL, base_url=upstream.base_url,
                                                     api_key="sk-test", max_retries=0, temperature=0.7),
                               store=store, run_id=RUN)
    litellm_kwargs = {"model": f"cachesaver/openai/{PRICE_MODEL}", "api_base": upstream.base_url,
                      "api_key": "sk-test", "max_retries": 0, "temperature": 0.7}

    async def via_litellm(namespace: str, prompt: str, n: int) -> tuple[list, int]:
        response = await litellm.acompletion(messages=[{"role": "user", "content": prompt}], n=n,
                                             metadata={"cachesaver_namespace": namespace}, **litellm_kwargs)
        return response._hidden_params["cachesaver"]["cached"], len(response.choices)

    async def via_langchain(namespace: str, prompt: str, n: int) -> tuple[list, int]:
        result = await chat.agenerate([[HumanMessage(prompt)]], n=n, metadata={"cachesaver_namespace": namespace})
        generations = result.generations[0]
        return [g.message.response_metadata["cachesaver"]["cached"] for g in generations], len(generations)

    proxy_headers: list[httpx.Headers] = []

    async def via_proxy(client: httpx.AsyncClient, namespace: str, prompt: str, n: int) -> tuple[list, int]:
        reply = await client.post("/v1/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": prompt}], "n": n, "temperature": 0.7,
            "metadata": {"cachesaver_namespace": namespace}})
        assert reply.status_code == 200, reply.text
        proxy_headers.append(reply.headers)
        return [c == "1" for c in reply.headers["x-cachesaver-cached"].split(",")], len(reply.json()["choices"])

    outcomes: dict[str, list[tuple[list, int]]] = {"litellm": [], "langchain": [], "proxy": []}
    async with httpx.AsyncClient(base_url=shared_proxy.base_url, timeout=60,
                                 headers={"Authorization": f"Bearer {MASTER_KEY}"}) as client:
        # Round 1: each front end pays for its own arm.
        outcomes["litellm"].append(await via_litellm("arm-a", q1, 2))
        outcomes["langchain"].append(await via_langchain("arm-a", q2, 2))
        outcomes["proxy"].append(await via_proxy(client, "arm-a", q3, 1))
        # Round 2: the arms meet. The proxy keys q1 as the provider does: arm-b reuses arm-a's two
        # samples and pays for a third; the provider reuses the proxy's q3 sample; all at once.
        round2 = await asyncio.gather(
            via_proxy(client, "arm-b", q1, 3),
            via_litellm("arm-b", q3, 2),
            via_langchain("arm-b", q2, 3),
            via_proxy(client, "arm-c", q1, 2),
            via_litellm("arm-c", q1, 1),
        )
        for front, outcome in zip(("proxy", "litellm", "langchain", "proxy", "litellm"), round2):
            outcomes[front].append(outcome)
        # Round 3: the same arms again, in the same run: fresh samples (G1), each paid once.
        outcomes["proxy"].append(await via_proxy(client, "arm-a", q1, 1))
        outcomes["litellm"].append(await via_litellm("arm-a", q3, 1))
    chat.close()

    delivered = {front: sum(count for _, count in rows) for front, rows in outcomes.items()}
    billed = {front: sum(_flags_false(cached) for cached, _ in rows) for front, rows in outcomes.items()}
    assert delivered == {"litellm": 6, "langchain": 5, "proxy": 7}

    # 1. The flags of all responses add up to the samples the upstream generated (G8 across
    #    front ends), and each front end's stats() says what its own responses' flags say.
    assert sum(billed.values()) == upstream.samples_generated
    engine = cachesaver_litellm.stats()
    callback = cachesaver_litellm.get_callback().stats[f"openai/{PRICE_MODEL}"]
    lc = chat.stats
    assert engine.total.samples_generated == callback.total.samples_generated == billed["litellm"]
    assert engine.samples_returned == callback.samples_returned == billed["litellm"]
    assert lc.total.samples_generated == billed["langchain"]
    assert engine.total.samples_generated + engine.total.samples_from_store == delivered["litellm"]
    assert lc.total.samples_generated + lc.total.samples_from_store == delivered["langchain"]

    # 2. Dollars: the callback is the provider's stats(); LangChain is priced (was $0); the
    #    proxy's cost headers are what it logged for its spend tracking.
    assert callback.total.cost_billed == pytest.approx(engine.total.cost_billed)
    assert callback.total.cost_saved == pytest.approx(engine.total.cost_saved)
    if billed["langchain"]:
        assert lc.total.cost_billed > 0
    rows = _logged(shared_proxy, len(proxy_headers))
    assert len(rows) == len(proxy_headers)
    proxy_spend = sum(r["response_cost"] for r in rows)
    assert proxy_spend == pytest.approx(sum(float(h["x-litellm-response-cost"]) for h in proxy_headers))
    assert sorted(_flags_false(r["cached"]) for r in rows) == sorted(
        _flags_false(cached) for cached, _ in outcomes["proxy"])
    assert (proxy_spend > 0) == (billed["proxy"] > 0)

    # 3. A bundle of the run says the same: its samples are the flagged ones, its cost to
    #    generate once is the three front ends' billed dollars, and "without a cache" counts
    #    every sample every arm consumed.
    disk = DiskStore(store)
    try:
        await write_bundle(disk, await consumption_of_runs(disk, [RUN]), tmp_path / "run.csbundle")
    finally:
        disk.close()
    summary = read_bundle(tmp_path / "run.csbundle").summary
    assert summary["samples"] == sum(billed.values())
    assert summary["consumed_samples"] == sum(delivered.values())
    total_billed = engine.total.cost_billed + lc.total.cost_billed + proxy_spend
    assert summary["cost"] == pytest.approx(total_billed)
    # What the consumed samples would have cost: every front end's billed + saved (the proxy's
    # saved as it logged it: before, a partial hit logged 0 saved, and a full hit of one of two
    # samples one call generated logged more than that sample's price).
    proxy_saved = sum(r["saved_cache_cost"] or 0.0 for r in rows)
    assert proxy_saved > 0
    assert summary["consumed_cost"] == pytest.approx(
        total_billed + engine.total.cost_saved + lc.total.cost_saved + proxy_saved)
    print(json.dumps({"billed": billed, "delivered": delivered, "generated": upstream.samples_generated,
                      "bundle": {k: summary[k] for k in ("samples", "cost", "consumed_samples", "consumed_cost")}}))
