"""What an Inspect generate call is keyed on, and how its choices are stored (JSON only, G7).

Key material (hashed verbatim by the engine): the inner model (``provider/model``), the input
messages, the tools, ``tool_choice``, every ``GenerateConfig`` field that reaches the model, and
the sample format. Left out, as transport: message ids (Inspect makes new random ids for every
message, so keying them would make every run a miss) and the config fields in
:data:`TRANSPORT_CONFIG` (retries, timeouts, connection limits, ``num_choices`` which is the
request's ``n``, Inspect's own ``cache`` and ``batch`` switches, extra HTTP headers).

A stored sample is one ``ChatCompletionChoice`` as JSON (message id dropped: Inspect gives each
replayed message a fresh one, as it does for a generated one) and the model that served it.
"""
from __future__ import annotations

from typing import Any

from inspect_ai.model import ChatCompletionChoice, ChatMessage, GenerateConfig
from inspect_ai.tool import ToolChoice, ToolInfo

__all__ = ["SAMPLE_FORMAT", "TRANSPORT_CONFIG", "key_messages", "key_params", "make_sample", "read_sample"]

#: Version of the stored sample shape (part of the key: another shape never reads these samples).
SAMPLE_FORMAT = "inspect-choice/1"

#: ``GenerateConfig`` fields that do not shape the output (never keyed).
TRANSPORT_CONFIG = frozenset({
    "max_retries", "timeout", "attempt_timeout", "stream_idle_timeout", "max_connections",
    "adaptive_connections", "num_choices", "cache", "batch", "extra_headers",
})


def _without_id(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "id"}


def key_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The input messages as keyed JSON (ids left out)."""
    return [_without_id(m.model_dump(mode="json", exclude_none=True)) for m in messages]


def key_params(model: str, tools: list[ToolInfo], tool_choice: ToolChoice, config: GenerateConfig) -> dict[str, Any]:
    """Everything else that shapes the output, as JSON."""
    settings = {k: v for k, v in config.model_dump(mode="json", exclude_none=True).items()
                if k not in TRANSPORT_CONFIG}
    choice: Any = tool_choice if isinstance(tool_choice, str) else tool_choice.name
    return {
        "model": model,
        "tools": [t.model_dump(mode="json", exclude_none=True) for t in tools],
        "tool_choice": {"function": choice} if not isinstance(tool_choice, str) else choice,
        "config": settings,
    }


def make_sample(choice: ChatCompletionChoice, model: str) -> dict[str, Any]:
    """One choice as a stored sample."""
    data = choice.model_dump(mode="json", exclude_none=True)
    data["message"] = _without_id(data["message"])
    return {"format": SAMPLE_FORMAT, "model": model, "choice": data}


def read_sample(sample: Any) -> tuple[ChatCompletionChoice, str]:
    """A stored sample back as ``(choice, model)``."""
    from cachesaver.errors import ModelOutputError

    if not isinstance(sample, dict) or sample.get("format") != SAMPLE_FORMAT:
        raise ModelOutputError(f"not an Inspect sample of format {SAMPLE_FORMAT!r}: {type(sample).__name__}")
    return ChatCompletionChoice.model_validate(sample["choice"]), str(sample.get("model") or "")
