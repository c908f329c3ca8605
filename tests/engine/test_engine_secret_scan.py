"""The secret scanner (G7): detect-secrets, used as a library, decides what may not leave the
machine inside a canonical request; by the value, never by a name alone.

Each credential shape is caught at its JSON path with the detector's name, and never appears in
a finding, a refusal message or a ``repr``; ordinary request content (tool schemas, descriptions,
stop words, token counts, game-24 prompts) is not flagged; ``allow=`` lets a path through.
"""
from __future__ import annotations

import base64
import json
import socket
import time

import pytest

from cachesaver.secrets import (Finding, KeyFinding, find_secrets, find_secrets_in_meta, find_secrets_in_metas,
                                mask_secrets, masker_for, refusal_message, url_without_userinfo)


def _b64url(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


JWT = (_b64url({"alg": "HS256", "typ": "JWT"}) + "." + _b64url({"sub": "SENTINEL-1234", "iat": 1516239022})
       + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
AUTH_TOKEN = "q8Vt2LmZ0rXw7KpNc4YhJsE1"
SHORT_TOKEN = "Zk3pQ9wX2mLr8TnV"          # 16 characters: below detect-secrets' entropy limit
GROQ = "gsk_SENTINEL7fQ2mZ9xLp4Rt8Vw1Ky6Hn3Bc5Dj0Gs2Ua7Ee9Ii4Oo"
OPENAI = "sk-proj-SENTINELa1b2c3d4e5f6T3BlbkFJq7r8s9t0u1v2w3x4y5z6"
COMPATIBLE = "sk-or-v1-SENTINEL0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6"   # an OpenAI-compatible provider's key
BEARER_TOKEN = "ya29SENTINELa0AfH6SMBx3jLq9vZ7"
BASIC = base64.b64encode(b"alice:SENTINEL-pw").decode()
HEX_ID = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"

#: name -> (request, path, detector, the secret text that must never be shown)
CREDENTIALS = {
    "camelCase authToken": ({"extra_body": {"authToken": AUTH_TOKEN}}, "$.extra_body.authToken",
                            "Credential-named Field", AUTH_TOKEN),
    "camelCase idToken, 16 characters": ({"extra_body": {"idToken": SHORT_TOKEN}}, "$.extra_body.idToken",
                                         "Credential-named Field", SHORT_TOKEN),
    "passphrase": ({"extra_body": {"passphrase": "correct horse battery SENTINEL"}}, "$.extra_body.passphrase",
                   "Credential-named Field", "correct horse battery SENTINEL"),
    "password (detect-secrets keyword)": ({"extra_body": {"password": "hunter2-SENTINEL"}}, "$.extra_body.password",
                                          "Secret Keyword", "hunter2-SENTINEL"),
    "JWT under a neutral name": ({"extra_body": {"x": JWT}}, "$.extra_body.x", "JSON Web Token", JWT),
    "Groq key under key": ({"extra_body": {"key": GROQ}}, "$.extra_body.key", "LLM Provider API Key", GROQ),
    "OpenAI key": ({"extra_body": {"x": OPENAI}}, "$.extra_body.x", "OpenAI Token", OPENAI),
    "OpenAI-compatible sk- key": ({"extra_body": {"x": COMPATIBLE}}, "$.extra_body.x", "LLM Provider API Key",
                                  COMPATIBLE),
    "Bearer value": ({"extra_headers": {"Authorization": f"Bearer {BEARER_TOKEN}"}},
                     "$.extra_headers.Authorization", "Authorization Header Credentials", BEARER_TOKEN),
    "Basic value": ({"extra_body": {"auth": f"Basic {BASIC}"}}, "$.extra_body.auth",
                    "Authorization Header Credentials", BASIC),
    "URL user info": ({"api_base": "https://alice:SENTINEL-pw-91c@proxy.example/v1"}, "$.api_base",
                      "Basic Auth Credentials", "SENTINEL-pw-91c"),
    "key pasted into a prompt": ({"messages": [{"role": "user", "content": f"Summarise.\nMy key is {GROQ}, thanks"}]},
                                 "$.messages[0].content", "LLM Provider API Key", GROQ),
    "key in a line of pasted code": ({"messages": [{"role": "user", "content": f"Why?\nclient = OpenAI(api_key='{OPENAI}')"}]},
                                     "$.messages[0].content", "OpenAI Token", OPENAI),
    "key in a stop list": ({"stop": ["\n", GROQ]}, "$.stop[1]", "LLM Provider API Key", GROQ),
    "key in a name that needs quoting": ({"extra_body": {"my.key": GROQ}}, '$.extra_body["my.key"]',
                                         "LLM Provider API Key", GROQ),
}

GAME24 = ("Use numbers 4 9 10 13 and basic arithmetic operations (+ - * /) to obtain 24. Each step, you are "
          "only allowed to choose two of the remaining numbers to obtain a new number.\nInput: 4 4 6 8\n"
          "Steps:\n4 + 8 = 12 (left: 4 6 12)\n6 - 4 = 2 (left: 2 12)\n2 * 12 = 24 (left: 24)\n"
          "Answer: (6 - 4) * (4 + 8) = 24\nInput: 4 9 10 13\nSteps:")
TOOLS = [
    {"type": "function", "function": {
        "name": "tag", "description": "Token classification helper",
        "parameters": {"type": "object", "properties": {"token": {"type": "string", "enum": ["NOUN", "VERB"]}},
                       "required": ["token"]}}},
    {"type": "function", "function": {
        "name": "calc", "description": "Basic arithmetic calculator",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}},
]
#: Ordinary output-shaping content: never flagged.
ORDINARY = {
    "tool schemas": {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "tag"}}},
    "descriptions": {"description": "Basic arithmetic calculator", "summary": "Token classification helper"},
    "stop word that starts like a key": {"stop": ["sk-learnmodel"]},
    "token ids": {"extra_body": {"allowed_token_ids": [1, 2]}},
    "token budget": {"token_budget": 100, "max_tokens": 256, "max_completion_tokens": 512},
    "game-24 prompt": {"messages": [{"role": "system", "content": "You are a careful solver."},
                                    {"role": "user", "content": GAME24}]},
    "talk about credentials": {"prompt": "Bearer tokens look like `Bearer abc`; Basic auth sends user:password."},
    "a short word under a token name": {"extra_body": {"token": "NOUN", "eos_token": "<|im_end|>",
                                                       "tokenizer": "meta-llama/Llama-3.1-8B-Instruct"}},
    "credential names holding no string": {"password": None, "api_key": 12345678, "secret": True,
                                           "authToken": {"type": "string"}, "token": [1, 2, 3]},
    "model names and URLs": {"model": "openai/gpt-4o-mini-2024-07-18", "api_base": "http://127.0.0.1:8000/v1",
                             "response_format": {"type": "json_schema", "json_schema": {"name": "answer"}}},
    "a UUID": {"extra_body": {"conversation": "123e4567-e89b-12d3-a456-426614174000"}},
    "a thinking block's signature": {"messages": [{"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Simple greeting.",
         "signature": "ErUBCkYICBgCIkDCTQUXPc3O7nHXd302Zercaz8WrrpddpOqHITxBih5zeFPoJkwKBvkvZ8ID1aAfJftji6+ZI5gBYDo"},
        {"type": "text", "text": "Hello"}]}]},
}


