"""An upstream failure through the proxy (G5): the waiting clients get an HTTP error, nothing is
stored, nobody else is disturbed, and the next attempt calls the upstream again."""
from __future__ import annotations

import asyncio

import openai
import pytest

from _proxy_helpers import MODEL, requires_proxy, store_dump, unique_prompt, upstream_requests

pytestmark = requires_proxy


def _ns(namespace: str) -> dict:
    return {"metadata": {"cachesaver_namespace": namespace}}


async def test_an_upstream_500_reaches_exactly_the_waiting_clients_and_stores_nothing(aclient, upstream, fleet):
    prompt, other = unique_prompt("fails"), unique_prompt("survives")

    async def ask(text: str, namespace: str):
        response = await aclient.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": text}], temperature=0.7, extra_body=_ns(namespace))
        return response.choices[0].message.content

    stored_other = await ask(other, "X")  # stored before the failure: its replay never goes upstream
    upstream.fail_next(500)
    results = await asyncio.gather(ask(prompt, "E"), ask(prompt, "E"), ask(prompt, "E"), ask(other, "Y"),
                                   return_exceptions=True)

    # the three clients waiting on the one merged call get an HTTP 5xx error; the replay does not
    for result in results[:3]:
        assert isinstance(result, openai.APIStatusError), result
        assert result.status_code >= 500
    assert results[3] == stored_other
    sent = upstream_requests(upstream, prompt)
    assert len(sent) == 1 and sent[0]["n"] == 3

    # nothing of the failed call was stored (the prompt of a stored call is in the store)
    dump = store_dump(fleet)
    assert other.encode() in dump
    assert prompt.encode() not in dump

    # the retry calls the upstream again and gets E's first sample, which F then replays for free
    first = await ask(prompt, "E")
    assert len(upstream_requests(upstream, prompt)) == 2
    assert await ask(prompt, "F") == first
    assert len(upstream_requests(upstream, prompt)) == 2
    assert prompt.encode() in store_dump(fleet)
