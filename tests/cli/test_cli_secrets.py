"""G7 at the CLI: a store URL's password, username token or ``?password=`` never appears in
anything the ``cachesaver`` command prints or logs, nor in ``RedisStore.location``, its repr or a
``StoreError``: on success (a private password-protected Redis) and on every error path."""
from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time

import pytest

redis_sync = pytest.importorskip("redis")

from cachesaver.cli import main  # noqa: E402
from cachesaver.errors import CacheSaverError, StoreError  # noqa: E402
from cachesaver.stores.redis import RedisStore  # noqa: E402
from cachesaver.stores.urls import redact_url  # noqa: E402

SENTINEL = "SENTINEL-PW-7c1e9a"


def forms(host: str) -> dict[str, str]:
    """Every way a URL carries the secret: password, user + password, token user, query."""
    return {
        "password": f"redis://:{SENTINEL}@{host}/0",
        "user and password": f"redis://alice:{SENTINEL}@{host}/0?prefix=p1",
        "token as user": f"redis://{SENTINEL}@{host}/0",
        "query password": f"redis://{host}/0?prefix=p1&password={SENTINEL}",
        "query password, TLS": f"rediss://{host}/0?password={SENTINEL}&socket_timeout=1",
        "percent-encoded": f"redis://:{SENTINEL}%40x@{host}/0",
        "unencoded @ and /": f"redis://:{SENTINEL}/@x@{host}/0",
    }


@pytest.mark.parametrize("form", list(forms("h:1")))
def test_redaction_hides_the_secret_and_keeps_the_rest(form):
    url = forms("example.com:6380")[form]
    shown = redact_url(url)
    assert SENTINEL not in shown and "***" in shown
    assert "example.com:6380/0" in shown and shown.split("://")[0] == url.split("://")[0]
    if "prefix=p1" in url:
        assert "prefix=p1" in shown  # the harmless options stay readable
    if form == "user and password":
        assert shown == "redis://alice:***@example.com:6380/0?prefix=p1"


def test_credential_like_query_parameters_are_hidden():
    url = f"redis://h/0?token={SENTINEL}&api_key={SENTINEL}&Secret={SENTINEL}&auth={SENTINEL}&db=2"
    assert redact_url(url) == "redis://h/0?token=***&api_key=***&Secret=***&auth=***&db=2"


def test_an_unparsable_url_is_a_clear_error_without_the_secret():
    from cachesaver.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="percent-encode") as caught:
        RedisStore(forms("127.0.0.1:6379")["unencoded @ and /"])
    assert SENTINEL not in str(caught.value) and caught.value.__cause__ is None


def test_what_is_not_a_secret_is_left_alone():
    for text in ("./.cachesaver", "/tmp/a@b/cache", "redis://127.0.0.1:6379/0?prefix=x&socket_timeout=2",
                 "memory"):
        assert redact_url(text) == text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def everything(capsys, caplog):
    """All the CLI printed and logged so far (every logger, every level)."""
    caplog.set_level(logging.DEBUG)

    def read() -> str:
        out = capsys.readouterr()
        return out.out + out.err + caplog.text + "".join(str(r.args) for r in caplog.records)
    return read


CONNECTABLE = [f for f in forms("h:1") if f != "unencoded @ and /"]


@pytest.mark.parametrize("form", CONNECTABLE)
def test_store_location_repr_and_errors_hide_the_secret(form, everything):
    url = forms(f"127.0.0.1:{closed_port()}")[form]
    store = RedisStore(url, socket_timeout=0.5, connect_timeout=0.5, retries=0)
    assert SENTINEL not in store.location and SENTINEL not in repr(store)

    async def fail():
        try:
            await store.length("k")
        finally:
            await store.aclose()

    with pytest.raises(StoreError) as caught:
        asyncio.run(fail())
    assert SENTINEL not in str(caught.value) and store.location in str(caught.value)
    assert SENTINEL not in everything()


@pytest.mark.parametrize("form", list(forms("h:1")))
def test_cli_error_paths_print_no_secret(form, everything):
    url = forms(f"127.0.0.1:{closed_port()}")[form] + ("&" if "?" in forms("h:1")[form] else "?") + "retries=0"
    for command in (["stats"], ["clear", "--yes"], ["inspect", "abc"], ["inspect", "--prompt", "x", "--json"]):
        try:
            code = main([command[0], "--cache", url, *command[1:]])
        except CacheSaverError as exc:  # however the top level reports it, the text is clean
            code, text = 1, str(exc)
            assert SENTINEL not in text
        assert code != 0
        assert SENTINEL not in everything()


@pytest.fixture
def protected_redis(tmp_path):
    """A private redis-server that requires the sentinel as its password (we start and stop it)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not found")
    port = closed_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", SENTINEL],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis_sync.Redis(port=port, password=SENTINEL, socket_connect_timeout=0.5) as r:
                    r.ping()
                break
            except redis_sync.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)


def test_cli_success_paths_print_no_secret(protected_redis, everything):
    for url in (f"redis://:{SENTINEL}@{protected_redis}/0", f"redis://{protected_redis}/0?password={SENTINEL}"):
        store = RedisStore(url)

        async def fill():
            try:
                await store.append("k1", [b'{"d":"an answer","u":[1,2,0.0]}'], meta=b'{"prompt":"a question"}')
            finally:
                await store.aclose()

        asyncio.run(fill())
        assert main(["stats", "--cache", url, "--detail", "--by-run"]) == 0
        assert main(["inspect", "--cache", url, "--prompt", "question"]) == 0
        assert main(["inspect", "--cache", url, "--prompt", "question", "--json"]) == 0
        assert main(["clear", "--cache", url, "--yes"]) == 0
        text = everything()
        assert "1 keys, 1 samples" in text and "#1 an answer" in text and f"{protected_redis}/0" in text
        assert "cleared redis://" in text and "***" in text
        assert SENTINEL not in text
