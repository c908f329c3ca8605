"""Three ways to answer ``llm(prompt, n, namespace, request_id)``, the trace, and the minimum.

- :class:`NoCache`: every request is a model call; every sample is paid.
- :class:`PlainCache`: a key-value cache on the exact request ``(prompt, settings, n)`` that
  returns the stored response on a hit, as litellm's and LangChain's caches do (both put ``n``
  in the key). Like them it does not coalesce identical requests in flight: concurrent misses
  all call the model and the last one to finish is what stays stored.
- :class:`CacheSaverBackend`: the engine's ``OnlineAPI`` over the same model; a new run is a new
  pipeline on the same store.

Every backend counts the samples it hands out twice inside one (run, namespace), by the hidden
sample id, which is the statistics breakage a sample cache must avoid. :class:`Trace` records what
was asked and computes the minimum any correct cache must generate, without the engine.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from cachesaver.pipelines import OnlineAPI
from cachesaver.opening import open_store

from .model import SimModel, SimRequest, price, prompt_id, tokens

__all__ = ["Tally", "Trace", "Backend", "SimBackend", "NoCache", "PlainCache", "CacheSaverBackend"]


@dataclass
class Tally:
    """What one strategy cost on one scenario, and what it did to the statistics."""

    requests: int = 0            # llm() calls made by the methods
    samples_asked: int = 0       # sum of n over those calls
    calls: int = 0               # model (API) calls paid
    n_sent: int = 0              # sum of n those calls asked for
    samples: int = 0             # samples generated (paid)
    prompt_tokens: float = 0
    completion_tokens: float = 0
    cost: float = 0.0
    duplicates: int = 0          # samples handed out again inside one (run, namespace)
    solved: int = 0              # puzzles solved, over every arm and run
    attempts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Trace:
    """Every request as ``(run, namespace, prompt, n)``; the minimum generation it needs.

    A correct cache (G1) must give each (run, namespace) distinct samples of a prompt, and may
    give every other one the same ones again. So the fewest samples any correct cache can
    generate is, per prompt, the most any one (run, namespace) consumed; the fewest calls is one
    per prompt (a clairvoyant batcher), each billing the prompt's input tokens once.
    """

    def __init__(self) -> None:
        self.consumed: dict[str, dict[tuple[int, str], int]] = defaultdict(lambda: defaultdict(int))
        self.prompts: dict[str, str] = {}

    def add(self, run: int, namespace: str, prompt: str, n: int) -> None:
        pid = prompt_id(prompt)
        self.prompts[pid] = prompt
        self.consumed[pid][(run, namespace)] += n

    def needed(self) -> dict[str, int]:
        """Per prompt id, the samples a correct cache must have generated."""
        return {pid: max(per_ns.values()) for pid, per_ns in self.consumed.items()}

    def minimum(self, model: SimModel) -> Tally:
        """The minimum as a :class:`Tally`; sample texts come from ``model``'s pure sampler."""
        out = Tally()
        for pid, count in self.needed().items():
            prompt = self.prompts[pid]
            out.calls += 1
            out.samples += count
            out.prompt_tokens += tokens(prompt)
            out.completion_tokens += sum(tokens(model.sample(prompt, i)["text"]) for i in range(count))
        out.cost = price(out.prompt_tokens, out.completion_tokens)
        return out


