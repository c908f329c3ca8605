"""Keys and secrets through the proxy (G7): the virtual key, ``user``, and what the proxy adds
to a request (key alias, team, user ids, headers) never enter the cache key or the store.
Namespaces are not scoped per key: two keys in one namespace share one ledger."""
from __future__ import annotations

import time

import openai
import pytest

from _proxy_helpers import (MASTER_KEY, MODEL, SENTINELS, TEAM_A_KEY, TEAM_B_KEY, USER_SENTINEL, requires_proxy,
                            store_dump, unique_prompt, upstream_requests)

pytestmark = requires_proxy


def _ns(namespace: str) -> dict:
    return {"metadata": {"cachesaver_namespace": namespace}}


def test_two_virtual_keys_share_one_sample_list_and_one_namespace_ledger(proxy, upstream):
    prompt = unique_prompt("keys")
    messages = [{"role": "user", "content": prompt}]
    team_a = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=TEAM_A_KEY, max_retries=0, timeout=60)
    team_b = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=TEAM_B_KEY, max_retries=0, timeout=60)
    with team_a, team_b:
        # the same namespace from two keys and two end users: one ledger, so two fresh samples
        a = team_a.chat.completions.create(model=MODEL, messages=messages, temperature=0.7, user=USER_SENTINEL,
                                           extra_body=_ns("K")).choices[0].message.content
        b = team_b.chat.completions.create(model=MODEL, messages=messages, temperature=0.7, user="another-user",
                                           extra_body=_ns("K")).choices[0].message.content
        assert a != b
        assert len(upstream_requests(upstream, prompt)) == 2
        # another namespace, keys swapped: both replayed in order, for free (one sample list)
        replay = [team_b.chat.completions.create(model=MODEL, messages=messages, temperature=0.7,
                                                 extra_body=_ns("L")).choices[0].message.content,
                  team_a.chat.completions.create(model=MODEL, messages=messages, temperature=0.7, user="x",
                                                 extra_body=_ns("L")).choices[0].message.content]
        assert replay == [a, b]
        assert len(upstream_requests(upstream, prompt)) == 2

        # the proxy did tell the keys apart (its logged metadata), and refuses unknown keys
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            aliases = {r["key_alias"] for r in proxy.records() if r["namespace"] in ("K", "L")}
            if {"team-a", "team-b"} <= aliases:
                break
            time.sleep(0.05)
        assert {"team-a", "team-b"} <= aliases
    with openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key="sk-unknown", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError):
            stranger.chat.completions.create(model=MODEL, messages=messages)


def test_no_key_or_user_reaches_the_store_or_the_logs(fleet, upstream):
    """Runs requests with every secret in play, then searches the whole store and the full
    output of both proxy processes (cachesaver loggers at DEBUG) for them."""
    proxy = fleet.proxies[0]
    prompt = unique_prompt("secrets")
    for key in (MASTER_KEY, TEAM_A_KEY, TEAM_B_KEY):
        with openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=key, max_retries=0, timeout=60) as client:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}],
                                           temperature=0.7, user=USER_SENTINEL, stream=key == TEAM_B_KEY,
                                           extra_body=_ns("secrets"))
    # the upstream key was really used (the proxy sent it upstream), the others never left the proxy
    assert len(upstream_requests(upstream, prompt)) == 3
    dump = store_dump(fleet)
    assert prompt.encode() in dump  # the search below can find what was written
    found = [s for s in SENTINELS if s.encode() in dump]
    assert found == [], f"the store holds {found}"
    for each in fleet.proxies:
        log = each.log_text()
        assert "cachesaver" in log  # the cachesaver loggers did write here
        found = [s for s in SENTINELS if s in log]
        assert found == [], f"{each.name}'s output holds {found}"
