"""The same workload through ``litellm.acompletion`` against the local OpenAI-compatible server.

The server (``cachesaver.testing.server.FakeOpenAIServer``) answers with the simulator model's
answer distribution (its ``responder`` hook is :func:`.model.respond`) and tags every choice
``[sample k of <model>]`` where k counts that prompt's samples, so sample identity (prompt, k) is
visible on the wire. All
paid figures here come from the server's own request log: HTTP requests, the ``n`` they carried,
choices generated and the tokens it billed (its count: words + 3 per message in, words out).

- no cache: ``litellm.acompletion(model="openai/gpt-4.1-nano", n=k, api_base=server)``;
- CacheSaver: ``model="cachesaver/openai/gpt-4.1-nano"`` with
  ``metadata={"cachesaver_namespace": ..., "cachesaver_request_id": ...}`` after
  ``cachesaver_litellm.register(store=...)``; a new run is ``unregister()`` + ``register()``;
- CacheSaver + Batch API: the same with ``register(..., batch_api=...)``: the misses go to the
  server's ``/v1/batches`` (lines merged per key, only the missing samples), billed at litellm's
  batch prices (half the list price for gpt-4.1-nano); its cost is the engine's billed figure,
  its calls the batches the server created, and its wall time includes the batch delay.

(The plain-cache column is not repeated here: litellm's own cache needs the proxy extra, fastapi,
to serve a hit in litellm 1.110.)
"""
from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from typing import Any, Optional, Sequence

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from cachesaver_demo import game24 as g
from .backends import Backend, Tally, Trace
from .model import MODEL_NAME, TEMPERATURE, price, respond
from .scenarios import Scenario, ScenarioResult, default_scenarios, run_workload

__all__ = ["ServerBackend", "run_through_litellm", "litellm_markdown", "LITELLM_SCENARIOS", "BATCH"]

#: The batch-mode column's name.
BATCH = "CacheSaver + Batch API"

#: The smaller workload: a repeated run and the benchmarking scenario.
LITELLM_SCENARIOS = ("repeated", "benchmark")

_TAG = re.compile(r"\[sample (\d+) of ")


class ServerBackend(Backend):
    """``llm`` through litellm to the fake server, with or without the ``cachesaver/`` provider."""

    def __init__(self, server: Any, cachesaver: bool, store: Optional[str] = None,
                 batch_size: int = 64, timeout: float = 0.02, batch_api: bool = False) -> None:
        super().__init__()
        self.server = server
        self.cachesaver = cachesaver
        self.batch_api = batch_api and cachesaver
        self.name = BATCH if self.batch_api else ("CacheSaver" if cachesaver else "no cache")
        self.store = store
        self._options: dict[str, Any] = dict(batch_size=batch_size, timeout=timeout)
        if self.batch_api:
            self._options["batch_api"] = {"window": 0.1, "poll": 0.02, "max_poll": 0.05}
        self.trace = Trace()
        self.engine_calls = 0
        self.engine_samples = 0
        #: What the engine billed (tokens and dollars): the batch column's paid figures.
        self.billed = [0.0, 0.0, 0.0]
        server.reset_counters()
        batches = server.batches
        self._batches_before = (batches.created, len(batches.line_ns()), batches.samples_generated)
        if cachesaver:
            if store is None:
                raise ValueError("store: the CacheSaver backend needs a store directory")
            self._register()

    def paid_calls(self) -> int:
        return self.server.request_count

    def _register(self) -> None:
        import cachesaver_litellm

        cachesaver_litellm.register(store=self.store, **self._options)

    def _collect_engine_stats(self) -> None:
        import cachesaver_litellm

        stats = cachesaver_litellm.stats()
        self.engine_calls += stats.model_calls
        self.engine_samples += stats.total.samples_generated
        total = stats.total
        self.billed[0] += total.prompt_tokens_billed
        self.billed[1] += total.completion_tokens_billed
        self.billed[2] += total.cost_billed

    async def _samples(self, prompt, n, namespace, request_id):
        import litellm

        kwargs: dict[str, Any] = dict(
            messages=[{"role": "user", "content": prompt}], n=n, temperature=TEMPERATURE,
            api_base=self.server.base_url, api_key="sk-test", max_retries=0)
        if self.cachesaver:
            self.trace.add(self.run, namespace, prompt, n)
            response = await litellm.acompletion(
                model=f"cachesaver/openai/{MODEL_NAME}",
                metadata={"cachesaver_namespace": namespace, "cachesaver_request_id": request_id},
                **kwargs)
        else:
            response = await litellm.acompletion(model=f"openai/{MODEL_NAME}", **kwargs)
        out = []
        for choice in response.choices:
            text = choice.message.content or ""
            tag = _TAG.search(text)
            if tag is None:
                raise ValueError(f"not a fake-server sample (no [sample k of ...] tag): {text!r}")
            # The server numbers samples per prompt: identity is (prompt, k).
            out.append({"text": text, "sid": (prompt, tag.group(1))})
        return out

    async def new_run(self) -> None:
        if self.cachesaver:
            import cachesaver_litellm

            self._collect_engine_stats()
            cachesaver_litellm.unregister()   # closes the engine: the next one is a new run
            self._register()
        await super().new_run()

    async def aclose(self) -> None:
        if self.cachesaver:
            import cachesaver_litellm

            self._collect_engine_stats()
            cachesaver_litellm.unregister()

    def tally(self) -> Tally:
        s = self.server
        if self.batch_api:  # paid through /v1/batches: batches, lines' n, samples, engine's bill
            created, lines, samples = self._batches_before
            b = s.batches
            return Tally(requests=self.requests, samples_asked=self.samples_asked, calls=b.created - created,
                         n_sent=sum(b.line_ns()[lines:]), samples=b.samples_generated - samples,
                         prompt_tokens=self.billed[0], completion_tokens=self.billed[1], cost=self.billed[2],
                         duplicates=self.duplicates)
        return Tally(requests=self.requests, samples_asked=self.samples_asked, calls=s.request_count,
                     n_sent=s.n_asked, samples=s.samples_generated, prompt_tokens=s.prompt_tokens,
                     completion_tokens=s.completion_tokens,
                     cost=price(s.prompt_tokens, s.completion_tokens), duplicates=self.duplicates)


