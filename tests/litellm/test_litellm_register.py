"""register() / unregister(): idempotent, replaceable, clean at shutdown, clear on bad input."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import litellm
import pytest

import cachesaver_litellm
from cachesaver.errors import InvalidRequestError, PipelineClosedError
from cachesaver_litellm import CostCallback
from cachesaver_litellm._unregistered import Unregistered

from _litellm_helpers import MESSAGES, ns, sample_ids


def cachesaver_entries() -> list:
    """The provider entries holding an engine (the stand-in that names register() holds none)."""
    return [e for e in litellm.custom_provider_map if e["provider"] == "cachesaver"
            and not isinstance(e["custom_handler"], Unregistered)]


def cost_callbacks() -> list:
    return [cb for cb in litellm.callbacks if isinstance(cb, CostCallback)]


async def test_register_is_idempotent(store_path, server, call_kwargs):
    first = cachesaver_litellm.register(store=store_path)
    await litellm.acompletion(metadata=ns("a"), **call_kwargs)
    again = cachesaver_litellm.register(store=store_path)

    assert again is first and len(cachesaver_entries()) == 1 and len(cost_callbacks()) == 1
    # Same handler, same run: the ledger continues instead of replaying.
    assert sample_ids(await litellm.acompletion(metadata=ns("a"), **call_kwargs)) == [2]


async def test_registering_other_settings_replaces_the_engine_cleanly(store_path, server, call_kwargs):
    old = cachesaver_litellm.register(store=store_path, timeout=0.05)
    await litellm.acompletion(metadata=ns("a"), **call_kwargs)
    new = cachesaver_litellm.register(store=store_path, timeout=0.01, namespace="other")

    assert new is not old and old.closed and old.pipeline._closed
    assert cachesaver_entries() == [{"provider": "cachesaver", "custom_handler": new}]
    # The new engine opened the same store: a new run replays the stored sample.
    replay = await litellm.acompletion(metadata=ns("a"), **call_kwargs)
    assert sample_ids(replay) == [1] and server.request_count == 1
    assert cachesaver_litellm.get_pipeline() is new.pipeline


async def test_unregister_removes_the_provider_and_closes_its_run(store_path, call_kwargs):
    handler = cachesaver_litellm.register(store=store_path)
    pipeline = handler.pipeline
    cachesaver_litellm.unregister()

    assert cachesaver_entries() == [] and cost_callbacks() == []
    assert handler.closed and pipeline._closed
    with pytest.raises(PipelineClosedError):  # the handler itself refuses, with the engine's error
        await handler.acompletion(model=call_kwargs["model"], messages=MESSAGES)
    with pytest.raises(litellm.exceptions.BadRequestError, match=r"call cachesaver_litellm\.register"):
        await litellm.acompletion(**call_kwargs)
    with pytest.raises(RuntimeError, match="register"):
        cachesaver_litellm.get_pipeline()
    cachesaver_litellm.unregister()  # idempotent


def test_bad_settings_give_clear_errors(store_path):
    with pytest.raises(InvalidRequestError, match="batch_size"):
        cachesaver_litellm.register(store=store_path, batch_size=0)
    with pytest.raises(InvalidRequestError, match="namespace"):  # as CacheSaverChatModel(namespace="")
        cachesaver_litellm.register(store=store_path, namespace="")
    with pytest.raises(TypeError, match="cache"):
        cachesaver_litellm.register(store=None)
    assert cachesaver_entries() == []  # nothing half-registered


def test_process_exit_without_unregister_is_clean(tmp_path):
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        import litellm, cachesaver_litellm
        from cachesaver.testing.server import FakeOpenAIServer

        server = FakeOpenAIServer(seed=3).start()
        kw = dict(model="cachesaver/openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                  api_base=server.base_url, api_key="sk-test", max_retries=0)
        cachesaver_litellm.register(store=sys.argv[1])
        print(asyncio.run(litellm.acompletion(**kw)).choices[0].message.content)
        cachesaver_litellm.register(store=sys.argv[1], timeout=0.001)   # replace the engine
        print(litellm.completion(n=2, **kw).choices[1].message.content)
        # no unregister(): the atexit hook closes the engine and litellm's clients on our loop
        """
    )
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "store")], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].endswith("[sample 1 of gpt-4o-mini]")  # first run
    assert lines[1].endswith("[sample 2 of gpt-4o-mini]")  # new run: sample 1 replayed, 2 generated
    for noise in ("Warning", "Unclosed", "Task was destroyed", "Exception ignored", "Traceback"):
        assert noise not in done.stderr, done.stderr
