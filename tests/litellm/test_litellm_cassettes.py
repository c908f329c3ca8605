"""litellm's real provider code, offline: vcrpy cassettes in the OpenAI chat.completions (with
``n``) and Anthropic Messages (no ``n``) wire formats, played with ``record_mode="none"`` so
nothing can reach the network. Every test asserts that the interactions played equal the
real calls the engine made (and billed).
"""
from __future__ import annotations

import json
from pathlib import Path

import litellm
import pytest
import vcr

import cachesaver_litellm

from _litellm_helpers import MESSAGES, ns

CASSETTES = Path(__file__).parent / "cassettes"


def _n_sent(r1, r2) -> None:
    """Match on the ``n`` in the body: the n the adapter sent must be the one recorded."""
    assert json.loads(r1.body or b"{}").get("n") == json.loads(r2.body or b"{}").get("n")


def cassette_vcr() -> vcr.VCR:
    my_vcr = vcr.VCR(record_mode="none", match_on=["method", "scheme", "host", "path", "n_sent"],
                     filter_headers=["authorization", "x-api-key"])
    my_vcr.register_matcher("n_sent", _n_sent)
    return my_vcr


def contents(response) -> list[str]:
    return [c.message.content for c in response.choices]


@pytest.fixture
def backend(store_path):
    cachesaver_litellm.register(store=store_path, timeout=0.05)
    return cachesaver_litellm.get_pipeline().model


async def test_openai_wire_format_with_n(backend):
    kwargs = dict(model="cachesaver/openai/gpt-4o-mini", messages=MESSAGES, temperature=1.0, api_key="sk-test",
                  max_retries=0)
    with cassette_vcr().use_cassette(str(CASSETTES / "openai_chat_n.yaml")) as cassette:
        first = await litellm.acompletion(n=3, metadata=ns("a"), **kwargs)
        reuse = await litellm.acompletion(n=3, metadata=ns("b"), **kwargs)
        more = await litellm.acompletion(n=2, metadata=ns("a"), **kwargs)

        assert contents(first) == contents(reuse) == ["Teal.", "Crimson.", "Ochre."]
        assert contents(more) == ["Indigo.", "Saffron."]
        assert cassette.play_count == 2 == cachesaver_litellm.stats().model_calls == backend.real_calls
        assert cassette.all_played
    # Usage and cost come from litellm's real OpenAI code: prompt tokens once, completion per sample.
    assert first.usage.prompt_tokens == 11 and first.usage.completion_tokens == 9
    assert first._hidden_params["custom_llm_provider"] == "openai"
    assert first._hidden_params["response_cost"] > 0 and reuse._hidden_params["response_cost"] == 0.0
    assert first.model == "gpt-4o-mini-2024-07-18" and first.system_fingerprint == "fp_0ba0d124f1"


async def test_anthropic_wire_format_without_n_tops_up_with_one_call_per_sample(backend):
    kwargs = dict(model="cachesaver/anthropic/claude-3-5-haiku-20241022", messages=MESSAGES, temperature=1.0,
                  max_tokens=64, api_key="sk-ant-test")
    with cassette_vcr().use_cassette(str(CASSETTES / "anthropic_messages.yaml")) as cassette:
        first = await litellm.acompletion(n=3, metadata=ns("a"), **kwargs)
        reuse = await litellm.acompletion(n=3, metadata=ns("b"), **kwargs)
        more = await litellm.acompletion(n=1, metadata=ns("a"), **kwargs)

        # Never fewer choices than asked, never an unsupported n in the body (the matcher checks).
        assert len(first.choices) == 3 and len(set(contents(first))) == 3
        assert contents(reuse) == contents(first)
        assert set(contents(first) + contents(more)) == {"Teal.", "Crimson.", "Ochre.", "Indigo."}
        assert cassette.play_count == 4 == backend.real_calls
        assert cachesaver_litellm.stats().model_calls == 2  # one engine call per miss, topped up
        assert cassette.all_played
    assert [c.finish_reason for c in first.choices] == ["stop"] * 3
    assert first._hidden_params["custom_llm_provider"] == "anthropic"
    # Three calls without n, each billed its 12 prompt tokens: the response carries what its
    # three samples cost (each sample's share of its own call: Usage.split).
    assert first.usage.prompt_tokens == 3 * 12


async def test_a_new_run_replays_the_cassette_samples_with_no_interaction(store_path):
    kwargs = dict(model="cachesaver/openai/gpt-4o-mini", messages=MESSAGES, temperature=1.0, api_key="sk-test",
                  max_retries=0)
    with cassette_vcr().use_cassette(str(CASSETTES / "openai_chat_n.yaml")) as cassette:
        cachesaver_litellm.register(store=store_path)
        first = contents(await litellm.acompletion(n=3, metadata=ns("a"), **kwargs))
        cachesaver_litellm.unregister()
        cachesaver_litellm.register(store=store_path)
        again = contents(await litellm.acompletion(n=3, metadata=ns("a"), **kwargs))
        assert first == again and cassette.play_count == 1
        assert cachesaver_litellm.stats().model_calls == 0


async def test_a_failed_call_of_a_top_up_keeps_the_others_and_asks_again(backend):
    kwargs = dict(model="cachesaver/anthropic/claude-3-5-haiku-20241022", messages=MESSAGES, temperature=1.0,
                  max_tokens=64, api_key="sk-ant-test", max_retries=0)
    with cassette_vcr().use_cassette(str(CASSETTES / "anthropic_messages_overloaded.yaml")) as cassette:
        response = await litellm.acompletion(n=3, metadata=ns("a"), **kwargs)
        assert sorted(contents(response)) == ["Indigo.", "Ochre.", "Teal."]
        assert cassette.play_count == 4 == backend.real_calls and backend.failed_real_calls == 1
        assert cassette.all_played
    stats = cachesaver_litellm.stats()
    assert stats.model_calls == 2 and stats.samples_requested == 3 + 1 and stats.samples_returned == 3
