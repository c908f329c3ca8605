"""The demo's experiment, its table and its chart (litellm and matplotlib are imported lazily)."""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from cachesaver.stores import REDIS_SCHEMES
from cachesaver.stores.urls import redact_url

from . import game24 as g
from .methods import self_consistency, tot_bfs
from .responder import respond

__all__ = ["FAKE_MODEL", "PRICED_AS", "price_fake_model", "PUZZLES", "SCENARIOS", "COLUMNS", "Scenario",
           "ScenarioResult", "run_experiment", "run_demo", "render_table", "table_rows", "write_chart",
           "chart_figure"]

#: The model name the demo asks the local fake server for, and the model whose list prices
#: litellm charges for it (see :func:`price_fake_model`).
FAKE_MODEL = "openai/fake-model"
PRICED_AS = "gpt-4.1-nano"


def price_fake_model() -> None:
    """Have litellm price :data:`FAKE_MODEL`'s calls at :data:`PRICED_AS`'s prices, taken from
    litellm's own cost map. Then the demo's dollars are litellm's ``response_cost`` of each call,
    the figure the engine stores with every sample: its stats, the cost callback, bundles and
    this table all show one number (a model litellm has no price for would show $0 in all)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.register_model({FAKE_MODEL: dict(litellm.model_cost[PRICED_AS])})

#: The demo's puzzles: the first ten of the savings benchmark's seeded set, as "a b c d".
PUZZLES = [g.state_text(state) for state in g.puzzles(10, seed=24)]


@dataclass
class Scenario:
    name: str
    methods: list[tuple[str, dict]]          # (namespace prefix, method settings)


@dataclass
class ScenarioResult:
    name: str
    requests: int = 0                        # litellm.acompletion calls made by the methods
    samples_asked: int = 0
    model_calls: int = 0                     # real calls the engine made
    samples_generated: int = 0               # samples billed to this scenario's responses (G8)
    billed: float = 0.0                      # dollars: litellm's cost of the calls made (engine stats)
    saved: float = 0.0                       # dollars: the stored cost of the samples reused
    prompt_tokens_billed: float = 0
    completion_tokens_billed: float = 0
    prompt_tokens_saved: float = 0
    completion_tokens_saved: float = 0
    puzzles: int = 0
    model: str = ""
    solved: dict[str, int] = field(default_factory=dict)
    outcomes: list[Any] = field(default_factory=list)


SCENARIOS = [
    Scenario("first run", [("tot-b3", {"breadth": 3}), ("sc-10", {"k": 10})]),
    Scenario("re-run", [("tot-b3", {"breadth": 3}), ("sc-10", {"k": 10})]),
    Scenario("ablation", [("tot-b5", {"breadth": 5}), ("sc-20", {"k": 20})]),
]


async def run_experiment(
    *,
    cache: str,
    model: str,
    call_kwargs: dict,
    puzzles: list[str],
    scenarios: list[Scenario] = SCENARIOS,
    on_progress: Optional[Callable[[], None]] = None,
) -> list[ScenarioResult]:
    """Run every scenario through ``litellm.acompletion("cachesaver/<model>")``; one run each."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # no "Provider List" banners on the demo's screen

    import cachesaver_litellm

    tag = uuid.uuid4().hex[:8]
    results = []
    try:
        for index, scenario in enumerate(scenarios):
            # A new run_id is a new run: same namespaces replay from the first sample.
            cachesaver_litellm.register(store=cache, batch_size=64, timeout=0.02, run_id=f"demo-{tag}-{index}")
            result = ScenarioResult(scenario.name, puzzles=len(puzzles), model=model)

            async def llm(prompt: str, n: int, namespace: str, result: ScenarioResult = result) -> list[str]:
                result.requests += 1
                result.samples_asked += n
                response = await litellm.acompletion(
                    model=f"cachesaver/{model}",
                    messages=[{"role": "user", "content": prompt}],
                    n=n,
                    temperature=0.7,
                    metadata={"cachesaver_namespace": namespace},
                    **call_kwargs,
                )
                return [choice.message.content or "" for choice in response.choices]

            async def one(prefix: str, settings: dict, puzzle: str) -> dict:
                namespace = f"{prefix}/{puzzle}"
                if prefix.startswith("tot"):
                    outcome = await tot_bfs(llm, puzzle, namespace, **settings)
                else:
                    outcome = await self_consistency(llm, puzzle, namespace, **settings)
                if on_progress:
                    on_progress()
                return {**outcome, "arm": prefix}

            outcomes = await asyncio.gather(*(one(p, s, z) for p, s in scenario.methods for z in puzzles))
            stats = cachesaver_litellm.stats()
            total = stats.total
            result.model_calls = stats.model_calls
            result.samples_generated = total.samples_generated
            result.billed, result.saved = total.cost_billed, total.cost_saved
            result.prompt_tokens_billed = total.prompt_tokens_billed
            result.completion_tokens_billed = total.completion_tokens_billed
            result.prompt_tokens_saved = total.prompt_tokens_saved
            result.completion_tokens_saved = total.completion_tokens_saved
            result.outcomes = outcomes
            for prefix, _ in scenario.methods:
                result.solved[prefix] = sum(o["solved"] for o in outcomes if o["arm"] == prefix)
            results.append(result)
    finally:
        cachesaver_litellm.unregister()
    return results


