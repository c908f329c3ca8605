"""CacheSaverLM hits served from the engine before litellm's pipeline (issue 25, item 1), with the
real dspy and litellm packages and real HTTP to the local fake server.

Every hit here is checked against the normal path (DSPy -> litellm -> the ``cachesaver/``
provider): the same samples in the same ledger order, the same DSPy outputs, history, usage and
callbacks; and, for the fast path itself, zero ``litellm.completion``/``acompletion`` calls, zero
provider calls and zero model calls.
"""
from __future__ import annotations

import asyncio

import pytest

dspy = pytest.importorskip("dspy")
import litellm  # noqa: E402
import pydantic  # noqa: E402
from dspy.clients.base_lm import BaseLM  # noqa: E402
from dspy.utils.callback import BaseCallback  # noqa: E402

import cachesaver_litellm  # noqa: E402
from cachesaver_litellm import _provider  # noqa: E402
from cachesaver_litellm.dspy import CacheSaverLM, namespace  # noqa: E402

from _fw_helpers import MODEL  # noqa: E402

PROMPT = "Tell me a story."


class Answer(pydantic.BaseModel):
    value: int


class Ask(dspy.Signature):
    """Answer with a number."""

    question: str = dspy.InputField()
    answer: Answer = dspy.OutputField()


@pytest.fixture(autouse=True, scope="module")
def dspy_cache_in_memory_only():
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    yield


@pytest.fixture
def lm(provider, server):
    return CacheSaverLM(MODEL, api_base=server.base_url, api_key="sk-test", temperature=0.7, num_retries=0)


class Calls:
    """Counts calls into litellm's entry points and into the ``cachesaver/`` provider."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.litellm = 0
        self.provider = 0
        for name in ("completion", "acompletion"):
            monkeypatch.setattr(litellm, name, self._counting(getattr(litellm, name), "litellm"))
        monkeypatch.setattr(_provider.CacheSaverLLM, "_request",
                            self._counting(_provider.CacheSaverLLM._request, "provider"))

    def _counting(self, fn, counter):
        def counted(*args, **kwargs):
            setattr(self, counter, getattr(self, counter) + 1)
            return fn(*args, **kwargs)
        return counted


def normal_path(lm: CacheSaverLM, prompt: str, **kwargs):
    """The same call through DSPy's own __call__ body: DSPy -> litellm -> the provider."""
    return BaseLM.__call__(lm, prompt, **lm._cachesaver_kwargs(kwargs))


async def anormal_path(lm: CacheSaverLM, prompt: str, **kwargs):
    return await BaseLM.acall(lm, prompt, **lm._cachesaver_kwargs(kwargs))


def flags(lm: CacheSaverLM) -> dict:
    return lm.history[-1]["response"]._hidden_params["cachesaver"]


def test_a_hit_makes_no_litellm_provider_or_model_call_and_takes_the_next_sample(lm, server, monkeypatch):
    with namespace("A"):
        first = [lm(PROMPT)[0] for _ in range(3)]
    assert len(set(first)) == 3
    paid, model_calls = server.request_count, cachesaver_litellm.stats().model_calls
    calls = Calls(monkeypatch)
    with namespace("B"):
        replay = [lm(PROMPT)[0] for _ in range(3)]
        assert flags(lm)["cached"] == [True]
    assert replay == first  # the ledger advances one position per hit, as on the normal path
    assert (calls.litellm, calls.provider) == (0, 0)
    assert server.request_count == paid and cachesaver_litellm.stats().model_calls == model_calls
    with namespace("B"):  # B used all three: a miss, through litellm, and a fresh sample
        fresh = lm(PROMPT)[0]
    assert fresh not in first
    assert calls.provider == 1 and server.request_count == paid + 1
    assert not any(cachesaver_litellm.get_pipeline().queues.held().values())  # the miss held no place


