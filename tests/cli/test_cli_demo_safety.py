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


def _demo(cache, *extra: str) -> int:
    return main(["demo", "--cache", str(cache), "--quiet", "--puzzles", "1",
                 "--chart", str(cache.parent / "chart.png"), *extra])


def test_fresh_removes_only_a_cache_the_demo_created(tmp_path, capsys):
    mine = tmp_path / "experiment"
    mine.mkdir()
    (mine / "NOTES.txt").write_text("my notes")
    assert _demo(mine, "--fresh") == 2
    err = capsys.readouterr().err
    assert err == (f"cachesaver demo: --fresh removes only a cache the demo created, and {mine} was not (it "
                   "holds 1 entry and no .cachesaver-demo-cache file): to delete the whole directory anyway, "
                   "add --yes\n")
    assert (mine / "NOTES.txt").read_text() == "my notes"  # untouched

    demo_cache = tmp_path / "demo"
    assert _demo(demo_cache) == 0 and (demo_cache / ".cachesaver-demo-cache").is_file()
    (demo_cache / "stray.txt").write_text("x")
    capsys.readouterr()
    assert _demo(demo_cache, "--fresh") == 0  # the demo's own cache: removed and made again
    assert not (demo_cache / "stray.txt").exists() and (demo_cache / ".cachesaver-demo-cache").is_file()
    assert "Re-run: 0 model calls" in capsys.readouterr().out


def test_fresh_with_yes_removes_any_directory(tmp_path, capsys):
    mine = tmp_path / "experiment"
    mine.mkdir()
    (mine / "NOTES.txt").write_text("my notes")
    assert _demo(mine, "--fresh", "--yes") == 0
    assert not (mine / "NOTES.txt").exists()


@pytest.mark.parametrize("count", ["0", "11", "50"])
def test_puzzles_out_of_range_is_an_error_stating_the_range(tmp_path, capsys, count):
    assert main(["demo", "--cache", str(tmp_path / "c"), "--quiet", "--puzzles", count]) == 2
    assert capsys.readouterr().err == (
        f"cachesaver demo: --puzzles must be between 1 and 10 (the demo has 10 puzzles), got {count}\n")
    assert not (tmp_path / "c").exists()