#: Short scenario names keep the table inside an 80-column terminal; these lines say what they are.
SCENARIO_NOTES = {
    "first run": "ToT breadth 3 + self-consistency k=10, on an empty cache",
    "re-run": "the same again, as a new run (each namespace from sample 1)",
    "ablation": "ToT breadth 5 + self-consistency k=20, on the same cache",
}

#: Column headers (two lines each, so that the table fits 80 columns).
COLUMNS = ("scenario", "requests", "samples\nasked", "model\ncalls", "samples\ngenerated", "billed\n$",
           "saved\n$", "saved\n%", "solved\nToT SC")


def table_rows(results: list[ScenarioResult]) -> list[tuple[str, ...]]:
    """The table's cells as text, in the order of :data:`COLUMNS`."""
    rows = []
    for r in results:
        share = r.saved / (r.saved + r.billed) if r.saved + r.billed else 0.0
        rows.append((
            r.name, str(r.requests), str(r.samples_asked), str(r.model_calls), str(r.samples_generated),
            f"{r.billed:.5f}", f"{r.saved:.5f}", f"{share:.0%}",
            " ".join(f"{v:>{w}}" for v, w in zip(r.solved.values(), (3, 2))),
        ))
    return rows


def render_table(results: list[ScenarioResult], console) -> None:
    """The scenario table, readable in 80 columns: no vertical rules, two-line headers."""
    from rich import box
    from rich.table import Table

    puzzles = results[0].puzzles if results else 0
    title = f"Game of 24 through litellm + CacheSaver ({puzzles} puzzles, {prices_of(results)} prices)"
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False, show_edge=False)
    for col in COLUMNS:
        table.add_column(col, justify="left" if col.startswith(("scenario", "solved")) else "right", no_wrap=True)
    for row in table_rows(results):
        table.add_row(*row)
    # The title centred over the table as rich would, without rich's padding to the right: no
    # line of the demo's output ends in spaces (it is copied into notes, diffs and the README).
    width = console.measure(table).maximum
    console.print(" " * max(0, (width - len(title)) // 2) + title, style="table.title", soft_wrap=True)
    console.print(table)
    for r in results:
        if r.name in SCENARIO_NOTES:
            console.print(f"  {r.name:<9}  {SCENARIO_NOTES[r.name]}", soft_wrap=True)


def _has_price(model: str) -> bool:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    try:
        litellm.cost_per_token(model=model, prompt_tokens=1, completion_tokens=1)
    except Exception:  # litellm raises a bare Exception (or NotFoundError) for an unknown model
        return False
    return True


def prices_of(results: list[ScenarioResult]) -> str:
    """Whose prices the dollars are: the model's (litellm's cost map), or gpt-4.1-nano's for the
    fake server's model."""
    model = results[0].model if results else ""
    return PRICED_AS if model == FAKE_MODEL else model


def write_chart(results: list[ScenarioResult], path: str) -> Optional[str]:
    """Save the savings chart as PNG at ``path``; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig = chart_figure(results)
    fig.savefig(path)
    plt.close(fig)
    return path


def chart_figure(results: list[ScenarioResult]):
    """Stacked bars per scenario (billed, saved) in milli-dollars, every value labelled."""
    import matplotlib.pyplot as plt

    names = [r.name for r in results]
    billed = [r.billed * 1e3 for r in results]
    saved = [r.saved * 1e3 for r in results]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    paid = ax.bar(names, billed, label="billed", color="#d95f02")
    kept = ax.bar(names, saved, bottom=billed, label="saved by CacheSaver", color="#1b9e77")
    # Value labels: each segment's milli-dollars inside it (segments too thin to hold a label are
    # named in the label above the bar instead), and the share saved above each bar.
    totals = [b + s for b, s in zip(billed, saved)]
    tall = 0.08 * max(totals + [0.0])
    for bars, values in ((paid, billed), (kept, saved)):
        ax.bar_label(bars, labels=[f"{v:.2f}" if v and v >= tall else "" for v in values],
                     label_type="center", color="white", fontsize=8)
    thin = [f" ({s:.2f})" if 0 < s < tall else "" for s in saved]
    ax.bar_label(kept, labels=[f"{s / t:.0%} saved{x}" if t else "" for s, t, x in zip(saved, totals, thin)],
                 padding=2, fontsize=8)
    ax.set_ylim(0, max(totals + [0.0]) * 1.45 or 1.0)  # room for the labels and the legend
    ax.set_ylabel(f"milli-dollars ({prices_of(results)} prices)")
    ax.set_title("What each scenario would cost without a cache, and what it paid")
    ax.legend(loc="upper left", ncols=2, frameon=False)
    fig.tight_layout()
    return fig


#: Written into a cache directory the demo creates: ``--fresh`` removes only such a directory.
DEMO_MARKER = ".cachesaver-demo-cache"


def prepare_cache(cache: str, *, fresh: bool, yes: bool = False) -> Optional[str]:
    """Make ``cache`` ready for the demo; the reason to refuse, or None.

    A directory the demo creates gets a :data:`DEMO_MARKER` file. ``fresh`` removes the
    directory first only if it has that marker or is empty; any other directory (someone's
    cache, unrelated files) is removed only with ``yes``. A ``--cache`` that is not a local
    directory (a ``redis://`` URL) is never removed."""
    if os.path.isdir(cache) and fresh:
        entries = os.listdir(cache)
        if entries and DEMO_MARKER not in entries and not yes:
            held = f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}"
            return (f"--fresh removes only a cache the demo created, and {redact_url(cache)} was not (it holds "
                    f"{held} and no {DEMO_MARKER} file): to delete the whole directory anyway, add --yes")
        shutil.rmtree(cache)
    if not cache.startswith(REDIS_SCHEMES) and cache not in ("memory", ":memory:") and not os.path.exists(cache):
        os.makedirs(cache)
        with open(os.path.join(cache, DEMO_MARKER), "w") as marker:
            marker.write("created by `cachesaver demo`: `cachesaver demo --fresh` may delete this directory\n")
    return None


def model_failure(exc: BaseException, model: str) -> str:
    """One line for a failed model call (a missing API key, a wrong model name...): litellm's
    message, and the environment variables litellm says the model needs but does not find."""
    import litellm

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    line = f"cachesaver demo: a call to {model} failed: {first}"
    try:
        missing = litellm.validate_environment(model).get("missing_keys") or []
    except Exception:  # an unknown model: litellm's message above says so
        missing = []
    if missing:
        line += (f" (not set: {', '.join(missing)}; set it, or leave out --model to run against the "
                 "local fake server)")
    return line


def run_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    # The terminal's width, or $COLUMNS / 80 when piped: the table is laid out to fit 80 columns.
    console = Console(highlight=False)
    if not 1 <= args.puzzles <= len(PUZZLES):
        print(f"cachesaver demo: --puzzles must be between 1 and {len(PUZZLES)} (the demo has {len(PUZZLES)} "
              f"puzzles), got {args.puzzles}", file=sys.stderr)
        return 2
    puzzles = PUZZLES[: args.puzzles]
    refused = prepare_cache(args.cache, fresh=args.fresh, yes=getattr(args, "yes", False))
    if refused:
        print(f"cachesaver demo: {refused}", file=sys.stderr)
        return 2
    server = None
    if args.model is None:
        from cachesaver.testing.server import FakeOpenAIServer

        server = FakeOpenAIServer(seed=24, responder=respond).start()
        price_fake_model()
        model, call_kwargs = FAKE_MODEL, {"api_base": server.base_url, "api_key": "sk-fake-demo"}
        console.print(f"Model: the local fake OpenAI-compatible server at {server.base_url} (no API key, no network)", soft_wrap=True)
    else:
        model, call_kwargs = args.model, {}
        console.print(f"Model: {model} (real calls, billed by your provider)", soft_wrap=True)
        if not _has_price(model):
            console.print(f"litellm has no price for {model}: the $ columns show 0 (add one with "
                          "litellm.register_model)", soft_wrap=True)
    console.print(f"Cache: {redact_url(args.cache)}   Puzzles: {', '.join(puzzles)}", soft_wrap=True)
    total = sum(len(s.methods) for s in SCENARIOS) * len(puzzles)
    import openai  # litellm's exceptions are openai's

    try:
        with Progress(console=console, transient=True, disable=args.quiet) as progress:
            task = progress.add_task("solving", total=total)
            results = asyncio.run(run_experiment(
                cache=args.cache, model=model, call_kwargs=call_kwargs, puzzles=puzzles,
                on_progress=lambda: progress.advance(task),
            ))
    except openai.OpenAIError as exc:
        print(model_failure(exc, model), file=sys.stderr)
        return 1
    finally:
        if server is not None:
            http_requests = server.request_count
            server.stop()
    render_table(results, console)
    first, rerun = results[0], results[1]
    same = [o["final"] for o in first.outcomes] == [o["final"] for o in rerun.outcomes]
    console.print(f"Re-run: {rerun.model_calls} model calls, results identical to the first run: {same}.", soft_wrap=True)
    if server is not None:
        console.print(f"Fake server: {http_requests} HTTP requests in all "
                      f"(= {sum(r.model_calls for r in results)} model calls counted by CacheSaver).", soft_wrap=True)
    chart = write_chart(results, args.chart)
    if chart:
        console.print(f"Chart: {chart}", soft_wrap=True)
    console.print(f"Run `cachesaver stats --cache {redact_url(args.cache)}` to look inside the cache.", soft_wrap=True)
    return 0
