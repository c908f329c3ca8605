"""DSPy on CacheSaver (issue 13, items 1 and 2), with the real dspy package and real HTTP to the
local fake server. Every test counts the server's requests: a replay is 0 requests."""
from __future__ import annotations

import logging
import tempfile
import uuid

import pytest

dspy = pytest.importorskip("dspy")
import pydantic  # noqa: E402

import cachesaver_litellm  # noqa: E402
from cachesaver.errors import InvalidRequestError  # noqa: E402
from cachesaver_litellm import _dspy_guard  # noqa: E402
from cachesaver_litellm.dspy import CacheSaverLM, Evaluate, namespace  # noqa: E402

from _fw_helpers import MODEL  # noqa: E402


class Answer(pydantic.BaseModel):
    value: int
    unit: str


class Ask(dspy.Signature):
    """Answer with a number and its unit."""

    question: str = dspy.InputField()
    answer: Answer = dspy.OutputField()


@pytest.fixture(autouse=True, scope="module")
def dspy_cache_in_memory_only():
    """Belt and braces beside conftest's DSPY_CACHEDIR: DSPy's cache writes nothing to disk here,
    even if some other module imported dspy before DSPY_CACHEDIR was set."""
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    yield


def test_dspy_cache_lives_in_the_sessions_temp_dir():
    """conftest points DSPY_CACHEDIR at a temp dir before dspy is imported: never ~/.dspy_cache."""
    import os

    import dspy.clients

    assert os.environ["DSPY_CACHEDIR"].startswith(tempfile.gettempdir())
    assert dspy.clients.DISK_CACHE_DIR.startswith(os.environ["DSPY_CACHEDIR"])
    assert not dspy.clients.DISK_CACHE_DIR.startswith(os.path.expanduser("~"))


@pytest.fixture
def lm(provider, server):
    made = CacheSaverLM(MODEL, api_base=server.base_url, api_key="sk-test", temperature=0.7, num_retries=0)
    with dspy.context(lm=made):
        yield made


def texts(predictions) -> list[str]:
    return [p.answer for p in predictions]


def test_chain_of_thought_in_namespace_b_replays_a_with_zero_requests(lm, server):
    program = dspy.ChainOfThought("question -> answer")
    questions = ["What is 2+2?", "Name a prime.", "Why is the sky blue?"]
    with namespace("A"):
        first = [program(question=q) for q in questions]
    paid = server.request_count
    assert paid >= len(questions)
    assert len(set(texts(first))) == len(questions)
    with namespace("B"):
        replay = [program(question=q) for q in questions]
    assert server.request_count == paid  # B: zero HTTP requests
    assert texts(replay) == texts(first)
    assert [p.reasoning for p in replay] == [p.reasoning for p in first]


def test_k_calls_in_one_namespace_are_k_distinct_samples_and_replay_in_order(lm, server):
    program = dspy.Predict("question -> answer")
    k = 5
    with namespace("A"):
        samples = [program(question="Tell me a story.") for _ in range(k)]
    assert len(set(texts(samples))) == k
    paid = server.request_count
    with namespace("B"):
        again = [program(question="Tell me a story.") for _ in range(k)]
    assert server.request_count == paid
    assert texts(again) == texts(samples)
    with namespace("A"):  # A has used all k: the next one is a fresh sample
        fresh = program(question="Tell me a story.")
    assert fresh.answer not in texts(samples)
    assert server.request_count > paid


def test_n_choices_are_distinct_samples(lm, server):
    with namespace("A"):
        outputs = lm("Name a colour.", n=3)
    assert len(outputs) == 3 and len(set(map(str, outputs))) == 3
    assert server.n_asked == 3


def test_evaluate_with_threads_replays_identically(lm, server):
    program = dspy.ChainOfThought("question -> answer")
    devset = [dspy.Example(question=f"What is {i} plus {i}?", answer=str(2 * i)).with_inputs("question")
              for i in range(8)]
    # Examples that send the very same prompts: the case thread order could otherwise decide.
    devset += [devset[1].copy(), devset[1].copy(), devset[2].copy()]

    def metric(example, prediction, trace=None):
        return float(example.answer in prediction.answer)

    evaluate = Evaluate(devset=devset, metric=metric, num_threads=4)
    first = evaluate(program, namespace="eval-A")
    paid = server.request_count
    answers = [prediction.answer for _, prediction, _ in first.results]
    assert all(answers)
    assert [example for example, _, _ in first.results] == devset  # the caller's own examples
    assert first.results[0][0] is devset[0]

    for threads in (4, 1, 3):
        again = evaluate(program, namespace=f"eval-B-{threads}", num_threads=threads)
        assert [prediction.answer for _, prediction, _ in again.results] == answers
        assert [prediction.reasoning for _, prediction, _ in again.results] == \
               [prediction.reasoning for _, prediction, _ in first.results]
    assert server.request_count == paid


