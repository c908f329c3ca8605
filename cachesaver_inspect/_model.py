"""The engine's model: asks the wrapped Inspect ``ModelAPI`` for the samples the store lacks.

A :class:`~cachesaver.runtime.FanOutModel` on the engine's loop: one inner ``generate`` with
``num_choices=k`` when the inner provider sends ``n`` (Inspect's OpenAI chat-completions and
OpenAI-compatible providers), else ``k`` concurrent calls. The inner model's own client is used
only here, on the engine's loop. Its retries are Inspect's, one level up: a failed call stores
nothing (G5), the error reaches Inspect's ``Model.generate``, which retries the outer call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from inspect_ai.model import ChatMessage, GenerateConfig, ModelAPI, ModelOutput
from inspect_ai.tool import ToolChoice, ToolInfo

from cachesaver.errors import InvalidRequestTypeError
from cachesaver.runtime import FanOutModel
from cachesaver.typedefs import Request, Usage, unkeyed

from ._codec import SAMPLE_FORMAT, make_sample

__all__ = ["LiveCall", "InspectRequest", "InnerModel"]


@dataclass
class LiveCall:
    """The live objects of one generate call (never keyed, never stored)."""

    input: list[ChatMessage]
    tools: list[ToolInfo]
    tool_choice: ToolChoice
    config: GenerateConfig


@dataclass(frozen=True)
class InspectRequest(Request):
    """``prompt`` = the input messages as keyed JSON (``_codec.key_messages``)."""

    params: dict = field(default_factory=dict)
    format: str = SAMPLE_FORMAT
    call: Optional[LiveCall] = unkeyed(default=None)


def _sends_n(inner: ModelAPI) -> bool:
    """Whether one inner call returns ``num_choices`` choices (chat completions with ``n``)."""
    try:  # these need the openai package, which other providers do not
        from inspect_ai.model._providers.openai import OpenAIAPI
        from inspect_ai.model._providers.openai_compatible import OpenAICompatibleAPI
    except ImportError:
        return False
    if isinstance(inner, OpenAICompatibleAPI):
        return True
    return isinstance(inner, OpenAIAPI) and not getattr(inner, "responses_api", True)


class InnerModel(FanOutModel):
    def __init__(self, inner: ModelAPI, qualified_name: str) -> None:
        self.inner = inner
        self.qualified_name = qualified_name
        self._native_n = _sends_n(inner)

    def describe(self, request: Request) -> str:
        return type(self.inner).__name__

    def native_n(self, request: Request) -> bool:
        return self._native_n

    async def call(self, request: Request, n: Optional[int]) -> tuple[list[Any], Usage]:
        call = getattr(request, "call", None)
        if not isinstance(call, LiveCall):
            raise InvalidRequestTypeError(
                "InnerModel serves only requests built by the cachesaver Inspect provider "
                "(InspectRequest with a LiveCall); call the Inspect model instead of its pipeline")
        config = call.config.model_copy(update={"num_choices": n, "cache": None})
        result = await self.inner.generate(input=list(call.input), tools=list(call.tools),
                                           tool_choice=call.tool_choice, config=config)
        output = result[0] if isinstance(result, tuple) else result
        if isinstance(output, Exception):
            raise output
        assert isinstance(output, ModelOutput)
        served = output.model or self.qualified_name
        samples = [make_sample(choice, served) for choice in output.choices]
        usage = output.usage
        billed = Usage(int(usage.input_tokens), int(usage.output_tokens), float(usage.total_cost or 0.0)) \
            if usage is not None else Usage()
        return samples, billed