def _minimum(trace: Trace) -> Tally:
    """Samples: per prompt the most any (run, namespace) consumed; calls and input tokens: one
    call per distinct prompt, counted as the server counts (words + 3 for the one message)."""
    out = Tally()
    for pid, count in trace.needed().items():
        out.calls += 1
        out.samples += count
        out.prompt_tokens += len(trace.prompts[pid].split()) + 3
    out.completion_tokens = float("nan")
    out.cost = float("nan")
    return out


async def _measure(scenario: Scenario, puzzles: Sequence[g.State], seed: int, server: Any,
                   directory: str, batch: bool = True) -> ScenarioResult:
    tallies: dict[str, Tally] = {}
    wall: dict[str, float] = {}
    plain = ServerBackend(server, cachesaver=False)
    began = time.perf_counter()
    solved, attempts = await run_workload(scenario, plain, puzzles, seed)
    wall[plain.name] = time.perf_counter() - began
    tallies[plain.name] = _with_solved(plain.tally(), solved, attempts)
    engine: dict[str, Any] = {}
    for batch_api in ((False, True) if batch else (False,)):
        cs = ServerBackend(server, cachesaver=True, batch_api=batch_api,
                           store=os.path.join(directory, scenario.key + ("-batch" if batch_api else "")))
        began = time.perf_counter()
        try:
            solved, attempts = await run_workload(scenario, cs, puzzles, seed)
        finally:
            await cs.aclose()
        wall[cs.name] = time.perf_counter() - began
        tallies[cs.name] = _with_solved(cs.tally(), solved, attempts)
        if not batch_api:
            tallies["minimum"] = _minimum(cs.trace)
            engine = {"model_calls": cs.engine_calls, "samples_generated": cs.engine_samples,
                      "calls_by_run": cs.calls_by_run()}
        else:
            engine["batch"] = {"samples_generated": cs.engine_samples, "minimum": _minimum(cs.trace).samples}
    engine["wall"] = wall
    return ScenarioResult(scenario, tallies, engine)


def _with_solved(tally: Tally, solved: int, attempts: int) -> Tally:
    tally.solved, tally.attempts = solved, attempts
    return tally