def test_evaluate_namespaces_are_per_example_positions(lm, server):
    """Example i runs in '<namespace>/example-i': visible in the engine's ledger."""
    program = dspy.Predict("question -> answer")
    devset = [dspy.Example(question=q, answer="x").with_inputs("question") for q in ("a?", "b?")]
    Evaluate(devset=devset, metric=lambda e, p, t=None: 0.0, num_threads=2, namespace="run")(program)
    assert set(cachesaver_litellm.stats().namespaces) == {"run/example-0", "run/example-1"}


def test_typed_output_uses_json_schema_and_parses(lm, server):
    """Item 2 through DSPy: JSONAdapter asks litellm, sees response_schema, sends json_schema."""

    assert lm.supports_response_schema is True
    with dspy.context(adapter=dspy.JSONAdapter()), namespace("typed"):
        result = dspy.Predict(Ask)(question="How far is it?")
    assert isinstance(result.answer, Answer)
    formats = [req.get("response_format") for req in server.requests]
    assert formats and all(f and f.get("type") == "json_schema" for f in formats), formats


def test_rollout_ids_order_a_batch_and_give_distinct_samples(lm, server):
    program = dspy.Predict("question -> answer")
    outs = []
    with namespace("roll"):
        for rollout in range(3):
            with dspy.context(lm=lm.copy(rollout_id=rollout, temperature=1.0)):
                outs.append(program(question="Pick a number.").answer)
    assert len(set(outs)) == 3
    assert lm._cachesaver_kwargs({"rollout_id": 7})["metadata"]["cachesaver_request_id"] == "rollout-000000000007"


def test_call_metadata_namespace_wins_and_lm_metadata_is_kept(provider, server):
    made = CacheSaverLM(MODEL, namespace="lm-ns", metadata={"cachesaver_namespace": "meta-ns", "team": "x"},
                        api_base=server.base_url, api_key="sk-test")
    assert made._cachesaver_kwargs({})["metadata"] == {"cachesaver_namespace": "lm-ns", "team": "x"}
    with namespace("scope"):
        assert made._cachesaver_kwargs({})["metadata"]["cachesaver_namespace"] == "scope"
        call = made._cachesaver_kwargs({"metadata": {"cachesaver_namespace": "call"}})
        assert call["metadata"] == {"cachesaver_namespace": "call", "team": "x"}


def test_cache_true_is_refused(provider):
    with pytest.raises(InvalidRequestError, match="DSPy's cache"):
        CacheSaverLM(MODEL, cache=True)
    with pytest.raises(InvalidRequestError, match="cachesaver/openai/gpt-4o-mini"):
        CacheSaverLM("openai/gpt-4o-mini")
    made = CacheSaverLM(MODEL)
    assert made.cache is False
    with pytest.raises(InvalidRequestError):
        made.copy(cache=True)


def test_plain_dspy_lm_with_its_cache_on_warns_once(provider, server, caplog, monkeypatch):
    monkeypatch.setattr(_dspy_guard, "_warned", False)
    caplog.set_level(logging.WARNING, logger="cachesaver")
    plain = dspy.LM(MODEL, api_base=server.base_url, api_key="sk-test", temperature=0.7, num_retries=0)
    prompt = f"Name a colour. ({uuid.uuid4().hex})"  # DSPy's cache is session-wide: a prompt of its own
    answers = [plain(prompt)[0] for _ in range(3)]
    # The failure the warning is about: DSPy's cache answers, CacheSaver sees one call.
    assert len(set(answers)) == 1 and server.request_count == 1
    warnings = [r for r in caplog.records if r.name == "cachesaver.litellm.dspy" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "CacheSaverLM" in warnings[0].getMessage()
    # cache=False on the plain LM: no warning (and fresh samples).
    caplog.clear()
    monkeypatch.setattr(_dspy_guard, "_warned", False)
    uncached = dspy.LM(MODEL, cache=False, api_base=server.base_url, api_key="sk-test", temperature=0.7,
                       num_retries=0)
    fresh = [uncached(prompt)[0] for _ in range(2)]
    assert len(set(fresh)) == 2
    assert not [r for r in caplog.records if r.name == "cachesaver.litellm.dspy"]

