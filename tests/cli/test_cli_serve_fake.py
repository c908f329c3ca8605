"""Issue 26: ``cachesaver serve-fake`` is observable from outside: one log line per request on
stderr (``-q`` silences it), ``GET /stats`` with its counters, and help text for every option.
Before, it printed its URL and nothing else, and its options had no help."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from cachesaver.cli import build_parser


def _serve(*extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "cachesaver.cli", "serve-fake", "--seed", "3", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _chat(base: str, n: int) -> dict:
    body = json.dumps({"model": "fake-model", "n": n, "messages": [{"role": "user", "content": "Name a colour."}]})
    request = urllib.request.Request(base + "/chat/completions", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("quiet", [False, True])
def test_a_log_line_per_request_and_counts_at_stats(quiet):
    server = _serve(*(["-q"] if quiet else []))
    try:
        base = server.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:") and base.endswith("/v1")
        root = base[: -len("/v1")]
        assert _get(root + "/stats")["requests"] == 0  # "0 model calls", seen from outside
        _chat(base, 1)
        _chat(base, 2)
        stats = _get(root + "/stats")
        assert {k: stats[k] for k in ("requests", "samples_generated", "n_asked")} == {
            "requests": 2, "samples_generated": 3, "n_asked": 3}
        assert stats["prompt_tokens"] == 2 * 6 and stats["completion_tokens"] > 0
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    if quiet:
        assert err == ""
        return
    lines = err.splitlines()
    assert lines[0] == "GET /stats 200"
    assert lines[1].startswith("POST /v1/chat/completions 200 fake-model n=1: sample 1 of this prompt, 6+")
    assert lines[2].startswith("POST /v1/chat/completions 200 fake-model n=2: samples 2..3 of this prompt, 6+")
    assert lines[2].endswith(" tokens") and lines[3] == "GET /stats 200" and len(lines) == 4


def test_every_option_has_help():
    parser = build_parser()
    fake = parser._subparsers._group_actions[0].choices["serve-fake"]  # type: ignore[union-attr]
    options = [a for a in fake._actions if a.option_strings and a.dest != "help"]
    assert sorted(a.dest for a in options) == ["batch_delay", "latency", "port", "quiet", "seed"]
    assert all(a.help and len(a.help) > 20 for a in options)
    assert "GET /stats" in fake.format_help()