def run_through_litellm(puzzles: int = 4, seed: int = 0, scenario_keys: Sequence[str] = LITELLM_SCENARIOS,
                        directory: Optional[str] = None, batch: bool = True) -> list[ScenarioResult]:
    """Run ``scenario_keys`` on ``puzzles`` puzzles through litellm and the local server
    (``batch``: also through CacheSaver's Batch API mode)."""
    from cachesaver.testing.server import FakeOpenAIServer

    by_key = {s.key: s for s in default_scenarios()}
    unknown = [k for k in scenario_keys if k not in by_key]
    if unknown:
        raise ValueError(f"scenario_keys: unknown {unknown}; choose from {sorted(by_key)}")
    problems = g.puzzles(puzzles, seed)

    async def main(tmp: str) -> list[ScenarioResult]:
        with FakeOpenAIServer(seed=seed, responder=respond) as server:
            return [await _measure(by_key[k], problems, seed, server, tmp, batch) for k in scenario_keys]

    if directory is not None:
        return asyncio.run(main(directory))
    with tempfile.TemporaryDirectory(prefix="cachesaver-savings-litellm-") as tmp:
        return asyncio.run(main(tmp))


def litellm_markdown(results: Sequence[ScenarioResult], puzzles: int, seed: int, command: str,
                     server_delay: float = 0.2) -> str:
    head = ("| scenario | strategy | llm requests | HTTP requests | n sent | samples generated "
            "| input tokens | output tokens | cost | handed out twice | solved |")
    lines = [head, "|" + "---|" * 11]
    checks = []
    for r in results:
        for name in ("no cache", "CacheSaver", BATCH, "minimum"):
            if name not in r.tallies:
                continue
            t = r.tallies[name]
            if name == "minimum":
                lines.append(f"| {r.scenario.title} | minimum | | >= {t.calls:,} | {t.samples:,} | {t.samples:,} "
                             f"| >= {t.prompt_tokens:,.0f} | | | | |")
                continue
            lines.append(
                f"| {r.scenario.title} | {name} | {t.requests:,} | {t.calls:,} | {t.n_sent:,} "
                f"| {t.samples:,} | {t.prompt_tokens:,.0f} | {t.completion_tokens:,.0f} | ${t.cost:.4f} "
                f"| {t.duplicates:,} | {t.solved}/{t.attempts} |")
        cs, low = r.tallies["CacheSaver"], r.tallies["minimum"]
        checks.append(
            f"- {r.scenario.title}: server-generated samples {cs.samples:,} = minimum {low.samples:,}: "
            f"{'yes' if cs.samples == low.samples else 'NO'}; handed out twice inside a namespace: "
            f"{cs.duplicates}; engine model calls {r.engine.get('model_calls', 0):,} = HTTP requests "
            f"{cs.calls:,}: {'yes' if r.engine.get('model_calls') == cs.calls else 'NO'}; "
            f"HTTP requests per run: {', '.join(str(c) for c in r.engine.get('calls_by_run', []))}; "
            f"saved {r.saved():.1%} of the no-cache dollars.")
        wall = r.engine.get("wall", {})
        if BATCH in r.tallies:
            bt, batch = r.tallies[BATCH], r.engine["batch"]
            checks.append(
                f"- {r.scenario.title}, Batch API mode: samples generated {bt.samples:,} = minimum "
                f"{batch['minimum']:,}: {'yes' if bt.samples == batch['minimum'] else 'NO'}; "
                f"{bt.calls:,} batches asking {bt.n_sent:,} samples; billed ${bt.cost:.4f}, "
                f"${bt.cost / max(bt.samples, 1) * 1e6:.2f} per million samples against "
                f"${cs.cost / max(cs.samples, 1) * 1e6:.2f} interactive "
                f"({(bt.cost / max(bt.samples, 1)) / (cs.cost / max(cs.samples, 1)):.0%}: the workloads differ "
                f"where the fake server's next samples steer the search differently); wall time {wall.get(BATCH, 0):.1f} s against "
                f"{wall.get('CacheSaver', 0):.1f} s interactive (the fake server ends a batch "
                f"{server_delay:.1f} s after it is created).")
    table = "\n".join(lines)
    return f"""# The savings workload through litellm

Generated by `{command}` ({puzzles} puzzles, seed {seed}). Every paid figure is the local
OpenAI-compatible server's own count (HTTP requests, `n` they carried, choices generated, tokens:
words + 3 per message in, words out, priced at {MODEL_NAME} list prices). Sample identity is the
server's `[sample k of ...]` tag, k counting that prompt's samples: sample k of a prompt is a pure
function of (seed, prompt, k), whatever else arrives in between. Figures can still move between
reruns where requests race for one prompt's next samples: without a cache, and through CacheSaver
where one namespace asks for one prompt concurrently (FoA's agents), since arrival order across
batches decides which request gets which sample. (The ToT + SC rows through CacheSaver repeat
exactly, as `cachesaver demo` does.) The equalities below hold on every run (the test suite
checks them).

{table}

{chr(10).join(checks)}
"""
