"""A chat model without ``n`` and without streaming: one completion per real HTTP request to the
fake server (what a provider such as Anthropic offers). Used to test the k-calls path."""
from __future__ import annotations

from typing import Any, Optional

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class PlainHTTPChat(BaseChatModel):
    base_url: str
    model: str = "plain-model"
    temperature: float = 0.7

    @property
    def _llm_type(self) -> str:
        return "plain-http"

    def _body(self, messages: list[BaseMessage], stop: Optional[list[str]]) -> dict[str, Any]:
        body = {"model": self.model, "temperature": self.temperature,
                "messages": [{"role": _ROLES[m.type], "content": m.content} for m in messages]}
        if stop:
            body["stop"] = stop
        return body

    @staticmethod
    def _result(data: dict[str, Any]) -> ChatResult:
        usage = data["usage"]
        message = AIMessage(
            content=data["choices"][0]["message"]["content"],
            usage_metadata={"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
                            "total_tokens": usage["total_tokens"]},
            response_metadata={"model_name": data["model"]},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        response = httpx.post(f"{self.base_url}/chat/completions", json=self._body(messages, stop))
        response.raise_for_status()
        return self._result(response.json())

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{self.base_url}/chat/completions", json=self._body(messages, stop))
        response.raise_for_status()
        return self._result(response.json())
