"""The CLI never prints raw control characters from stored data.

A stored sample, prompt, model name, key, namespace or run id is someone else's text (a model's
answer, an imported cache, a bundle). Printed raw, ``ESC [2J`` clears the screen and
``ESC ]52;c;...BEL`` writes the user's clipboard. ``inspect`` and ``stats`` show them as
``\\x1b``-style escapes; multi-line samples keep their line breaks.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys

import pytest

from cachesaver.cli import main
from cachesaver.codec import encode_sample
from cachesaver.stores import DiskStore

CLEAR_AND_CLIPBOARD = "\x1b[2J\x1b]52;c;ZWNobyBwd25lZA==\x07"
SAMPLE = f"line one {CLEAR_AND_CLIPBOARD}\nline two\r\x9b31m"
META = json.dumps({"model": "evil\x1b[31m-model", "prompt": f"ask {CLEAR_AND_CLIPBOARD}"}).encode()
KEY = hashlib.sha256(META).hexdigest()
RAW = (b"\x1b", b"\x07", b"\r", "\x9b".encode())  # C1 U+009B (CSI) as UTF-8


@pytest.fixture
def hostile_cache(tmp_path):
    directory = str(tmp_path / "cache")

    async def fill():
        store = DiskStore(directory)
        try:
            await store.append(KEY, [encode_sample(SAMPLE)], META)
            await store.claim("run\x1b[2J", "ns\x07", KEY, 1, partial=True)
        finally:
            await store.aclose()

    asyncio.run(fill())
    return directory


def _run(cli_env, *args) -> bytes:
    done = subprocess.run([sys.executable, "-m", "cachesaver", *args], env=cli_env, capture_output=True,
                          timeout=60, check=True)
    return done.stdout


def _assert_no_raw_controls(out: bytes) -> None:
    assert [c for c in RAW if c in out] == []


def test_inspect_escapes_control_characters(hostile_cache, cli_env):
    out = _run(cli_env, "inspect", "--cache", hostile_cache, KEY[:8])
    _assert_no_raw_controls(out)
    text = out.decode()
    assert "#1 line one \\x1b[2J\\x1b]52;c;ZWNobyBwd25lZA==\\x07\n   line two\\x0d\\x9b31m" in text
    assert "model evil\\x1b[31m-model" in text and "prompt: ask \\x1b[2J" in text


def test_stats_detail_and_by_run_escape_control_characters(hostile_cache, cli_env):
    out = _run(cli_env, "stats", "--cache", hostile_cache, "--detail", "--by-run")
    _assert_no_raw_controls(out)
    text = out.decode()
    assert "evil\\x1b[31m-model" in text and "run\\x1b[2J" in text and "ns\\x07" in text


def test_inspect_json_escapes_them_and_stays_json(hostile_cache, capsysbinary):
    assert main(["inspect", "--cache", hostile_cache, KEY[:8], "--json"]) == 0
    out = capsysbinary.readouterr().out
    _assert_no_raw_controls(out)
    line = json.loads(out)
    assert line["text"] == SAMPLE and line["model"] == "evil\x1b[31m-model"  # the same data, escaped
