"""Test-only instrumentation loaded *inside* the LiteLLM Proxy processes the proxy tests start.

The tests' config is ``examples/proxy/config.yaml`` plus three entries pointing here:

- ``custom_auth``: two "virtual keys" (``TEAM_KEYS``) with their own alias, team and user, and
  the master key. The proxy's DB-backed virtual keys need Postgres and Prisma's downloaded
  engines; a custom auth function produces the same ``UserAPIKeyAuth`` object after which the
  proxy's request processing (the metadata it adds) is the same code path.
- ``recorder``: a litellm callback that appends, per logged call, what the proxy's spend
  tracking reads (``standard_logging_object['response_cost']``, ``cache_hit``, ...) and the
  cachesaver flags, as JSON lines to ``$CACHESAVER_TEST_RECORD``.
- at import: the ``cachesaver`` loggers at DEBUG on stderr, so the log check sees everything
  the library logs.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

_cachesaver_log = logging.getLogger("cachesaver")
_cachesaver_log.setLevel(logging.DEBUG)
_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
_cachesaver_log.addHandler(_handler)


def enable_cachesaver_logs() -> None:
    """Undo a later ``logging.config`` call of the proxy that disabled existing loggers."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("cachesaver") and isinstance(logger, logging.Logger):
            logger.disabled = False
    _cachesaver_log.setLevel(logging.DEBUG)
    if _handler not in _cachesaver_log.handlers:
        _cachesaver_log.addHandler(_handler)

#: raw key -> (alias, team, user); the raw keys are sentinels the tests search for.
TEAM_KEYS = {
    "sk-team-a-SENTINEL-7f3c": ("team-a", "team-a", "alice"),
    "sk-team-b-SENTINEL-9d21": ("team-b", "team-b", "bob"),
}


async def custom_auth(request, api_key: str) -> UserAPIKeyAuth:
    if api_key == os.environ.get("LITELLM_MASTER_KEY"):
        return UserAPIKeyAuth(api_key=api_key, user_role=LitellmUserRoles.PROXY_ADMIN, user_id="admin")
    if api_key in TEAM_KEYS:
        alias, team, user = TEAM_KEYS[api_key]
        return UserAPIKeyAuth(api_key=api_key, key_alias=alias, team_id=team, user_id=user)
    raise HTTPException(status_code=401, detail="unknown key")


class Recorder(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def _write(self, kind: str, kwargs: dict, response_obj) -> None:
        enable_cachesaver_logs()
        path = os.environ.get("CACHESAVER_TEST_RECORD")
        if not path:
            return
        payload = kwargs.get("standard_logging_object") or {}
        metadata = payload.get("metadata") or {}
        flags = kwargs.get("cachesaver")
        if flags is None:
            hidden = getattr(response_obj, "_hidden_params", None) or {}
            flags = hidden.get("cachesaver")
        row = {
            "event": kind,
            "model": payload.get("model"),
            "model_group": payload.get("model_group"),
            "response_cost": payload.get("response_cost"),
            "cache_hit": payload.get("cache_hit"),
            "saved_cache_cost": payload.get("saved_cache_cost"),
            "status": payload.get("status"),
            "stream": bool(kwargs.get("stream")),
            "key_alias": metadata.get("user_api_key_alias"),
            "namespace": (flags or {}).get("namespace"),
            "cached": (flags or {}).get("cached"),
            "request_id": (flags or {}).get("request_id"),
        }
        with self._lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write("success", kwargs, response_obj)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write("failure", kwargs, response_obj)


recorder = Recorder()
