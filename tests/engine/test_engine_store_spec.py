"""Issue 26: a store spec that starts with a scheme CacheSaver knows (redis, rediss, unix) and a
colon, but is not that URL, is refused naming the fix; before, ``store="redis:/oops"`` created a
local directory named ``redis:/oops``. Only the scheme syntax is read: other strings stay paths,
and a ``pathlib.Path`` is a path whatever its text."""
from __future__ import annotations

import pathlib

import pytest

from cachesaver.errors import InvalidRequestError
from cachesaver.opening import open_store
from cachesaver.stores import DiskStore, check_store_spec

REDIS_FIX = ("but is not a redis:// URL: write redis://host:port/db (e.g. redis://127.0.0.1:6379/0); for a local "
             "directory of that name, prefix it with './' or pass a pathlib.Path")


@pytest.mark.parametrize("spec, start", [
    ("redis:/oops", "'redis:' " + REDIS_FIX),
    ("redis:oops", "'redis:' " + REDIS_FIX),
    ("Redis://host:6379/0", "'Redis:' " + REDIS_FIX),
    ("redis:/:s3cret@host", "'redis:' " + REDIS_FIX),
    ("rediss:/host", "'rediss:' but is not a rediss:// URL: write rediss://host:port/db"),
    ("unix:/tmp/redis.sock", "'unix:' but is not a unix:// URL: write unix:///path/to/redis.sock?db=0"),
])
def test_a_malformed_url_of_a_known_scheme_is_refused(spec, start, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidRequestError) as caught:
        open_store(spec)
    assert str(caught.value).startswith("cache= / store= starts with " + start)
    assert "s3cret" not in str(caught.value)  # the value is not repeated
    with pytest.raises(InvalidRequestError, match=r"^store starts with "):
        check_store_spec(spec)  # what the adapters check at construction
    assert list(tmp_path.iterdir()) == []  # no directory was made


@pytest.mark.parametrize("spec", ["./redis:oops", "redisdata", "C:/data", "memo:ry"])
def test_other_strings_and_paths_stay_directories(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_store_spec(spec)
    store = open_store(spec)
    try:
        assert isinstance(store, DiskStore)
    finally:
        store.close()
    store = open_store(pathlib.Path("redis:") / "oops")  # a Path is a path
    try:
        assert isinstance(store, DiskStore)
    finally:
        store.close()
