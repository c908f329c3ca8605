"""Test doubles for the engine, the adapters, the benchmarks and the docs.

- :class:`FakeModel`: a seeded stochastic model whose samples are distinct and traceable
  (``"<answer> <prompt tag> #<k>"``, k = the sample's index among its prompt's samples),
  counting calls, samples and tokens, with optional latency, failure injection and short answers.
- ``FakeOpenAIServer`` (in :mod:`cachesaver.testing.server`): a real OpenAI-compatible HTTP
  server on 127.0.0.1 for litellm and LangChain tests.
"""
from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

from ..typedefs import Batch, BatchRequestModel, Request, Response, SingleRequestModel, Usage

__all__ = ["FakeModel", "CallRecord", "FakeOpenAIServer", "ModelFailure"]

_WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


class ModelFailure(RuntimeError):
    """What an injected failure raises (stands in for a provider error)."""


@dataclass
class CallRecord:
    prompt: Any
    n: int
    returned: int
    namespace: str
    request_id: str


@dataclass
class FakeModel(SingleRequestModel, BatchRequestModel):
    """A stochastic model you can count.

    Sample k of a prompt (k = 0, 1, ... per prompt) is ``f"{answer} <{tag}> #{k}"``: ``answer``
    is drawn from ``answers`` (or random words) with a generator seeded by ``(seed, prompt, k)``
    and ``tag`` is a short digest of the prompt. A sample is a pure function of (seed, prompt,
    sample index), whatever order the prompts arrive in, and no two samples are equal.

    Usage: ``prompt_tokens`` = words in the prompt (billed once per call), ``completion_tokens``
    = words per sample; ``cost`` at ``price_per_token`` dollars.
    """

    seed: int = 0
    latency: float = 0.0
    answers: Optional[Sequence[str]] = None
    price_per_token: float = 1e-6
    short_by: int = 0                 # return this many samples fewer than asked (>= 1 kept)
    calls: List[CallRecord] = field(default_factory=list)
    batch_calls: int = 0
    samples_generated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _failures: List[BaseException] = field(default_factory=list, repr=False)
    _per_prompt: dict = field(default_factory=dict, repr=False)  # next sample index per prompt

    # -- failure injection -------------------------------------------------------------------
    def fail_next(self, count: int = 1, exc: Optional[BaseException] = None) -> None:
        """The next ``count`` calls raise ``exc`` (default: ``ModelFailure``)."""
        for _ in range(count):
            self._failures.append(exc if exc is not None else ModelFailure("injected failure"))

    @property
    def call_count(self) -> int:
        return len(self.calls)

    @property
    def n_asked(self) -> int:
        return sum(c.n for c in self.calls)

    def sample_text(self, prompt: Any, k: int) -> str:
        digest = hashlib.sha256(f"{self.seed}|{prompt}|{k}".encode()).digest()
        rng = random.Random(digest)
        answer = rng.choice(list(self.answers)) if self.answers else " ".join(rng.choices(_WORDS, k=3))
        tag = hashlib.sha256(str(prompt).encode()).hexdigest()[:6]
        return f"{answer} <{tag}> #{k}"

    async def request(self, request: Request) -> Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        if self._failures:
            self.calls.append(CallRecord(request.prompt, request.n, 0, request.namespace, request.request_id))
            raise self._failures.pop(0)
        count = max(1, request.n - self.short_by)
        data = []
        prompt_key = str(request.prompt)
        for _ in range(count):
            k = self._per_prompt.get(prompt_key, 0)
            self._per_prompt[prompt_key] = k + 1
            data.append(self.sample_text(request.prompt, k))
            self.samples_generated += 1
        prompt_tokens = len(str(request.prompt).split())
        completion_tokens = sum(len(s.split()) for s in data)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.calls.append(CallRecord(request.prompt, request.n, count, request.namespace, request.request_id))
        cost = (prompt_tokens + completion_tokens) * self.price_per_token
        return Response(data=data, usage=Usage(prompt_tokens, completion_tokens, cost))

    async def batch_request(self, batch: Batch) -> List[Response]:
        self.batch_calls += 1
        return list(await asyncio.gather(*(self.request(r) for r in batch.requests)))


def __getattr__(name: str) -> Any:
    if name == "FakeOpenAIServer":
        from .server import FakeOpenAIServer

        return FakeOpenAIServer
    raise AttributeError(name)
