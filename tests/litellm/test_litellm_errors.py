"""Issue 26: a request CacheSaver refuses reaches the litellm user as litellm's own
``BadRequestError`` (status 400) carrying CacheSaver's one-line message, and prints nothing.

Before, litellm's exception mapper turned each into a ``litellm.APIConnectionError`` (status 500)
with the whole traceback inside its message and printed a red "Give Feedback / Get Help" banner;
a ``cachesaver/`` call before ``register()`` got litellm's "LLM Provider NOT provided" and a red
"Provider List" line.
"""
from __future__ import annotations

import litellm
import pytest

import cachesaver_litellm
from cachesaver.errors import InvalidRequestError, InvalidRequestTypeError, OfflineMissError

from _litellm_helpers import MESSAGES, ns

pytestmark = pytest.mark.usefixtures("output_of_this_test_only")

PREFIX = "litellm.BadRequestError: "


@pytest.fixture(autouse=True)
def debug_info_on(monkeypatch):
    monkeypatch.setattr(litellm, "suppress_debug_info", False)  # litellm's default: banners print


def _refused(caught, cause_type) -> str:
    error = caught.value
    assert type(error) is litellm.BadRequestError and error.status_code == 400
    assert isinstance(error.__cause__, cause_type)
    text = str(error)
    assert text.startswith(PREFIX) and "\n" not in text
    return text[len(PREFIX):]


@pytest.mark.parametrize("stream", [False, True])
async def test_invalid_requests_are_bad_requests_with_the_one_line_message(provider, server, call_kwargs,
                                                                           capfd, stream):
    with pytest.raises(litellm.BadRequestError) as caught:
        await litellm.acompletion(n=0, metadata=ns("a"), stream=stream, **call_kwargs)
    assert _refused(caught, InvalidRequestError) == "n must be an int >= 1, got 0"

    with pytest.raises(litellm.BadRequestError) as caught:
        litellm.completion(metadata={"cachesaver_namespace": 5}, stream=stream, **call_kwargs)
    assert _refused(caught, InvalidRequestTypeError) == (
        "metadata['cachesaver_namespace'] must be a non-empty str, "
        "e.g. metadata={'cachesaver_namespace': 'agent-1'}; got int 5")

    with pytest.raises(litellm.BadRequestError) as caught:
        await litellm.acompletion(n=129, metadata=ns("a"), **call_kwargs)
    assert _refused(caught, InvalidRequestError) == (
        "request.n is 129, above the limit of 128 samples per request; ask in several requests, "
        "or raise the limit with max_n= (the pipeline's or the adapter's; CACHESAVER_MAX_N behind the "
        "LiteLLM Proxy)")

    assert server.request_count == 0
    assert capfd.readouterr() == ("", "")  # no banner, no traceback


@pytest.mark.parametrize("stream", [False, True])
async def test_an_offline_miss_is_a_bad_request_naming_the_prompt(store_path, server, call_kwargs, capfd,
                                                                  stream):
    cachesaver_litellm.register(store=store_path, timeout=0.01)
    await litellm.acompletion(metadata=ns("a"), **call_kwargs)
    cachesaver_litellm.register(store=store_path, timeout=0.01, offline=True)
    with pytest.raises(litellm.BadRequestError) as caught:
        response = await litellm.acompletion(n=2, stream=stream, metadata=ns("a"), **call_kwargs)
        [chunk async for chunk in response]  # a stream finds its miss when read
    message = _refused(caught, OfflineMissError)
    assert message.startswith("offline replay: prompt 'Name a colour.' (key ")
    assert "in namespace 'a'" in message and "the model was not called" in message
    # A new run: its 1st and 2nd samples, counted from 1 (issue 26: it said "samples 0..1"), 1 held.
    assert f"asks for samples 1..2, but {store_path} holds 1 sample(s) of this key;" in message
    assert server.request_count == 1
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_before_register_names_register(call_kwargs, capfd, stream):
    cachesaver_litellm.unregister()  # as after `import cachesaver_litellm` alone
    with pytest.raises(litellm.BadRequestError) as caught:
        await litellm.acompletion(stream=stream, metadata=ns("a"), **call_kwargs)
    assert str(caught.value) == (
        PREFIX + "model 'cachesaver/openai/gpt-4o-mini' needs the cachesaver provider, which is not "
        "registered in this process: call cachesaver_litellm.register(store=...) before the first "
        "cachesaver/ call")
    with pytest.raises(litellm.BadRequestError, match=r"cachesaver_litellm\.register\(store=\.\.\.\)"):
        litellm.completion(model="cachesaver/openai/gpt-4o-mini", messages=MESSAGES)
    assert capfd.readouterr() == ("", "")  # no red "Provider List" line
