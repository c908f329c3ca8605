"""smolagents ``LiteLLMModel`` and the OpenAI Agents SDK ``LitellmModel`` on ``cachesaver/`` models
(issue 13, item 10): both pass ``metadata=`` through to litellm, so the namespace arrives; a run in
namespace B replays namespace A with zero HTTP requests to the fake server.
"""
from __future__ import annotations

import os

import pytest

import cachesaver_litellm

from _fw_helpers import MODEL

PROMPTS = ["Name a colour.", "Name a river."]


def test_smolagents_litellm_model_namespace_a_then_b(provider, server):
    smolagents = pytest.importorskip("smolagents")

    def run(namespace: str) -> list[str]:
        # README snippet: extra LiteLLMModel kwargs (here metadata) go to litellm.completion.
        model = smolagents.LiteLLMModel(
            model_id=MODEL, api_base=server.base_url, api_key="sk-test", temperature=0.7,
            metadata={"cachesaver_namespace": namespace},
        )
        return [model.generate([{"role": "user", "content": [{"type": "text", "text": p}]}]).content
                for p in PROMPTS]

    first = run("A")
    paid = server.request_count
    assert paid == len(PROMPTS) and len(set(first)) == len(PROMPTS)
    assert run("B") == first
    assert server.request_count == paid  # B: zero HTTP requests
    assert run("A") != first  # A again: fresh samples (each sample once per namespace)
    assert set(cachesaver_litellm.stats().namespaces) == {"A", "B"}


def test_openai_agents_litellm_model_namespace_a_then_b(provider, server, monkeypatch):
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")  # nothing may leave the machine
    agents = pytest.importorskip("agents")
    from agents.extensions.models.litellm_model import LitellmModel

    agents.set_tracing_disabled(True)

    def run(namespace: str) -> list[str]:
        # README snippet: ModelSettings.metadata is passed to litellm.acompletion as metadata.
        agent = agents.Agent(
            name="helper", instructions="Answer briefly.",
            model=LitellmModel(model=MODEL, base_url=server.base_url, api_key="sk-test"),
            model_settings=agents.ModelSettings(temperature=0.7, metadata={"cachesaver_namespace": namespace}),
        )
        return [agents.Runner.run_sync(agent, p).final_output for p in PROMPTS]

    first = run("A")
    paid = server.request_count
    assert paid == len(PROMPTS) and len(set(first)) == len(PROMPTS)
    assert run("B") == first
    assert server.request_count == paid  # B: zero HTTP requests
    assert set(cachesaver_litellm.stats().namespaces) == {"A", "B"}
    assert os.environ["OPENAI_AGENTS_DISABLE_TRACING"] == "1"
