"""G7 where samples leave the machine: ``cachesaver export``, ``bundle create`` and ``bundle
merge`` refuse a request in which the secret scanner (detect-secrets) flags a credential, naming
the key, the JSON path and the detector, never the value; ordinary requests go out unchanged;
``--allow PATH`` lets a flagged path through; ``inspect`` shows a detected value as ``***``.

Real parts: the engine writes each request into a diskcache store in tmp_path (a ``Request``
whose keyed ``params`` field holds what the user passed), the real CLI runs in this process.
"""
from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest

from cachesaver.bundle import read_bundle
from cachesaver.cli import main
from cachesaver.pipelines import OnlineAPI
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request


@dataclass(frozen=True)
class ParamsRequest(Request):
    """A request whose keyed field ``params`` shapes the output (like ``extra_body``)."""

    params: Any = None


def _b64url(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


JWT = (_b64url({"alg": "HS256", "typ": "JWT"}) + "." + _b64url({"sub": "SENTINEL-1234", "iat": 1516239022})
       + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
GROQ = "gsk_SENTINEL7fQ2mZ9xLp4Rt8Vw1Ky6Hn3Bc5Dj0Gs2Ua7Ee9Ii4Oo"
OPENAI = "sk-proj-SENTINELa1b2c3d4e5f6T3BlbkFJq7r8s9t0u1v2w3x4y5z6"
BEARER_TOKEN = "ya29SENTINELa0AfH6SMBx3jLq9vZ7"
HEX_ID = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"   # a trace id: high entropy, not a credential
PROMPT = "Use numbers 4 9 10 13 and basic arithmetic operations (+ - * /) to obtain 24"

#: name -> (prompt, params, JSON path in the canonical request, detector, the secret)
CREDENTIALS = {
    "authToken": (PROMPT, {"extra_body": {"authToken": "q8Vt2LmZ0rXw7KpNc4YhJsE1"}},
                  "$.params.extra_body.authToken", "Credential-named Field", "q8Vt2LmZ0rXw7KpNc4YhJsE1"),
    "idToken": (PROMPT, {"extra_body": {"idToken": "Zk3pQ9wX2mLr8TnV"}},
                "$.params.extra_body.idToken", "Credential-named Field", "Zk3pQ9wX2mLr8TnV"),
    "passphrase": (PROMPT, {"extra_body": {"passphrase": "correct horse battery SENTINEL"}},
                   "$.params.extra_body.passphrase", "Credential-named Field", "correct horse battery SENTINEL"),
    "JWT under a neutral name": (PROMPT, {"extra_body": {"x": JWT}}, "$.params.extra_body.x", "JSON Web Token", JWT),
    "Groq key under key": (PROMPT, {"extra_body": {"key": GROQ}}, "$.params.extra_body.key", "LLM Provider API Key",
                           GROQ),
    "OpenAI key": (PROMPT, {"extra_body": {"openai": OPENAI}}, "$.params.extra_body.openai", "OpenAI Token", OPENAI),
    "Bearer value": (PROMPT, {"extra_headers": {"Authorization": f"Bearer {BEARER_TOKEN}"}},
                     "$.params.extra_headers.Authorization", "Authorization Header Credentials", BEARER_TOKEN),
    "URL user info": (PROMPT, {"api_base": "https://alice:SENTINEL-pw-91c@proxy.example/v1"}, "$.params.api_base",
                      "Basic Auth Credentials", "SENTINEL-pw-91c"),
    "key pasted into the prompt": (f"{PROMPT}. My key: {GROQ}", {"temperature": 0.7}, "$.prompt",
                                   "LLM Provider API Key", GROQ),
}

TOOLS = [
    {"type": "function", "function": {
        "name": "tag", "description": "Token classification helper",
        "parameters": {"type": "object", "properties": {"token": {"type": "string", "enum": ["NOUN", "VERB"]}}}}},
    {"type": "function", "function": {
        "name": "calc", "description": "Basic arithmetic calculator",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}},
]
#: name -> (prompt, params, a string that must reach the output file exactly)
ORDINARY = {
    "tool property named token": (PROMPT, {"tools": TOOLS}, "Token classification helper"),
    "description starting Basic": (PROMPT, {"tools": TOOLS[1:]}, "Basic arithmetic calculator"),
    "stop word sk-learnmodel": (PROMPT, {"stop": ["sk-learnmodel"]}, "sk-learnmodel"),
    "allowed_token_ids": (PROMPT, {"extra_body": {"allowed_token_ids": [1, 2]}}, "allowed_token_ids"),
    "token_budget": (PROMPT, {"token_budget": 100}, "token_budget"),
    "game-24 prompt": ("Game of 24.\n" + PROMPT + "\nInput: 4 9 10 13\nSteps:", {"temperature": 0.7}, PROMPT),
}


def record(directory, prompt, params, *, answers=None) -> str:
    """Run one request through the engine into the disk store at ``directory``; returns the
    consumption file ``bundle create`` takes."""
    path = f"{directory}.consumption.json"

    async def run():
        async with OnlineAPI(model=FakeModel(seed=3, answers=answers), cache=str(directory), model_id="fake/model",
                             timeout=0.001) as p:
            await p.request(ParamsRequest(prompt=prompt, params=params, n=2, namespace="exp"))
            (await p.consumption()).save(path)

    asyncio.run(run())
    return path


def stored_meta(directory) -> tuple[str, dict]:
    from cachesaver.stores import DiskStore

    async def read():
        store = DiskStore(str(directory))
        try:
            keys = [k async for k in store.iter_keys()]
            return keys[0], json.loads(await store.get_meta(keys[0]))
        finally:
            await store.aclose()

    return asyncio.run(read())


@pytest.fixture
def run(capsys):
    """``run(argv) -> (exit status, everything printed)``."""
    def call(argv):
        code = main(argv)
        return code, printed()

    def printed():
        out = capsys.readouterr()
        return out.out + out.err
    call.printed = printed
    return call


@pytest.mark.parametrize("shape", list(CREDENTIALS))
def test_export_and_bundle_refuse_a_credential_naming_the_path_never_the_value(shape, tmp_path, run):
    prompt, params, path, detector, secret = CREDENTIALS[shape]
    cache = tmp_path / "cache"
    consumption = record(cache, prompt, params)
    key, meta = stored_meta(cache)
    assert secret in json.dumps(meta)  # the local store keeps the request verbatim (the key hashes it)

    code, text = run(["export", "--cache", str(cache), str(tmp_path / "out.jsonl")])
    assert code == 1 and text.startswith("cachesaver export: refusing to write the export")
    assert f"key {key}: {path} ({detector})" in text and f"--allow '{path}'" in text
    assert "api_key" in text and secret not in text
    assert not (tmp_path / "out.jsonl").exists()

    code, text = run(["bundle", "create", "--cache", str(cache), "--consumption", consumption,
                      "-o", str(tmp_path / "out.csbundle")])
    assert code == 1 and "refusing to write the bundle" in text
    assert f"key {key}: {path} ({detector})" in text and secret not in text
    assert not (tmp_path / "out.csbundle").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


@pytest.mark.parametrize("shape", list(ORDINARY))
def test_ordinary_requests_are_exported_and_bundled_unchanged(shape, tmp_path, run):
    prompt, params, exact = ORDINARY[shape]
    cache = tmp_path / "cache"
    consumption = record(cache, prompt, params)
    key, meta = stored_meta(cache)
    assert meta["params"] == params and meta["prompt"] == prompt

    code, text = run(["export", "--cache", str(cache), str(tmp_path / "out.jsonl")])
    assert code == 0, text
    exported = (tmp_path / "out.jsonl").read_text()
    assert exact in exported
    line = json.loads(exported.splitlines()[1])
    assert line["key"] == key and json.loads(line["meta"]) == meta

    code, text = run(["bundle", "create", "--cache", str(cache), "--consumption", consumption,
                      "-o", str(tmp_path / "out.csbundle")])
    assert code == 0, text
    assert json.loads(read_bundle(tmp_path / "out.csbundle").metas[key]) == meta


def test_allow_lets_a_flagged_path_through_and_only_that_path(tmp_path, run):
    cache = tmp_path / "cache"
    consumption = record(cache, PROMPT, {"extra_body": {"session_hint": HEX_ID}})
    out, bundle = str(tmp_path / "out.jsonl"), str(tmp_path / "out.csbundle")
    path = "$.params.extra_body.session_hint"
    code, text = run(["export", "--cache", str(cache), out])
    assert code == 1 and f"{path} (Hex High Entropy String)" in text
    code, text = run(["export", "--cache", str(cache), out, "--allow", "$.params.extra_body.other"])
    assert code == 1 and path in text
    for allow in ([path], ["$.params.*.session_hint"], ["$.params.extra_body", "$.prompt"]):
        flags = [arg for pattern in allow for arg in ("--allow", pattern)]
        code, text = run(["export", "--cache", str(cache), out, *flags])
        assert code == 0, text
        assert HEX_ID in open(out).read()
        code, text = run(["bundle", "create", "--cache", str(cache), "--consumption", consumption, "-o", bundle, *flags])
        assert code == 0, text
    assert HEX_ID in next(iter(read_bundle(bundle).metas.values())).decode()


def test_a_pattern_that_is_not_a_path_is_a_clear_error(tmp_path, run):
    cache = tmp_path / "cache"
    record(cache, PROMPT, {"temperature": 0.5})
    with pytest.raises(SystemExit) as exited:
        run(["export", "--cache", str(cache), str(tmp_path / "out.jsonl"), "--allow", "session_hint"])
    assert exited.value.code == 2
    assert "--allow: 'session_hint' is not a JSON path" in run.printed()
    assert not (tmp_path / "out.jsonl").exists()


def test_bundle_merge_refuses_a_flagged_bundle_unless_allowed(tmp_path, run):
    """A bundle made elsewhere (another tool, an older version) is scanned again when merged."""
    import hashlib

    import orjson

    from cachesaver.bundle import Consumption
    from cachesaver.bundle.format import BundleContents, encode_bundle

    meta = orjson.dumps({"model": "fake/model", "params": {"extra_body": {"authToken": "q8Vt2LmZ0rXw7KpNc4YhJsE1"}},
                         "prompt": PROMPT}, option=orjson.OPT_SORT_KEYS)
    key = hashlib.sha256(meta).hexdigest()
    crafted = BundleContents({key: [b'{"d":"x","u":[1,1,0.1]}']}, {key: meta}, Consumption({"ns": {key: 1}}))
    (tmp_path / "crafted.csbundle").write_bytes(encode_bundle(crafted))
    out = str(tmp_path / "merged.csbundle")
    code, text = run(["bundle", "merge", str(tmp_path / "crafted.csbundle"), "-o", out])
    assert code == 1 and f"key {key}: $.params.extra_body.authToken (Credential-named Field)" in text
    assert "q8Vt2LmZ0rXw7KpNc4YhJsE1" not in text and not (tmp_path / "merged.csbundle").exists()
    code, text = run(["bundle", "merge", str(tmp_path / "crafted.csbundle"), "-o", out,
                      "--allow", "$.params.extra_body.authToken"])
    assert code == 0, text


def test_inspect_shows_detected_values_as_stars_in_text_and_json(tmp_path, run):
    """The request (prompt and parameters) and samples that echo it keep everything but the
    detected values."""
    cache = tmp_path / "cache"
    prompt = f"Summarise this config.\nkey = {GROQ}\nregion = eu-west"
    params = {"extra_body": {"x": JWT}, "api_base": "https://alice:SENTINEL-pw-91c@proxy.example/v1"}
    record(cache, {"text": prompt, "params": params}, None, answers=[f"Your key {GROQ} is a Groq key."])
    secrets = (GROQ, JWT, JWT.rsplit(".", 1)[1], "SENTINEL-pw-91c")
    key, _ = stored_meta(cache)

    code, text = run(["inspect", "--cache", str(cache), key[:12], "--full"])
    assert code == 0, text
    assert not any(s in text for s in secrets)
    assert "key = ***" in text and "region = eu-west" in text and "Summarise this config." in text
    assert "https://alice:***@proxy.example/v1" in text and "#1 Your key *** is a Groq key." in text

    code, text = run(["inspect", "--cache", str(cache), key[:12], "--json"])
    assert code == 0, text
    assert not any(s in text for s in secrets)
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and all(line["text"].startswith("Your key *** is a Groq key.") for line in lines)

    code, text = run(["inspect", "--cache", str(cache), "--prompt", "Summarise", "--json"])
    assert code == 0 and not any(s in text for s in secrets) and "Your key ***" in text
    # Two matching keys: the listing masks too.
    record(cache, {"text": prompt + "!", "params": params}, None)
    code, text = run(["inspect", "--cache", str(cache), "--prompt", "Summarise"])
    assert code == 0 and "2 keys match" in text and not any(s in text for s in secrets)
    assert "key = ***" in text
    code, text = run(["inspect", "--cache", str(cache), "--prompt", "Summarise", "--json"])
    assert code == 0 and len(text.splitlines()) == 2 and not any(s in text for s in secrets)
    assert all("key = ***" in json.loads(line)["prompt"] for line in text.splitlines())


def test_stats_detail_masks_detected_values_and_names_the_model(tmp_path, run):
    """``stats --detail`` prints prompt previews: a credential in a prompt shows as ``***``."""
    cache = tmp_path / "cache"
    record(cache, {"text": f"key = {GROQ} please", "params": {}}, None)
    code, text = run(["stats", "--cache", str(cache), "--detail"])
    assert code == 0, text
    assert GROQ not in text and "key = ***" in text


def test_the_cli_names_the_model_an_engine_pipeline_keyed(tmp_path, run):
    import asyncio

    from cachesaver import OnlineAPI, Request
    from cachesaver.testing import FakeModel

    class Named(FakeModel):
        model_id = "provider/named-model"

    async def write():
        async with OnlineAPI(model=Named(), cache=str(tmp_path / "cache"), timeout=0) as pipeline:
            await pipeline.request(Request("Which model?"))

    asyncio.run(write())
    code, text = run(["inspect", "--cache", str(tmp_path / "cache"), "--prompt", "Which model?"])
    assert code == 0 and "model provider/named-model" in text, text
    code, text = run(["stats", "--cache", str(tmp_path / "cache"), "--detail"])
    assert code == 0 and "provider/named-model" in text, text
