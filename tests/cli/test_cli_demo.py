"""The demo end to end (small size), its figures checked against the fake server's own counts."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

pytest.importorskip("litellm")

from cachesaver_demo import Scenario, run_experiment  # noqa: E402
from cachesaver_demo import PUZZLES, respond  # noqa: E402
from cachesaver.testing.server import FakeOpenAIServer  # noqa: E402


def test_demo_scenarios_match_the_servers_request_log(tmp_path):
    scenarios = [
        Scenario("first run", [("tot-b3", {"breadth": 3}), ("sc-10", {"k": 10})]),
        Scenario("re-run", [("tot-b3", {"breadth": 3}), ("sc-10", {"k": 10})]),
        Scenario("ablation", [("tot-b5", {"breadth": 5}), ("sc-20", {"k": 20})]),
    ]
    with FakeOpenAIServer(seed=24, responder=respond) as server:
        counts = []

        def snapshot():
            counts.append((server.request_count, server.samples_generated))

        results = asyncio.run(run_experiment(
            cache=str(tmp_path / "demo"), model="openai/fake-model",
            call_kwargs={"api_base": server.base_url, "api_key": "sk-test"},
            puzzles=PUZZLES[:2], scenarios=scenarios,
        ))
        total_requests, total_samples = server.request_count, server.samples_generated
    first, rerun, ablation = results
    assert total_requests == sum(r.model_calls for r in results)
    assert total_samples == sum(r.samples_generated for r in results)
    # re-run: zero calls, zero tokens billed, identical results
    assert rerun.model_calls == 0 and rerun.billed == 0
    assert [o["final"] for o in rerun.outcomes] == [o["final"] for o in first.outcomes]
    assert rerun.saved == pytest.approx(first.billed)
    # ablation: self-consistency k=20 reuses the 10 stored samples per puzzle -> partial savings
    assert 0 < ablation.saved and 0 < ablation.billed
    assert ablation.samples_generated < ablation.samples_asked
    # every sample asked in the first run was generated once (nothing stored before)
    assert first.samples_generated == first.samples_asked


def test_demo_command_runs_offline(tmp_path):
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    chart = tmp_path / "chart.png"
    out = subprocess.run(
        [sys.executable, "-m", "cachesaver", "demo", "--cache", str(tmp_path / "c"), "--puzzles", "1",
         "--chart", str(chart), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "re-run" in out.stdout and "results identical to the first run: True" in out.stdout
    assert chart.exists() and chart.stat().st_size > 1000
    assert "Provider List" not in out.stdout + out.stderr