def test_async_hits_make_no_litellm_call_and_replay_in_issue_order(lm, server, monkeypatch):
    async def run():
        with namespace("A"):
            first = [(await lm.acall(PROMPT))[0] for _ in range(4)]
        paid = server.request_count
        calls = Calls(monkeypatch)
        with namespace("B"):
            together = await asyncio.gather(*[lm.acall(PROMPT) for _ in range(4)])
        assert (calls.litellm, calls.provider) == (0, 0) and server.request_count == paid
        return first, [out[0] for out in together]

    first, together = asyncio.run(run())
    assert len(set(first)) == 4
    assert together == first  # the k-th call issued takes sample k, as on the normal path


def test_hits_give_exactly_what_the_normal_path_gives(lm, server):
    """Two namespaces replay one stored list: one through the fast path, one through the normal
    path. Same samples in the same order, same DSPy outputs, history, usage and cost."""
    with namespace("fill"):
        lm(PROMPT, n=4)
    paid = server.request_count
    fast_entries, slow_entries = [], []
    for _ in range(4):
        with namespace("fast"):
            lm(PROMPT)
        fast_entries.append(lm.history[-1])
        with namespace("slow"):
            normal_path(lm, PROMPT)
        slow_entries.append(lm.history[-1])
    assert server.request_count == paid
    for fast, slow in zip(fast_entries, slow_entries):
        assert fast["outputs"] == slow["outputs"]
        assert fast["usage"] == slow["usage"] and fast["usage"]["completion_tokens"] > 0
        assert fast["cost"] == slow["cost"] == 0.0
        assert fast["response_model"] == slow["response_model"]
        assert fast["kwargs"] == {"metadata": {"cachesaver_namespace": "fast"}}
        assert slow["kwargs"] == {"metadata": {"cachesaver_namespace": "slow"}}
        assert fast["messages"] == slow["messages"]
        assert fast["response"].choices == slow["response"].choices
        assert fast["response"].usage == slow["response"].usage
        fast_flags = fast["response"]._hidden_params["cachesaver"]
        slow_flags = slow["response"]._hidden_params["cachesaver"]
        assert fast_flags["namespace"] == "fast" and slow_flags["namespace"] == "slow"
        assert {**fast_flags, "namespace": ""} == {**slow_flags, "namespace": ""}
    with namespace("fill"):
        lm(PROMPT, n=4)
    with namespace("fast"):  # n=2: two choices, the validated response and DSPy's generic reading
        lm(PROMPT, n=2)
    with namespace("slow"):
        normal_path(lm, PROMPT, n=2)
    fast, slow = lm.history[-2], lm.history[-1]
    assert server.request_count == paid + 1  # only the fill
    assert len(fast["outputs"]) == 2 and fast["outputs"] == slow["outputs"] and fast["usage"] == slow["usage"]
    assert fast["response"].choices == slow["response"].choices
    consumed = cachesaver_litellm.consumption()
    assert consumed["fast"] == consumed["slow"]  # the same key, the same ledger positions


def test_usage_tracker_and_callbacks_see_a_hit_as_they_see_the_normal_path(lm, server, monkeypatch):
    events = []

    class Recorder(BaseCallback):
        def on_lm_start(self, call_id, instance, inputs):
            events.append(("start", inputs["prompt"], (inputs["kwargs"].get("metadata") or {}).get(
                "cachesaver_namespace")))

        def on_lm_end(self, call_id, outputs, exception=None):
            events.append(("end", tuple(outputs or ()), exception))

    with namespace("fill"):
        lm(PROMPT, n=2)
    calls = Calls(monkeypatch)
    with dspy.context(callbacks=[Recorder()]):
        with dspy.track_usage() as fast_usage, namespace("fast"):
            fast = lm(PROMPT)
        with dspy.track_usage() as slow_usage, namespace("slow"):
            slow = normal_path(lm, PROMPT)
    assert calls.provider == 1  # only the normal-path call
    assert fast == slow
    assert fast_usage.get_total_tokens() == slow_usage.get_total_tokens() != {}
    assert events[0] == ("start", PROMPT, "fast") and events[1] == ("end", tuple(fast), None)
    assert events[2][0] == "start" and events[3] == ("end", tuple(slow), None)


