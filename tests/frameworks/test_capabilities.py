"""``cachesaver/<model>`` reports exactly what ``<model>`` reports (issue 13, item 2).

Checked through litellm's own public lookups, the ones frameworks switch features on.
"""
from __future__ import annotations

import litellm
import pytest

import cachesaver_litellm
from cachesaver_litellm import _capabilities

# Models with different answers, so a mirror of the wrong row cannot pass.
INNER_MODELS = [
    "openai/gpt-4o-mini",         # tools, schema, vision
    "gpt-4o-mini",                # the bare spelling of the same row
    "openai/gpt-3.5-turbo",       # tools, no schema, no vision
    "deepseek/deepseek-chat",     # a key that already carries its provider
    "mistral/mistral-small-latest",
]
CAPABILITIES = ("supports_function_calling", "supports_response_schema", "supports_vision",
                "supports_reasoning", "supports_parallel_function_calling", "supports_pdf_input")
# Fields that name the entry itself, not the model it describes.
OWN_FIELDS = {"key", "litellm_provider", "supported_openai_params"}


@pytest.fixture(autouse=True)
def no_mirrors_yet():
    """Each test starts from litellm's own map: no cachesaver/ rows left by an earlier test."""
    def drop():
        for name in list(_capabilities._mirrored):
            litellm.model_cost.pop(name, None)
        _capabilities._mirrored.clear()
        _capabilities._exact.clear()
        _capabilities._last_pass = None
        _capabilities._invalidate_lookups()

    drop()
    yield
    drop()


def test_without_register_the_outer_name_knows_nothing():
    """The state item 2 starts from (also shows the fixture above leaves no mirror behind)."""
    outer = "cachesaver/openai/gpt-4o-mini"
    assert litellm.supports_function_calling(model=outer) is False
    assert litellm.supports_response_schema(model=outer) is False
    assert report(outer)["info"] == "ModelNotMappedError"


def report(model: str) -> dict:
    """Everything litellm says about a model name, errors included (by type)."""
    out = {name: getattr(litellm, name)(model=model) for name in CAPABILITIES}
    try:
        info = dict(litellm.get_model_info(model))
        out["info"] = {k: v for k, v in info.items() if k not in OWN_FIELDS}
    except Exception as exc:  # litellm's "not mapped" errors
        out["info"] = type(exc).__name__
    try:
        out["cost_per_token"] = litellm.cost_per_token(model=model, prompt_tokens=1000, completion_tokens=500)
    except Exception as exc:
        out["cost_per_token"] = type(exc).__name__
    return out


@pytest.mark.parametrize("inner", INNER_MODELS)
def test_outer_name_reports_what_the_inner_model_reports(provider, inner):
    """Exact after mirror_model() (what the DSPy helper does for its model)."""
    outer = "cachesaver/" + inner
    expected = report(inner)
    assert isinstance(expected["info"], dict), f"{inner} must be in litellm's bundled cost map"
    assert cachesaver_litellm.mirror_model(outer) is True
    assert report(outer) == expected


@pytest.mark.parametrize("inner", INNER_MODELS)
def test_after_register_alone_capabilities_and_prices_match(provider, inner):
    """register() alone mirrors the raw rows: every capability and price already matches."""
    outer = "cachesaver/" + inner
    expected, got = report(inner), report(outer)
    assert {k: v for k, v in got.items() if k != "info"} == {k: v for k, v in expected.items() if k != "info"}
    for field in ("input_cost_per_token", "output_cost_per_token", "max_input_tokens", "max_output_tokens",
                  "mode", "supports_function_calling", "supports_response_schema", "supports_vision"):
        assert got["info"][field] == expected["info"][field], field


def test_gpt_4o_mini_switches_on_features_frameworks_look_for(provider):
    outer = "cachesaver/openai/gpt-4o-mini"
    assert litellm.supports_function_calling(model=outer) is True
    assert litellm.supports_response_schema(model=outer) is True
    assert litellm.supports_vision(model=outer) is True
    info = litellm.get_model_info(outer)
    assert info["key"] == outer and info["litellm_provider"] == "cachesaver"
    inner_cost = litellm.cost_per_token(model="openai/gpt-4o-mini", prompt_tokens=10, completion_tokens=5)
    assert litellm.cost_per_token(model=outer, prompt_tokens=10, completion_tokens=5) == inner_cost
    assert inner_cost[0] > 0 and inner_cost[1] > 0


def test_unknown_inner_model_stays_unknown(provider):
    inner, outer = "openai/no-such-model-xyz", "cachesaver/openai/no-such-model-xyz"
    assert report(outer) == report(inner)
    assert report(outer)["info"] == "ModelNotMappedError"
    assert cachesaver_litellm.mirror_model(outer) is False
    assert outer not in litellm.model_cost


def test_model_registered_after_register_is_mirrored_on_demand(provider):
    """A user's own model (register_model after register()) is mirrored by mirror_model()."""
    row = {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2e-6,
           "output_cost_per_token": 8e-6, "supports_function_calling": True,
           "supports_response_schema": False, "max_input_tokens": 4096, "max_output_tokens": 1024}
    try:
        litellm.register_model({"cs-test-local-model": row}, persist_across_reloads=False)
        outer = "cachesaver/openai/cs-test-local-model"
        assert litellm.supports_function_calling(model=outer) is False  # not mirrored yet
        assert cachesaver_litellm.mirror_model(outer) is True
        assert report(outer) == report("openai/cs-test-local-model")
        assert litellm.supports_function_calling(model=outer) is True
        assert litellm.cost_per_token(model=outer, prompt_tokens=1, completion_tokens=1) == (2e-6, 8e-6)
    finally:
        for name in ("cs-test-local-model", "cachesaver/openai/cs-test-local-model",
                     "cachesaver/cs-test-local-model"):
            litellm.model_cost.pop(name, None)
            _capabilities._mirrored.pop(name, None)


def test_a_users_own_row_under_a_cachesaver_name_is_kept(store_path):
    outer = "cachesaver/openai/gpt-4o-mini"
    saved = litellm.model_cost.pop(outer, None)
    mirrored = _capabilities._mirrored.pop(outer, None)
    try:
        own = {"litellm_provider": "cachesaver", "mode": "chat", "input_cost_per_token": 0.0,
               "output_cost_per_token": 0.0}
        litellm.model_cost[outer] = own
        _capabilities._last_pass = None  # force a full pass
        cachesaver_litellm.register(store=store_path)
        assert litellm.model_cost[outer] is own
        assert cachesaver_litellm.mirror_model(outer) is True
        assert litellm.model_cost[outer] is own
    finally:
        litellm.model_cost.pop(outer, None)
        if saved is not None:
            litellm.model_cost[outer] = saved
        if mirrored is not None:
            _capabilities._mirrored[outer] = mirrored
        _capabilities._invalidate_lookups()


def test_mirror_model_refuses_other_names():
    with pytest.raises(ValueError, match="cachesaver/<litellm model>"):
        cachesaver_litellm.mirror_model("openai/gpt-4o-mini")


def test_register_mirrors_every_chat_row_of_the_cost_map(provider):
    chat_rows = [k for k, v in litellm.model_cost.items()
                 if not k.startswith("cachesaver/") and isinstance(v, dict)
                 and v.get("litellm_provider") and v.get("mode", "chat") in _capabilities.MIRRORED_MODES]
    assert len(chat_rows) > 1000
    missing = [k for k in chat_rows if "cachesaver/" + k not in litellm.model_cost]
    assert missing == []
