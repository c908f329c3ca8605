"""Batch mode for ``CacheSaverChatModel(batch_api=...)``: the engine's batch backend
(:class:`cachesaver.batchapi.BatchBackend`) over OpenAI's Files and Batches API, through the
inner ``ChatOpenAI``'s own SDK client (its ``base_url``, key, organization, timeouts).

Conversion only; the engine's collector does the rest (windows, journal, polling, adoption
after a restart, failed and expired lines). A line's body is what the inner model would have
sent to ``/v1/chat/completions`` for the call (``ChatOpenAI._get_request_payload``, so its
parameters, bound tools and stop are exactly those of an interactive call) with ``n`` = the
missing count; an answered line is turned back into generations by ``ChatOpenAI``'s own
``_create_chat_result`` and stored as the samples of an interactive call would be.

Batch creation is never retried blindly (see :meth:`OpenAIBatchBackend.create`).

Refused, before anything is sent: inner models other than ``ChatOpenAI`` (no batch API this
backend can reach, or an untested one: ``AzureChatOpenAI``, OpenAI-compatible providers), and
calls ``ChatOpenAI`` would send to the Responses API (a batch line here is a chat completion).

Price billed: see :func:`cachesaver_langchain._pricing.batch_price`. A batch whose process is
gone is collected or cancelled from the command line through :mod:`._batchcli`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Hashable, Optional

from langchain_core.language_models import BaseChatModel

from cachesaver.batchapi import BatchAPI, BatchStatus, BatchUnsupportedError, CreationReplyLost, LineResult
from cachesaver.batchapi.openai_format import read_output_row
from cachesaver.errors import InvalidRequestTypeError
from cachesaver.secrets import url_without_userinfo
from cachesaver.typedefs import Request, Usage

from ._inner import configure_inner
from ._model import LiveCall, _samples
from ._pricing import Price, batch_price, litellm_price, model_of

__all__ = ["OpenAIBatchBackend", "batch_api_option", "check_batchable"]

_ENDPOINT = "/v1/chat/completions"
#: Payload entries of an interactive call that a batch line must not carry.
_NOT_IN_LINES = ("stream", "stream_options")


def check_batchable(inner: BaseChatModel) -> None:
    """Raise :class:`BatchUnsupportedError` unless ``inner`` is a ``ChatOpenAI`` (or subclass)."""
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:  # pragma: no cover - then inner cannot be one
        ChatOpenAI = None  # type: ignore[assignment,misc]  # noqa: N806
    if ChatOpenAI is None or not isinstance(inner, ChatOpenAI):
        raise BatchUnsupportedError(
            f"batch_api: the inner model is a {type(inner).__name__}, which has no batch API "
            "CacheSaver can use (supported: langchain_openai.ChatOpenAI, through OpenAI's Batch API "
            "at its base_url); leave batch_api unset for this model, or wrap a ChatOpenAI")


def batch_api_option(option: Any, inner: BaseChatModel, price: Optional[Price]) -> Optional[BatchAPI]:
    """The engine's ``batch_api=`` for the wrapper's ``batch_api`` (False/None: interactive)."""
    if option is None or option is False:
        return None
    if option is True:
        options: dict = {}
    elif isinstance(option, dict):
        options = dict(option)
    else:
        raise InvalidRequestTypeError(
            f"batch_api must be True, False or a dict of BatchAPI options (e.g. {{'window': 5.0}}), got {option!r}")
    check_batchable(inner)
    if "backend" in options:
        raise InvalidRequestTypeError("batch_api: 'backend' is chosen by CacheSaverChatModel; leave it out")
    try:
        return BatchAPI(OpenAIBatchBackend(inner, price), **options)
    except TypeError as exc:  # an unknown option name
        raise InvalidRequestTypeError(f"batch_api: {exc}; the options are those of cachesaver.batchapi.BatchAPI "
                                      "(window, max_lines, max_bytes, poll, max_poll, backoff, resubmit_expired)"
                                      ) from None


class OpenAIBatchBackend:
    """One per wrapper: the inner ``ChatOpenAI`` (already configured by the wrapper) and its price."""

    def __init__(self, inner: BaseChatModel, price: Optional[Price]) -> None:
        check_batchable(inner)
        self.inner = inner
        self.price = price
        self._pid = os.getpid()
        self._forked: Optional[tuple[int, BaseChatModel]] = None

    def __repr__(self) -> str:  # the inner model's repr may show its settings; never its key
        return f"OpenAIBatchBackend({type(self.inner).__name__})"

    # -- what the engine asks ------------------------------------------------------------------
    def check(self, request: Request) -> None:
        self._payload(request)

    def group(self, request: Request) -> Hashable:
        return str(self._payload(request).get("model") or "")

    def describe(self, request: Request) -> dict:
        inner = self._model()
        base = getattr(inner, "openai_api_base", None) or str(getattr(self._client(), "base_url", "") or "")
        return {"provider": "openai", "model": str(self._payload(request).get("model") or ""),
                "endpoint": url_without_userinfo(str(base)) if base else "", "adapter": "langchain",
                "price": _price_kind(self.price)}

    def line(self, custom_id: str, request: Request, n: int) -> bytes:
        body = self._payload(request)
        body["n"] = n
        line = {"custom_id": custom_id, "method": "POST", "url": _ENDPOINT, "body": body}
        return (json.dumps(line, sort_keys=True, default=_jsonable) + "\n").encode()

    async def upload(self, request: Request, content: bytes) -> str:
        file = await self._client().files.create(file=("cachesaver-batch.jsonl", content, "application/jsonl"),
                                                 purpose="batch")
        return str(file.id)

    async def create(self, request: Request, input_file: str, journal_id: str) -> str:
        """Sent once (no SDK retry): see :class:`~cachesaver.batchapi.CreationReplyLost`."""
        import openai

        client = self._client().with_options(max_retries=0)
        try:
            batch = await client.batches.create(completion_window="24h", endpoint=_ENDPOINT, input_file_id=input_file,
                                                metadata={"cachesaver_batch": journal_id})
        except openai.APIConnectionError as exc:  # timeouts included
            raise CreationReplyLost(input_file, exc) from exc
        return str(batch.id)

    async def find(self, request: Request, input_file: str) -> Optional[str]:
        page = await self._client().batches.list(limit=100)
        for batch in getattr(page, "data", None) or []:
            if getattr(batch, "input_file_id", None) == input_file:
                return str(batch.id)
        return None

    async def status(self, request: Request, batch_id: str) -> BatchStatus:
        batch = await self._client().batches.retrieve(batch_id)
        errors = getattr(batch, "errors", None)
        message = "; ".join(str(getattr(e, "message", "")) for e in (getattr(errors, "data", None) or []))
        return BatchStatus(str(batch.status), batch.output_file_id, batch.error_file_id, message)

    async def results(self, request: Request, status: BatchStatus) -> "dict[str, LineResult]":
        out: dict[str, LineResult] = {}
        for file_id in (status.output_file, status.error_file):
            if not file_id:
                continue
            content = await self._client().files.content(file_id)
            for raw in content.content.splitlines():
                if raw.strip():
                    custom_id, result = self._result(json.loads(raw))
                    out[custom_id] = result
        return out

    async def cancel(self, request: Request, batch_id: str) -> None:
        await self._client().batches.cancel(batch_id)

    # -- conversion ----------------------------------------------------------------------------
    def _payload(self, request: Request) -> dict:
        """What the inner model would send for this call, less what a batch line cannot carry."""
        call = getattr(request, "call", None)
        if not isinstance(call, LiveCall):
            raise InvalidRequestTypeError("batch mode serves requests built by CacheSaverChatModel only")
        inner: Any = self._model()
        kwargs = dict(call.kwargs)
        response_format = kwargs.get("response_format")
        if isinstance(response_format, type):  # a pydantic class: the JSON schema the SDK's parse() sends
            from openai.lib._parsing._completions import type_to_response_format_param

            kwargs["response_format"] = type_to_response_format_param(response_format)
        payload = inner._get_request_payload(call.messages, stop=call.stop, **kwargs)
        if "messages" not in payload or inner._use_responses_api(payload):
            raise BatchUnsupportedError(
                f"batch_api: this call would go to OpenAI's Responses API ({type(inner).__name__} settings "
                "such as use_responses_api, reasoning or output_version='responses/v1'), which batch mode "
                "does not send; use chat-completions settings, or leave batch_api unset")
        for name in _NOT_IN_LINES:
            payload.pop(name, None)
        return payload

    def _result(self, row: dict) -> tuple[str, LineResult]:
        custom_id, body, failed = read_output_row(row)
        if failed is not None:
            return custom_id, failed
        inner: Any = self._model()
        result = inner._create_chat_result(body)
        samples, usage = _samples(result)
        cost, note = 0.0, "no price"
        if result.generations:
            model = model_of(result.generations[0].message, inner)
            cost, note = batch_price(self.price, model, int(usage.prompt_tokens), int(usage.completion_tokens))
        return custom_id, LineResult(samples=samples, usage=Usage(usage.prompt_tokens, usage.completion_tokens, cost),
                                     price_note=note)

    def _model(self) -> BaseChatModel:
        """The inner model; in a forked child a copy with its own HTTP client (the parent's
        belongs to the parent's engine loop), as the interactive path does."""
        pid = os.getpid()
        if pid == self._pid:
            return self.inner
        if self._forked is None or self._forked[0] != pid:
            self._forked = (pid, configure_inner(self.inner, {}, new_process=True))
        return self._forked[1]

    def _client(self) -> Any:
        return self._model().root_async_client  # type: ignore[attr-defined]


def _price_kind(price: Optional[Price]) -> str:
    """How this wrapper prices (recorded with a batch, so that ``cachesaver batches collect``
    bills its answers the same way; a ``price=`` function itself cannot be recorded)."""
    return "none" if price is None else "litellm" if price is litellm_price else "custom"


def _jsonable(value: Any) -> Any:
    raise TypeError(f"batch line parameter of type {type(value).__name__} is not JSON; "
                    "pass JSON values (dicts, lists, strings, numbers) in this call's parameters")
