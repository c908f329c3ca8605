"""The demo end to end: its figures checked against the fake server's own counts, identical on
every fresh run, readable in 80 columns, equal to the README, and reached through the engine CLI
without the engine importing it."""
from __future__ import annotations

import asyncio
import pathlib
import re

import pytest

pytest.importorskip("litellm")

from rich.console import Console  # noqa: E402

from cachesaver.cli import main  # noqa: E402
from cachesaver_demo import FAKE_MODEL, PUZZLES, Scenario, price_fake_model, respond, run_experiment  # noqa: E402
from cachesaver_demo.runner import COLUMNS, chart_figure, render_table, table_rows  # noqa: E402
from cachesaver.testing.server import FakeOpenAIServer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCENARIOS = [
    Scenario("first run", [("tot-b3", {"breadth": 3}), ("sc-10", {"k": 10})]),
    Scenario("re-run", [("tot-b3", {"breadth": 3}), ("sc-10", {"k": 10})]),
    Scenario("ablation", [("tot-b5", {"breadth": 5}), ("sc-20", {"k": 20})]),
]


def fresh_demo(directory: pathlib.Path, puzzles: int = 2):
    """One fresh run of the demo's experiment: a new server, an empty cache."""
    price_fake_model()
    with FakeOpenAIServer(seed=24, responder=respond) as server:
        results = asyncio.run(run_experiment(
            cache=str(directory), model=FAKE_MODEL,
            call_kwargs={"api_base": server.base_url, "api_key": "sk-test"},
            puzzles=PUZZLES[:puzzles], scenarios=SCENARIOS,
        ))
        return results, (server.request_count, server.samples_generated, server.prompt_tokens,
                         server.completion_tokens)


def figures(results) -> list:
    """Every figure the demo reports, plus what each method returned."""
    return [(r.name, r.requests, r.samples_asked, r.model_calls, r.samples_generated,
             r.prompt_tokens_billed, r.completion_tokens_billed, r.prompt_tokens_saved,
             r.completion_tokens_saved, r.solved, r.outcomes) for r in results]


def test_demo_scenarios_match_the_servers_request_log(tmp_path):
    results, (total_requests, total_samples, _, _) = fresh_demo(tmp_path / "demo")
    first, rerun, ablation = results
    assert total_requests == sum(r.model_calls for r in results)
    assert total_samples == sum(r.samples_generated for r in results)
    # re-run: zero calls, zero tokens billed, identical results
    assert rerun.model_calls == 0 and rerun.billed == 0
    assert [o["final"] for o in rerun.outcomes] == [o["final"] for o in first.outcomes]
    assert rerun.saved == pytest.approx(first.billed + first.saved)
    # ablation: self-consistency k=20 reuses the 10 stored samples per puzzle -> partial savings
    assert 0 < ablation.saved and 0 < ablation.billed
    assert ablation.samples_generated < ablation.samples_asked
    # every sample asked in the first run was generated once, unless two namespaces shared it
    assert first.samples_generated <= first.samples_asked


def test_every_view_of_what_the_demo_paid_agrees(tmp_path):
    """Issue 22: one experiment, one figure. The table's dollars are the engine's recorded
    cost (litellm's price of each call, stored with its samples), so a bundle of the three runs
    says the same: generating its samples once cost what the scenarios were billed, and the
    runs without a cache would have paid billed + saved of every scenario. Before, the bundle
    said $0 (litellm had no price for the fake model) and left the re-run out of "without a
    cache" (runs sharing namespace names were merged)."""
    from cachesaver.bundle import consumption_of_runs, read_bundle, write_bundle
    from cachesaver.stores import DiskStore

    results, (_, samples_generated, _, _) = fresh_demo(tmp_path / "demo")
    assert all(r.billed > 0 for r in results if r.model_calls) and results[1].billed == 0

    async def bundle():
        store = DiskStore(str(tmp_path / "demo"))
        try:
            run_ids = sorted({run async for run, _, _, _ in store.iter_ledger()})
            assert len(run_ids) == 3
            await write_bundle(store, await consumption_of_runs(store, run_ids), tmp_path / "demo.csbundle")
        finally:
            store.close()

    asyncio.run(bundle())
    summary = read_bundle(tmp_path / "demo.csbundle").summary
    assert summary["samples"] == samples_generated == sum(r.samples_generated for r in results)
    assert summary["cost"] == pytest.approx(sum(r.billed for r in results), rel=1e-6)
    assert summary["consumed_samples"] == sum(r.samples_asked for r in results)
    assert summary["consumed_cost"] == pytest.approx(sum(r.billed + r.saved for r in results), rel=1e-6)


def test_fresh_runs_give_identical_figures(tmp_path):
    # The fake server's texts depend on (seed, prompt, sample index) only, CacheSaver asks for a
    # key's samples in ledger order, so the whole experiment is the same on every fresh run:
    # calls, samples, tokens, dollars, and every method's answer.
    one, wire_one = fresh_demo(tmp_path / "one")
    two, wire_two = fresh_demo(tmp_path / "two")
    assert figures(one) == figures(two)
    assert wire_one == wire_two
    assert table_rows(one) == table_rows(two)


