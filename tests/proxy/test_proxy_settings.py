"""The proxy handler's settings (``CACHESAVER_*``) and the header form of the namespace, in
process: no proxy needed, so these run wherever litellm is installed."""
from __future__ import annotations

import pytest

import cachesaver_litellm
from cachesaver.errors import InvalidRequestError
from cachesaver_litellm import proxy as cs_proxy
from cachesaver_litellm._provider import build_request
from cachesaver_litellm.proxy import ProxyConfigError, identity_from_headers, settings_from_env


def test_defaults_match_register():
    settings = settings_from_env({})
    assert settings.register_kwargs() == {"store": "./.cachesaver", "run_id": None, "namespace": "default",
                                          "timeout": 0.02, "batch_size": 64, "max_n": 128, "max_fanout": 8,
                                          "max_concurrent_calls": 64}


def test_every_variable_is_read():
    settings = settings_from_env({"CACHESAVER_STORE": "redis://127.0.0.1:6379/0?prefix=p",
                                  "CACHESAVER_RUN_ID": "fleet-1", "CACHESAVER_NAMESPACE": "exp",
                                  "CACHESAVER_BATCH_TIMEOUT": "0.1", "CACHESAVER_BATCH_SIZE": "8",
                                  "CACHESAVER_MAX_N": "16", "CACHESAVER_MAX_FANOUT": "2",
                                  "CACHESAVER_MAX_CONCURRENT_CALLS": "10"})
    assert settings.register_kwargs() == {"store": "redis://127.0.0.1:6379/0?prefix=p", "run_id": "fleet-1",
                                          "namespace": "exp", "timeout": 0.1, "batch_size": 8, "max_n": 16,
                                          "max_fanout": 2, "max_concurrent_calls": 10}
    assert settings.shared_store


@pytest.mark.parametrize("name, value, words", [
    ("CACHESAVER_BATCH_TIMEOUT", "20ms", "not a number"),
    ("CACHESAVER_BATCH_TIMEOUT", "-1", "between 0 and 60"),
    ("CACHESAVER_BATCH_TIMEOUT", "500", "not milliseconds"),
    ("CACHESAVER_BATCH_TIMEOUT", "nan", "between 0 and 60"),
    ("CACHESAVER_BATCH_SIZE", "1.5", "whole number"),
    ("CACHESAVER_BATCH_SIZE", "0", ">= 1"),
    ("CACHESAVER_STORE", "https://example.invalid/cache", "redis://"),
    ("CACHESAVER_MAX_N", "0", ">= 1"),
    ("CACHESAVER_MAX_N", "many", "whole number"),
    ("CACHESAVER_MAX_FANOUT", "0", ">= 1"),
    ("CACHESAVER_MAX_CONCURRENT_CALLS", "lots", "whole number"),
])
def test_bad_values_are_refused_naming_the_variable(name, value, words):
    with pytest.raises(ProxyConfigError) as info:
        settings_from_env({name: value})
    assert isinstance(info.value, InvalidRequestError)
    assert name in str(info.value) and words in str(info.value)


def test_a_store_password_is_never_shown():
    settings = settings_from_env({"CACHESAVER_STORE": "redis://:hunter2-SENTINEL@127.0.0.1:6379/0?prefix=p"})
    assert "hunter2" not in settings.describe()
    shown = cs_proxy.redact_store(settings.store)  # the engine's one rule (stores/urls.py)
    assert "hunter2" not in shown and "127.0.0.1:6379/0" in shown


