"""The stochastic fake LLM the workloads run on, its token counts and gpt-4.1-nano prices.

``SimModel`` answers with :func:`cachesaver_demo.responder.respond`, which reads a Game-of-24 prompt (the instruction on its first line, the numbers on its
last lines) and answers like a model at temperature 0.7 would, from a *small* answer space that
depends on the prompt: a legal next step (favouring a few "obvious" moves and moves that keep 24
reachable, as real models do), a sure/likely/impossible verdict that is right more often than
not, a chain of steps ending in an answer, or one of the candidates offered to merge.

Sample ``i`` of a prompt is a pure function of ``(seed, prompt, params, i)``, where ``i`` counts
the samples this model generated for that prompt so far. So any cache that stores samples in the
order they were generated (CacheSaver does) holds exactly what the model would have produced, the
minimum can be recomputed from a trace without the engine, and runs are reproducible whatever the
batching. Each sample also carries a hidden ``sid`` (prompt hash and index) so that tests and
tallies can tell "the same sample handed out twice" from "two samples that read alike".
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from cachesaver.keys import canonical_json
from cachesaver.typedefs import Request, Response, SingleRequestModel, Usage

from cachesaver_demo.responder import respond

__all__ = [
    "SimRequest", "SimModel", "respond", "tokens", "price", "PRICE_INPUT_PER_M", "PRICE_OUTPUT_PER_M",
    "MODEL_NAME", "TEMPERATURE",
]

#: gpt-4.1-nano list prices (USD per million tokens), as of 2025.
PRICE_INPUT_PER_M = 0.10
PRICE_OUTPUT_PER_M = 0.40
MODEL_NAME = "gpt-4.1-nano"
TEMPERATURE = 0.7
TOKENS_PER_WORD = 1.3


def tokens(text: str) -> int:
    """Tokens of ``text``: 1.3 per whitespace-separated word (a usual rule of thumb for English)."""
    return max(1, round(TOKENS_PER_WORD * len(text.split())))


def price(prompt_tokens: float, completion_tokens: float) -> float:
    return (prompt_tokens * PRICE_INPUT_PER_M + completion_tokens * PRICE_OUTPUT_PER_M) / 1e6


@dataclass(frozen=True)
class SimRequest(Request):
    """A chat request: the prompt plus the decoding settings that shape its answers (keyed)."""

    model: str = MODEL_NAME
    temperature: float = TEMPERATURE


def prompt_id(prompt: str, model: str = MODEL_NAME, temperature: float = TEMPERATURE) -> str:
    """Identity of a prompt with its settings (what every cache here keys samples on)."""
    payload = canonical_json({"prompt": prompt, "model": model, "temperature": temperature})
    return hashlib.sha256(payload).hexdigest()


class SimModel(SingleRequestModel):
    """A seeded Game-of-24 "LLM" with counters of what it was asked and what it billed."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._next: dict[str, int] = {}   # prompt id -> samples generated so far
        self.calls = 0
        self.n_asked = 0
        self.samples = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0

    # -- sampling (pure) -----------------------------------------------------------------------
    def sample(self, prompt: str, index: int, model: str = MODEL_NAME,
               temperature: float = TEMPERATURE) -> dict[str, str]:
        """Sample ``index`` of ``prompt``: ``{"text": ..., "sid": ...}`` (JSON, storable)."""
        pid = prompt_id(prompt, model, temperature)
        digest = hashlib.sha256(f"{self.seed}|{pid}|{index}".encode()).digest()
        return {"text": respond(prompt, random.Random(digest)), "sid": f"{pid[:12]}:{index}"}

    # -- the engine's model interface --------------------------------------------------------------
    async def request(self, request: Request) -> Response:
        prompt = request.prompt
        model = getattr(request, "model", MODEL_NAME)
        temperature = getattr(request, "temperature", TEMPERATURE)
        return self.generate(prompt, request.n, model, temperature)

    def generate(self, prompt: str, n: int, model: str = MODEL_NAME,
                 temperature: float = TEMPERATURE) -> Response:
        """One call for ``n`` fresh samples (what a provider bills as one request)."""
        pid = prompt_id(prompt, model, temperature)
        start = self._next.get(pid, 0)
        self._next[pid] = start + n
        data = [self.sample(prompt, i, model, temperature) for i in range(start, start + n)]
        prompt_tokens = tokens(prompt)
        completion_tokens = sum(tokens(d["text"]) for d in data)
        cost = price(prompt_tokens, completion_tokens)
        self.calls += 1
        self.n_asked += n
        self.samples += n
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost += cost
        return Response(data=data, usage=Usage(prompt_tokens, completion_tokens, cost))
