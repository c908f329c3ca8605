"""Issue 26: the demo's failures are one line, and it never removes what it did not create.

Before: ``cachesaver demo --model openai/gpt-4.1-nano`` without a key printed a 146-line traceback;
``--fresh`` deleted whatever directory ``--cache`` named (samples and unrelated files alike);
``--puzzles 50`` silently ran 10.
"""
from __future__ import annotations

import pytest

pytest.importorskip("litellm")

from cachesaver.cli import main  # noqa: E402


def test_a_missing_api_key_is_one_line(tmp_path, monkeypatch, capsys):
    for name in ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    code = main(["demo", "--model", "openai/gpt-4.1-nano", "--cache", str(tmp_path / "c"), "--quiet",
                 "--puzzles", "1", "--chart", str(tmp_path / "chart.png")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("cachesaver demo: a call to openai/gpt-4.1-nano failed: litellm.")
    assert "OPENAI_API_KEY" in err and "Traceback" not in err
    assert err.endswith(" (not set: OPENAI_API_KEY; set it, or leave out --model to run against the local "
                        "fake server)\n")
