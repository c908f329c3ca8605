"""Issue 26: a stored sample the LangChain adapter cannot read is named counting from 1, as
``cachesaver inspect`` shows it (``#1``); before, the 1st sample was "sample 0"."""
from __future__ import annotations

import sqlite3

import pytest
from _disk_rows import set_sample

from cachesaver.codec import encode_sample
from cachesaver.errors import CorruptSampleError
from cachesaver_langchain import cachesaver_config


def test_an_unreadable_stored_sample_is_named_from_1(make_chat, tmp_path):
    make_chat().invoke("Name a colour.", config=cachesaver_config("a"))
    con = sqlite3.connect(str(tmp_path / "store" / "cache.db"))
    [(key,)] = con.execute("SELECT DISTINCT key FROM cachesaver_samples").fetchall()
    con.close()
    set_sample(str(tmp_path / "store"), key, 0, encode_sample("plain text, not a chat message"))
    with pytest.raises(CorruptSampleError, match=r"^sample 1 delivered to namespace 'b' is not a CacheSaver "
                                                 r"LangChain sample"):
        make_chat().invoke("Name a colour.", config=cachesaver_config("b"))
