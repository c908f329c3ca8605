"""OpenAI's batch output format (JSONL rows), which OpenAI, Azure OpenAI and the
OpenAI-compatible batch APIs litellm routes all answer in. Plain dicts only: no SDK here.

A row is ``{"custom_id", "response": {"status_code", "body"}, "error"}``; a line the provider
could not answer has ``error`` set or a status other than 200 (its error file).
"""
from __future__ import annotations

from typing import Optional

from .backend import LineResult

__all__ = ["read_output_row"]


def read_output_row(row: dict) -> "tuple[str, Optional[dict], Optional[LineResult]]":
    """``(custom_id, body, None)`` for an answered line (``body``: the chat completion), or
    ``(custom_id, None, error)`` for a failed one (the status code and the provider's message)."""
    custom_id = str(row.get("custom_id"))
    response = row.get("response") or {}
    if row.get("error") or response.get("status_code") != 200:
        error = row.get("error") or (response.get("body") or {}).get("error") or response
        message = error.get("message") if isinstance(error, dict) else str(error)
        return custom_id, None, LineResult(error=f"{response.get('status_code', '')} {message}".strip())
    return custom_id, response["body"], None
