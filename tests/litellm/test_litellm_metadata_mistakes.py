"""Issue 26: metadata mistakes are not silent.

- a misspelled ``cachesaver_*`` key warns, naming the right key, on every call (a
  ``MetadataKeyWarning``; Python's default shows a warning once per code location);
- ``cachesaver_namespace=`` given as an argument of ``litellm.acompletion`` (litellm puts it
  among the optional params, not in metadata) is the call's namespace, as in metadata.

Before, both calls landed silently in the ``default`` namespace, and the argument was even keyed
(a namespace split the sample list it should share) and sent to the provider.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import litellm
import pytest

from cachesaver.errors import MetadataKeyWarning

from _litellm_helpers import ns, sample_ids


async def test_a_misspelled_key_warns_naming_the_right_key(provider, server, call_kwargs):
    with pytest.warns(MetadataKeyWarning) as caught:
        response = await litellm.acompletion(metadata={"cachesaver_namepsace": "a"}, **call_kwargs)
    assert [str(w.message) for w in caught if w.category is MetadataKeyWarning] == [
        "metadata['cachesaver_namepsace'] is not a CacheSaver key, so CacheSaver ignores it: "
        "did you mean 'cachesaver_namespace'?"]
    assert response._hidden_params["cachesaver"]["namespace"] == "default"
    with pytest.warns(MetadataKeyWarning, match=r"'cachesaver_requestid'.*did you mean 'cachesaver_request_id'"):
        litellm.completion(metadata={**ns("a"), "cachesaver_requestid": "q1"}, **call_kwargs)
    with pytest.warns(MetadataKeyWarning, match=r"'cachesaver_colour'.*CacheSaver reads 'cachesaver_namespace' "
                                                r"and 'cachesaver_request_id'"):
        litellm.completion(metadata={**ns("a"), "cachesaver_colour": "red"}, **call_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetadataKeyWarning)
        await litellm.acompletion(metadata=ns("a", "q2"), **call_kwargs)  # right keys: no warning


def test_the_warning_is_shown_on_every_call_under_default_filters():
    """In a plain process (Python's default filters, not pytest's): three misspelled calls from
    one line give three warnings (the engine's read, which every adapter uses)."""
    script = textwrap.dedent("""
        from cachesaver.runtime import read_identity
        for _ in range(3):
            read_identity({"cachesaver_namepsace": "a"}, default_namespace="default", known_keys=())
    """)
    env = {**os.environ, "PYTHONWARNINGS": "", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("MetadataKeyWarning: metadata['cachesaver_namepsace'] is not a CacheSaver key") == 3


async def test_a_namespace_argument_is_the_calls_namespace(provider, server, call_kwargs):
    first = await litellm.acompletion(cachesaver_namespace="a", **call_kwargs)
    again = await litellm.acompletion(cachesaver_namespace="a", **call_kwargs)
    other = litellm.completion(metadata=ns("b"), **call_kwargs)
    assert [r._hidden_params["cachesaver"]["namespace"] for r in (first, again, other)] == ["a", "a", "b"]
    # One key (the argument is not keyed), so namespace b replays namespace a's first sample.
    assert len({r._hidden_params["cachesaver"]["key"] for r in (first, again, other)}) == 1
    assert [sample_ids(r) for r in (first, again, other)] == [[1], [2], [1]]
    assert server.request_count == 2 and all("cachesaver_namespace" not in body for body in server.requests)

    with pytest.raises(litellm.BadRequestError, match=r"cachesaver_namespace is given twice, 'a' as an argument "
                                                      r"and 'b' in metadata: give it once"):
        await litellm.acompletion(cachesaver_namespace="a", metadata=ns("b"), **call_kwargs)
