"""Closing the HTTP clients litellm cached for the engine's loop, when that loop stops.

litellm keeps one aiohttp/httpx client per event loop (its client cache is keyed by loop). The
real calls of misses run on the engine host's loop, so the clients made there are ours to close
(else: "Unclosed client session" at exit); clients of the user's loops are left alone.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

__all__ = ["close_litellm_clients"]

log = logging.getLogger("cachesaver.litellm.clients")


async def close_litellm_clients() -> None:
    """Close the clients litellm cached for the running loop (run on the engine's loop)."""
    import litellm

    cache = getattr(litellm, "in_memory_llm_clients_cache", None)
    cache_dict = getattr(cache, "cache_dict", None)
    if not isinstance(cache_dict, dict):
        return
    token = _loop_token()
    for key, client in list(cache_dict.items()):
        if token is None or not str(key).endswith(f"-{token}"):
            continue
        await _aclose_client(client)
        cache_dict.pop(key, None)
        ttl = getattr(cache, "ttl_dict", None)
        if isinstance(ttl, dict):
            ttl.pop(key, None)


def _loop_token() -> Optional[str]:
    try:
        from litellm.caching.evicted_client_closer import running_loop_token
    except ImportError:  # pragma: no cover - other litellm layouts
        return None
    token = running_loop_token()
    return None if token is None else str(token)


async def _aclose_client(client: Any) -> None:
    for attr in ("aclose", "close"):
        method = getattr(client, attr, None)
        if method is None:
            continue
        try:
            result = method()
            if asyncio.iscoroutine(result):
                await result
        except Exception as exc:
            log.debug("closing %s failed: %s", type(client).__name__, type(exc).__name__)
        return
    inner = getattr(client, "client", None) or getattr(client, "_client", None)
    if inner is not None and inner is not client:
        await _aclose_client(inner)