@pytest.mark.parametrize("shape", list(CREDENTIALS))
def test_each_credential_shape_is_found_at_its_path(shape):
    request, path, detector, secret = CREDENTIALS[shape]
    found = find_secrets({"model": "m", "params": request})
    assert Finding("$.params" + path[1:], detector) in found
    assert all(f.path == "$.params" + path[1:] for f in found)
    assert secret not in repr(found)


@pytest.mark.parametrize("shape", list(ORDINARY))
def test_ordinary_content_is_not_flagged(shape):
    assert find_secrets({"model": "m", "params": ORDINARY[shape]}) == []


def test_a_thinking_signature_is_still_scanned_for_key_formats():
    """Only the randomness detectors are skipped on encrypted model state, not key formats."""
    block = {"type": "thinking", "thinking": "...", "signature": GROQ}
    assert find_secrets({"messages": [{"content": [block]}]}) == [
        Finding("$.messages[0].content[0].signature", "LLM Provider API Key")]


def test_a_stored_meta_is_scanned_as_bytes():
    meta = json.dumps({"params": {"extra_body": {"authToken": AUTH_TOKEN}}}).encode()
    assert [f.path for f in find_secrets_in_meta(meta)] == ["$.params.extra_body.authToken"] * 2
    assert find_secrets_in_meta(None) == []
    # Bytes that are not JSON (another tool wrote them) are scanned as text, not skipped.
    assert find_secrets_in_meta(f"not json {GROQ}".encode()) == [Finding("$", "LLM Provider API Key")]