class Backend:
    """The ``llm`` callable methods use; subclasses decide where samples come from.

    ``_samples`` returns ``{"text", "sid"}`` dicts; the methods get the texts, the sample ids
    feed the count of samples handed out twice inside one (run, namespace).
    """

    name = "backend"

    def __init__(self) -> None:
        self.run = 0
        self._run_starts: list[int] = [0]   # paid calls when each run started
        self.requests = 0
        self.samples_asked = 0
        self.duplicates = 0
        self._seen: dict[tuple[int, str], set[str]] = defaultdict(set)

    async def __call__(self, prompt: str, n: int, namespace: str, request_id: str) -> list[str]:
        self.requests += 1
        self.samples_asked += n
        samples = await self._samples(prompt, n, namespace, request_id)
        seen = self._seen[(self.run, namespace)]
        for sample in samples:
            if sample["sid"] in seen:
                self.duplicates += 1
            seen.add(sample["sid"])
        return [sample["text"] for sample in samples]

    async def _samples(self, prompt: str, n: int, namespace: str, request_id: str) -> list[dict]:
        raise NotImplementedError

    async def new_run(self) -> None:
        """Start a new run (a re-run of the experiment script)."""
        self.run += 1
        self._run_starts.append(self.paid_calls())

    def paid_calls(self) -> int:
        """Model calls paid so far."""
        raise NotImplementedError

    def calls_by_run(self) -> list[int]:
        """Model calls paid in each run so far (a rerun served from a store shows 0)."""
        marks = self._run_starts + [self.paid_calls()]
        return [b - a for a, b in zip(marks, marks[1:])]

    async def aclose(self) -> None:
        pass

    def tally(self) -> Tally:
        raise NotImplementedError


class SimBackend(Backend):
    """A backend in front of a :class:`SimModel`, whose counters are what was paid."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.model = SimModel(seed)

    def paid_calls(self) -> int:
        return self.model.calls

    def tally(self) -> Tally:
        m = self.model
        return Tally(requests=self.requests, samples_asked=self.samples_asked, calls=m.calls,
                     n_sent=m.n_asked, samples=m.samples, prompt_tokens=m.prompt_tokens,
                     completion_tokens=m.completion_tokens, cost=m.cost, duplicates=self.duplicates)


class NoCache(SimBackend):
    name = "no cache"

    async def _samples(self, prompt, n, namespace, request_id):
        return self.model.generate(prompt, n).data


class PlainCache(SimBackend):
    name = "plain cache"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self._store: dict[tuple[str, int], list[dict]] = {}

    async def _samples(self, prompt, n, namespace, request_id):
        key = (prompt_id(prompt), n)
        hit = self._store.get(key)
        if hit is not None:
            return hit
        await asyncio.sleep(0)  # the API round trip: identical requests in flight all miss
        data = self.model.generate(prompt, n).data
        self._store[key] = data
        return data


class CacheSaverBackend(SimBackend):
    name = "CacheSaver"

    def __init__(self, seed: int = 0, store: Any = "memory", batch_size: int = 64,
                 timeout: float = 0.01) -> None:
        super().__init__(seed)
        self.store = open_store(store)
        self._options = dict(batch_size=batch_size, timeout=timeout)
        self.pipelines = [self._pipeline()]
        self.trace = Trace()
        self.billed_flags = 0    # responses' cached=False flags (G8: equals samples generated)

    def _pipeline(self) -> OnlineAPI:
        return OnlineAPI(model=self.model, cache=self.store, **self._options)

    async def _samples(self, prompt, n, namespace, request_id):
        self.trace.add(self.run, namespace, prompt, n)
        request = SimRequest(prompt=prompt, n=n, request_id=request_id, namespace=namespace)
        response = await self.pipelines[-1].request(request)
        self.billed_flags += response.cached.count(False)
        return response.data

    async def new_run(self) -> None:
        await self.pipelines[-1].aclose()
        self.pipelines.append(self._pipeline())
        await super().new_run()

    async def aclose(self) -> None:
        await self.pipelines[-1].aclose()
        await self.store.aclose()

    def engine_totals(self) -> dict[str, float]:
        """What the engine's own stats say, summed over runs (to cross-check the model's counters)."""
        out = {"model_calls": 0, "samples_requested": 0, "samples_generated": 0, "cost_billed": 0.0}
        for p in self.pipelines:
            total = p.stats.total
            out["model_calls"] += p.stats.model_calls
            out["samples_requested"] += p.stats.samples_requested
            out["samples_generated"] += total.samples_generated
            out["cost_billed"] += total.cost_billed
        return out