@pytest.fixture
def fresh_module(monkeypatch):
    import litellm

    for name in list(__import__("os").environ):
        if name.startswith("CACHESAVER_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(cs_proxy, "_built", None)
    callbacks = list(litellm.callbacks)
    yield monkeypatch
    cachesaver_litellm.unregister()
    from cachesaver_litellm import _proxy_hooks

    litellm.logging_callback_manager.remove_callback_from_all_lists(_proxy_hooks._headers_hook)
    litellm.callbacks = callbacks


def test_the_handler_the_proxy_imports_is_registered_from_the_environment(fresh_module, tmp_path):
    import litellm

    fresh_module.setenv("CACHESAVER_STORE", str(tmp_path / "store"))
    fresh_module.setenv("CACHESAVER_NAMESPACE", "gateway")
    fresh_module.setenv("CACHESAVER_RUN_ID", "run-7")
    fresh_module.setenv("CACHESAVER_MAX_N", "4")
    handler = cs_proxy.handler  # what the proxy's config loader does: getattr(module, "handler")
    assert isinstance(handler, cachesaver_litellm.CacheSaverLLM)
    assert cs_proxy.handler is handler  # built once per process
    assert handler is cachesaver_litellm.get_handler()
    assert handler.settings.namespace == "gateway" and handler.pipeline.run_id == "run-7"
    assert handler.pipeline.store.location == str(tmp_path / "store")
    assert any(isinstance(cb, cs_proxy.ProxyHooks) for cb in litellm.callbacks)
    # The proxy's limit on n is the variable's: a client asking for more is refused before any cost.
    with pytest.raises(Exception, match="limit of 4"):  # (litellm wraps the InvalidRequestError)
        litellm.completion(model="cachesaver/openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                           n=5, api_base="http://127.0.0.1:9", api_key="sk-unused",
                           metadata={"cachesaver_namespace": "a"})


def test_a_shared_store_without_a_run_id_is_warned_about(fresh_module, caplog):
    import redis

    url = "redis://127.0.0.1:6379/0"
    try:
        with redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as r:
            r.ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    fresh_module.setenv("CACHESAVER_STORE", f"{url}?prefix=cstest-proxy-warning")
    with caplog.at_level("WARNING", logger="cachesaver.litellm.proxy"):
        cs_proxy.handler
    assert "CACHESAVER_RUN_ID is unset" in caplog.text


def test_a_bad_variable_stops_the_handler_naming_it(fresh_module):
    fresh_module.setenv("CACHESAVER_BATCH_TIMEOUT", "fast")
    with pytest.raises(ProxyConfigError, match="CACHESAVER_BATCH_TIMEOUT"):
        cs_proxy.handler
    with pytest.raises(AttributeError):
        cs_proxy.no_such_thing


# -- the header form of the namespace ----------------------------------------------------------------
def test_headers_are_read_where_the_proxy_puts_them():
    in_metadata = {"metadata": {"headers": {"x-cachesaver-namespace": "A", "x-cachesaver-request-id": "r1"}}}
    assert identity_from_headers(in_metadata) == {"cachesaver_namespace": "A", "cachesaver_request_id": "r1"}
    in_request = {"proxy_server_request": {"headers": {"X-CacheSaver-Namespace": "B"}}}
    assert identity_from_headers(in_request) == {"cachesaver_namespace": "B"}
    assert identity_from_headers({"metadata": {"headers": {"authorization": "Bearer x"}}}) == {}
    assert identity_from_headers(None) == {} and identity_from_headers({}) == {}


def _identity(litellm_params, http_names=False):
    request = build_request(model="cachesaver/openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                            optional_params={}, litellm_params=litellm_params, api_key=None, api_base=None,
                            headers=None, timeout=None, default_namespace="default", key_api_base=False,
                            http_names=http_names)
    return request.namespace, request.request_id


def test_body_metadata_wins_over_headers_in_the_provider_lookup():
    params = {"metadata": {"cachesaver_namespace": "body", "headers": {"x-cachesaver-namespace": "header"}}}
    assert _identity(params) == ("body", "")
    params = {"metadata": {"headers": {"x-cachesaver-namespace": "header", "x-cachesaver-request-id": "r9"}}}
    assert _identity(params) == ("header", "r9")


@pytest.mark.parametrize("value", ["", "   ", "x" * 513])
def test_bad_header_values_are_refused_naming_the_header(value):
    with pytest.raises(InvalidRequestError, match="x-cachesaver-namespace"):
        identity_from_headers({"metadata": {"headers": {"x-cachesaver-namespace": value}}})


def test_names_over_http_refuse_control_characters_and_only_there():
    for params in ({"metadata": {"cachesaver_namespace": "a\r\nb"}},
                   {"metadata": {"cachesaver_namespace": "A", "cachesaver_request_id": "r\x001"}}):
        with pytest.raises(InvalidRequestError, match=r"metadata\['cachesaver_.*'\] holds a control character"):
            _identity(params, http_names=True)
        assert _identity(params)[0] in ("a\r\nb", "A")  # the SDK path keeps any str the engine stores
    assert _identity({"metadata": {"cachesaver_namespace": "实验 🧪"}}, http_names=True) == ("实验 🧪", "")
    with pytest.raises(ProxyConfigError, match="CACHESAVER_NAMESPACE"):
        settings_from_env({"CACHESAVER_NAMESPACE": "a\x01b"})


def test_header_values_are_percent_decoded():
    def read(value, header="x-cachesaver-namespace"):
        return identity_from_headers({"metadata": {"headers": {header: value}}})
    assert read("%E5%AE%9E%E9%AA%8C") == {"cachesaver_namespace": "实验"}
    assert read("%F0%9F%A7%AA") == {"cachesaver_namespace": "🧪"}
    assert read("run-1") == {"cachesaver_namespace": "run-1"}  # plain ASCII reads as itself
    assert read("arm one") == {"cachesaver_namespace": "arm one"}
    assert read("50%25") == {"cachesaver_namespace": "50%"}
    assert read("r-%E5%AE%9E", "x-cachesaver-request-id") == {"cachesaver_request_id": "r-实"}


@pytest.mark.parametrize("header, value, message", [
    ("x-cachesaver-namespace", "a%0D%0Ab", "control character"),
    ("x-cachesaver-request-id", "a%00b", "control character"),
    ("x-cachesaver-namespace", "å®\x9e", "non-ASCII"),  # raw UTF-8 bytes, as the server decodes them
    ("x-cachesaver-namespace", "%FF", "not UTF-8"),
])
def test_header_values_that_decode_to_no_name_are_refused_naming_the_header(header, value, message):
    with pytest.raises(InvalidRequestError, match=message) as refused:
        identity_from_headers({"metadata": {"headers": {header: value}}})
    assert header in str(refused.value)


@pytest.mark.parametrize("name", ["B", "run-1", "arm one", "a/b:c=d;e,f", "实验", "🧪", "50%", " edge ", "r-实验-%41"])
def test_name_headers_are_printable_ascii_and_decode_to_the_name(name):
    from urllib.parse import unquote

    headers = cs_proxy.response_headers({"namespace": name, "request_id": name, "cached": [False]})
    for value in (headers["x-cachesaver-namespace"], headers["x-cachesaver-request-id"]):
        assert value.isascii() and value.isprintable() and value == value.strip()
        assert unquote(value) == name
    if name.isascii() and "%" not in name and name == name.strip():
        assert headers["x-cachesaver-namespace"] == name  # plain ASCII names are unchanged


def test_response_headers_describe_each_choice():
    flags = {"namespace": "B", "request_id": "r", "key": "k" * 64, "cached": [True, False],
             "duplicated": [False, True]}
    assert cs_proxy.response_headers(flags) == {
        "x-cachesaver-cache-hit": "partial", "x-cachesaver-cached": "1,0", "x-cachesaver-duplicated": "0,1",
        "x-cachesaver-namespace": "B", "x-cachesaver-request-id": "r"}
    full = cs_proxy.response_headers({**flags, "cached": [True, True]})
    assert full["x-cachesaver-cache-hit"] == "true" and full["x-litellm-cache-key"] == "k" * 64


def test_refused_requests_are_found_behind_litellms_wrapping():
    refused = InvalidRequestError("metadata['cachesaver_namespace'] must be a non-empty str")
    try:
        try:
            raise refused
        except InvalidRequestError:
            raise RuntimeError("litellm.APIConnectionError: ...")  # what litellm raises instead
    except RuntimeError as wrapped:
        assert cs_proxy.client_error(wrapped) is refused
    assert cs_proxy.client_error(RuntimeError("upstream 500")) is None


def test_a_store_that_cannot_be_opened_stops_the_handler_naming_the_variable(fresh_module, tmp_path):
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("x")
    fresh_module.setenv("CACHESAVER_STORE", str(not_a_directory))
    with pytest.raises(ProxyConfigError, match="CACHESAVER_STORE.*is a file"):
        cs_proxy.handler


def test_a_streamed_hit_is_logged_at_what_it_was_billed():
    flags = {"cached": [True], "cost_billed": 0.0}
    kwargs = {"stream": True, "cachesaver": flags, "response_cost": 8.1e-06, "cache_hit": False,
              "standard_logging_object": {"response_cost": 8.1e-06, "cache_hit": False, "saved_cache_cost": 0.0}}
    cs_proxy.correct_stream_cost(kwargs)
    assert kwargs["response_cost"] == 0.0 and kwargs["cache_hit"] is True
    assert kwargs["standard_logging_object"] == {"response_cost": 0.0, "cache_hit": True, "saved_cache_cost": 8.1e-06}
    # a streamed partial hit: what this caller was billed for its new samples
    partial = {"stream": True, "cachesaver": {"cached": [True, False], "cost_billed": 3e-06},
               "standard_logging_object": {"response_cost": 9e-06, "cache_hit": False}}
    cs_proxy.correct_stream_cost(partial)
    assert partial["standard_logging_object"] == {"response_cost": 3e-06, "cache_hit": False}
    # not a stream, or not a cachesaver call: untouched
    plain = {"stream": False, "cachesaver": flags, "standard_logging_object": {"response_cost": 1.0}}
    cs_proxy.correct_stream_cost(plain)
    assert plain["standard_logging_object"] == {"response_cost": 1.0}
    other = {"stream": True, "standard_logging_object": {"response_cost": 1.0}}
    cs_proxy.correct_stream_cost(other)
    assert other["standard_logging_object"] == {"response_cost": 1.0}


def test_a_response_that_reused_samples_is_logged_at_what_they_saved():
    """The logged ``saved_cache_cost`` is the engine's stored price of the reused samples, as in
    ``stats()`` and bundles: a partial hit logged 0 before, and a full hit of one of the two
    samples one call generated was logged at a re-priced whole call (its prompt counted again)."""
    partial = {"stream": False, "cachesaver": {"cached": [True, True, False], "cost_billed": 3e-06,
                                               "cost_saved": 6e-06},
               "standard_logging_object": {"response_cost": 3e-06, "cache_hit": False, "saved_cache_cost": 0.0}}
    cs_proxy.log_saving(partial)
    assert partial["standard_logging_object"] == {"response_cost": 3e-06, "cache_hit": False,
                                                  "saved_cache_cost": 6e-06}
    full = {"stream": False, "cachesaver": {"cached": [True], "cost_billed": 0.0, "cost_saved": 2.5e-06},
            "standard_logging_object": {"response_cost": 0.0, "cache_hit": True, "saved_cache_cost": 3.9e-06}}
    cs_proxy.log_saving(full)
    assert full["standard_logging_object"]["saved_cache_cost"] == 2.5e-06
    # nothing reused, or no engine figure, or not a cachesaver call: untouched
    for untouched in ({"cachesaver": {"cached": [False], "cost_saved": 0.0},
                       "standard_logging_object": {"saved_cache_cost": 0.0}},
                      {"cachesaver": {"cached": [True]}, "standard_logging_object": {"saved_cache_cost": 1.0}},
                      {"standard_logging_object": {"saved_cache_cost": 1.0}}):
        before = dict(untouched["standard_logging_object"])
        cs_proxy.log_saving(untouched)
        assert untouched["standard_logging_object"] == before