@pytest.mark.parametrize("pattern", [
    "$.params.extra_body.session_hint",        # the exact path
    "$.params.*.session_hint",                 # * stands for one step
    "$.params.extra_body",                     # an ancestor allows what it holds
    "$.**.session_hint",                       # ** for anything
])
def test_allow_lets_a_path_through_and_only_that_path(pattern):
    request = {"params": {"extra_body": {"session_hint": HEX_ID}}, "other": {"session_hint": HEX_ID}}
    assert {f.path for f in find_secrets(request)} == {"$.params.extra_body.session_hint", "$.other.session_hint"}
    left = {f.path for f in find_secrets(request, allow=[pattern])}
    assert "$.params.extra_body.session_hint" not in left
    if pattern != "$.**.session_hint":
        assert left == {"$.other.session_hint"}


def test_allow_patterns_are_not_character_classes_and_must_be_paths():
    request = {"messages": [{"content": f"key {GROQ}"}, {"content": f"key {GROQ}"}]}
    assert [f.path for f in find_secrets(request, allow=["$.messages[0].content"])] == ["$.messages[1].content"]
    assert find_secrets(request, allow=["$.messages[*].content"]) == []
    assert find_secrets({"ab": GROQ}, allow=["$.a"]) != []  # a prefix of a name is not its ancestor
    with pytest.raises(ValueError, match="not a JSON path"):
        find_secrets(request, allow=["messages"])


def test_masking_hides_each_detected_value_and_keeps_the_rest():
    request = {"prompt": f"Summarise.\nMy key is {GROQ}, thanks", "params": {
        "extra_body": {"x": JWT, "authToken": AUTH_TOKEN, "n": 3}, "api_base": "https://alice:pw-SENTINEL@h/v1",
        "extra_headers": {"Authorization": f"Bearer {BEARER_TOKEN}"}}}
    masked = mask_secrets(request)
    text = json.dumps(masked)
    for secret in (GROQ, JWT, AUTH_TOKEN, "pw-SENTINEL", BEARER_TOKEN, JWT.rsplit(".", 1)[1]):
        assert secret not in text
    assert masked["prompt"] == "Summarise.\nMy key is ***, thanks"
    assert masked["params"]["extra_body"] == {"x": "***", "authToken": "***", "n": 3}
    assert masked["params"]["api_base"] == "https://alice:***@h/v1"
    assert masked["params"]["extra_headers"] == {"Authorization": "Bearer ***"}
    assert mask_secrets(ORDINARY["tool schemas"]) == ORDINARY["tool schemas"]
    # The same masker hides the values where they are echoed (a sample quoting the prompt).
    masker = masker_for(request)
    assert masker({"d": f"You said {GROQ}."}) == {"d": "You said ***."}
    assert GROQ not in repr(masker) and repr(masker) == "Masker(hides=5)"