def test_table_is_readable_in_80_columns(tmp_path):
    results, _ = fresh_demo(tmp_path / "demo")
    console = Console(width=80, record=True, highlight=False, force_terminal=False)
    render_table(results, console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text  # no header or figure cut short
    for header in COLUMNS:
        for part in header.split("\n"):
            assert part in text
    for row in table_rows(results):  # every figure, whole, on its scenario's line
        line = next(line for line in text.splitlines() if line.startswith(row[0] + " "))
        assert line.split() == " ".join(row).split(), line


def test_chart_labels_every_value(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    results, _ = fresh_demo(tmp_path / "demo")
    fig = chart_figure(results)
    try:
        labels = " | ".join(t.get_text() for t in fig.axes[0].texts)
    finally:
        plt.close(fig)
    for r in results:
        total = r.billed + r.saved
        for value in (r.billed, r.saved):
            if value:
                assert f"{value * 1e3:.2f}" in labels, (r.name, labels)
        assert f"{r.saved / total:.0%} saved" in labels


def readme_demo_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"Output \(4 puzzles\):\n\n```\n(.*?)```", text, re.S)
    assert block, "README: the demo's output block is missing"
    return block.group(1).rstrip("\n").split("\n")


def test_demo_command_prints_what_the_readme_shows(tmp_path, declared_commands, monkeypatch, capsys):
    # One command, as in the README: `cachesaver demo` is the engine's CLI, the demo arrives through
    # the cachesaver.commands entry point. Piped, 80 columns, a fresh cache: exactly the README.
    # (tests/cli/test_cli_plugins.py runs the command line in a fresh process.)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(tmp_path)
    chart = tmp_path / "cachesaver-demo.png"
    assert main(["demo", "--cache", str(tmp_path / "c"), "--fresh", "--quiet", "--chart", str(chart)]) == 0
    out = capsys.readouterr()
    printed = out.out.rstrip("\n").split("\n")  # as printed: no line ends in spaces (issue 26)
    expected = readme_demo_block()
    start = printed.index(expected[0])
    assert printed[start:start + len(expected) - 1] == expected[:-1]
    assert expected[-1] == "Chart: cachesaver-demo.png" and printed[start + len(expected) - 1] == f"Chart: {chart}"
    # What the README says around the block: "After a line naming the local server's address and
    # one naming the cache and the puzzles, [the table], then a hint to look inside the cache."
    assert re.fullmatch(r"Model: the local fake OpenAI-compatible server at http://127\.0\.0\.1:\d+/v1 .*", printed[0])
    assert printed[1].startswith(f"Cache: {tmp_path / 'c'}   Puzzles: ") and set(printed[2:start]) <= {""}
    assert printed[start + len(expected):] == [f"Run `cachesaver stats --cache {tmp_path / 'c'}` to look inside the cache."]
    # "Run the command again and the first run is free too (the cache ... is kept)."
    assert main(["demo", "--cache", str(tmp_path / "c"), "--quiet", "--chart", str(chart)]) == 0
    again = capsys.readouterr().out.split("\n")
    assert "Fake server: 0 HTTP requests in all (= 0 model calls counted by CacheSaver)." in again
    assert next(line for line in again if line.startswith("first run ")).split()[2:5] == ["30", "118", "0"]
    assert max(len(line) for line in printed[start:start + len(expected) - 1]) <= 80
    assert chart.exists() and chart.stat().st_size > 1000
    assert "Provider List" not in out.out + out.err


def test_another_model_is_priced_at_its_own_prices(tmp_path):
    """Issue 22: ``--model`` shows that model's dollars. Before, every model was priced as
    gpt-4.1-nano. The demo runs ``openai/gpt-4o-mini`` (served by the local server here); its
    billed dollars are litellm's price of gpt-4o-mini for the tokens billed, not gpt-4.1-nano's."""
    import litellm

    from cachesaver_demo.runner import prices_of

    with FakeOpenAIServer(seed=24, responder=respond) as server:
        [result] = asyncio.run(run_experiment(
            cache=str(tmp_path / "other"), model="openai/gpt-4o-mini",
            call_kwargs={"api_base": server.base_url, "api_key": "sk-test"},
            puzzles=PUZZLES[:1], scenarios=SCENARIOS[:1]))
    prompt, completion = result.prompt_tokens_billed, result.completion_tokens_billed
    assert prompt > 0 and completion > 0
    own = sum(litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=prompt, completion_tokens=completion))
    nano = sum(litellm.cost_per_token(model="gpt-4.1-nano", prompt_tokens=prompt, completion_tokens=completion))
    assert own != pytest.approx(nano)
    assert result.billed == pytest.approx(own, rel=1e-6)
    assert prices_of([result]) == "openai/gpt-4o-mini"