def test_another_parameter_is_another_key_not_a_hit(lm, server, monkeypatch):
    """A shape is learned per parameter set: temperature=0.2 never takes temperature=0.7's
    samples; the first call of a new shape goes the normal path, the next ones are fast."""
    with namespace("A"):
        hot = lm(PROMPT)[0]
    calls = Calls(monkeypatch)
    with namespace("B"):
        cold = lm(PROMPT, temperature=0.2)[0]
    assert calls.provider == 1 and cold != hot
    with namespace("C"):
        assert lm(PROMPT, temperature=0.2)[0] == cold
        assert lm(PROMPT)[0] == hot
    assert calls.provider == 1


def test_typed_outputs_hit_on_the_fast_path(lm, server, monkeypatch):
    """JSONAdapter's response format (a pydantic class per call) keys hits like the normal path."""
    program = dspy.Predict(Ask)
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        with namespace("A"):
            first = [program(question="How many?").answer for _ in range(2)]
        calls = Calls(monkeypatch)
        with namespace("B"):
            replay = [program(question="How many?").answer for _ in range(2)]
    assert replay == first
    assert (calls.litellm, calls.provider) == (0, 0)


def test_a_namespace_that_the_normal_path_refuses_is_refused_the_same_way(lm, server):
    with namespace("A"):
        lm(PROMPT)
    with pytest.raises(Exception) as fast_error:
        lm(PROMPT, metadata={"cachesaver_namespace": ""})
    with pytest.raises(Exception) as slow_error:
        normal_path(lm, PROMPT, metadata={"cachesaver_namespace": ""})
    assert type(fast_error.value) is type(slow_error.value)


def test_async_misses_keep_the_number_they_were_issued_with(lm, server):
    """Two stored samples, four calls issued together: two fast hits, two misses through litellm.
    The misses keep their issue numbers (2 and 3), so the normal path replays all four in order."""
    async def run():
        with namespace("A"):
            await lm.acall(PROMPT, n=2)
        with namespace("B"):
            mixed = await asyncio.gather(*[lm.acall(PROMPT) for _ in range(4)])
            ids = [entry["response"]._hidden_params["cachesaver"]["request_id"] for entry in lm.history[-4:]]
        paid = server.request_count
        with namespace("C"):
            replay = await asyncio.gather(*[anormal_path(lm, PROMPT) for _ in range(4)])
        assert server.request_count == paid
        return [out[0] for out in mixed], sorted(ids), [out[0] for out in replay]

    mixed, ids, replay = asyncio.run(run())
    assert len(set(mixed)) == 4
    assert ids == [f"issue-{i:010d}@B" for i in range(4)]
    assert replay == mixed


def test_a_shape_signature_is_never_reused_for_other_values():
    """The fast path keeps the last signature of each shape and compares a call's fields with it
    instead of writing their JSON again: a value changed in place, or one of another type whose
    JSON differs (1, 1.0, True), must get the signature written afresh, never the kept one."""
    from cachesaver_litellm._dspy_fastpath import _signature

    stops = ["a"]
    legacy = {"model": "cachesaver/openai/m", "temperature": 1, "stop": stops, "messages": []}
    first = _signature(legacy)
    assert _signature(dict(legacy)) == first
    stops.append("b")  # changed in place after it was signed
    changed = _signature(legacy)
    assert changed != first and '"stop": ["a", "b"]' in changed
    signatures = {_signature({**legacy, "temperature": value}) for value in (1, 1.0, True)}
    assert len(signatures) == 3
    assert _signature({**legacy, "temperature": 1}) == _signature({**legacy, "temperature": 1})