def test_refusal_message_names_key_path_detector_and_fix_never_the_value():
    findings = find_secrets_in_metas([
        ("k" * 64, json.dumps({"params": {"extra_body": {"authToken": AUTH_TOKEN}}}).encode()),
        ("a" * 64, json.dumps({"prompt": "nothing here"}).encode()),
        ("b" * 64, None),
    ])
    assert findings and all(isinstance(f, KeyFinding) and f.key == "k" * 64 for f in findings)
    message = refusal_message(findings, "the export")
    assert f"key {'k' * 64}: $.params.extra_body.authToken" in message
    assert "Credential-named Field" in message and "header / api_key / a transport field" in message
    assert "--allow '$.params.extra_body.authToken'" in message
    assert AUTH_TOKEN not in message and AUTH_TOKEN not in repr(findings)


def test_scanning_makes_no_network_call_and_leaves_detect_secrets_settings_alone(monkeypatch):
    from detect_secrets.settings import get_settings

    before = get_settings().json()

    def refuse(*args, **kwargs):
        raise AssertionError("the secret scan opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for request, *_ in CREDENTIALS.values():
        assert find_secrets(request)
    assert get_settings().json() == before


def test_a_long_prompt_is_scanned_in_linear_time_and_a_key_at_a_window_edge_is_found():
    words = ("alpha beta gamma delta 4 9 10 13 (+ - * /) obtain 24 " * 40_000)  # ~2 MB, one line
    for at in (0, 4096 - 20, 3584 + 7, len(words) // 2, len(words)):
        text = words[:at] + f" {GROQ} " + words[at:]
        started = time.perf_counter()
        assert find_secrets({"prompt": text}) == [Finding("$.prompt", "LLM Provider API Key")]
        assert time.perf_counter() - started < 30


def test_the_custom_detectors_are_detect_secrets_plugins():
    from detect_secrets.plugins.base import RegexBasedDetector

    from cachesaver._secret_plugins import CUSTOM_PLUGINS

    assert CUSTOM_PLUGINS and all(issubclass(cls, RegexBasedDetector) for cls in CUSTOM_PLUGINS)


def test_url_without_userinfo_is_kept_for_the_adapters():
    assert url_without_userinfo("https://user:pass@host/v1") == "https://host/v1"
    assert url_without_userinfo("https://host/v1") == "https://host/v1"


def test_export_jsonl_refuses_before_writing_a_byte_and_allow_lets_it_through(tmp_path):
    """The API under ``cachesaver export``: even into an open file, nothing is written before
    the scan; the error carries the findings (key, path, detector), never the value."""
    import asyncio
    import io

    from cachesaver import OnlineAPI, Request
    from cachesaver.errors import BundleError, BundleSecretError, SecretFoundError
    from cachesaver.testing import FakeModel
    from cachesaver.transfer import export_jsonl

    assert issubclass(BundleSecretError, BundleError) and issubclass(BundleSecretError, SecretFoundError)

    async def main():
        async with OnlineAPI(model=FakeModel(), cache=str(tmp_path / "c"), model_id="fake/model", timeout=0.001) as p:
            await p.request(Request(prompt="plain question", n=1))
            await p.request(Request(prompt=f"question with {GROQ}", n=1))
        sink = io.BytesIO()
        with pytest.raises(SecretFoundError) as caught:
            await export_jsonl(str(tmp_path / "c"), sink)
        assert sink.getvalue() == b""
        (found,) = caught.value.findings
        assert (found.path, found.detector) == ("$.prompt", "LLM Provider API Key") and len(found.key) == 64
        assert GROQ not in str(caught.value) and GROQ not in repr(caught.value.findings)
        report = await export_jsonl(str(tmp_path / "c"), sink, allow=["$.prompt"])
        assert report.keys == 2 and GROQ in sink.getvalue().decode()
        # Exporting only the keys without a credential needs no allow.
        clean = io.BytesIO()
        others = [k for k in (await _keys(tmp_path / "c")) if k != found.key]
        assert (await export_jsonl(str(tmp_path / "c"), clean, keys=others)).keys == 1

    async def _keys(path):
        from cachesaver.opening import open_store

        store = open_store(str(path))
        try:
            return [k async for k in store.iter_keys()]
        finally:
            await store.aclose()

    asyncio.run(main())
