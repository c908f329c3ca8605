"""Batch mode's backend for litellm: :class:`cachesaver.batchapi.BatchBackend` over litellm's
``acreate_file``/``acreate_batch``/``aretrieve_batch``/``alist_batches``/``afile_content``/
``acancel_batch`` (OpenAI's ``/v1/files`` and ``/v1/batches``).

Each engine call (one key, ``n`` = the missing samples) becomes one JSONL line
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {model, messages,
<output-shaping params>, "n"}}``; one batch file per (provider, endpoint, credentials, model).

Price billed: litellm's batch prices (``input_cost_per_token_batches`` /
``output_cost_per_token_batches`` in its cost map) where it has them; otherwise half of the
interactive price litellm (or the call's own ``input_cost_per_token``/``output_cost_per_token``)
gives, which is what OpenAI's Batch API bills; unpriced models bill 0.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Hashable, Optional

from cachesaver.batchapi import BatchStatus, BatchUnsupportedError, CreationReplyLost, LineResult
from cachesaver.batchapi.openai_format import read_output_row
from cachesaver.secrets import url_without_userinfo
from cachesaver.typedefs import Request, Usage

from ._backend import RealCall
from ._provider import _internal_sub_call
from ._samples import response_cost, response_tokens, split_response

__all__ = ["LiteLLMBatchBackend", "BATCH_BACKEND", "BATCH_PROVIDERS"]

log = logging.getLogger("cachesaver.litellm.batches")

#: Providers whose litellm batch API takes OpenAI's JSONL chat-completions lines (tested: openai).
BATCH_PROVIDERS = ("openai", "azure")
_ENDPOINT = "/v1/chat/completions"
_PRICES = ("input_cost_per_token", "output_cost_per_token")


class LiteLLMBatchBackend:
    """Stateless: one instance serves every pipeline (so settings compare equal on register).

    Each litellm call is made as litellm's nested call (``internal_sub_call``), like the
    adapter's real completions: litellm's logging worker then stays on the caller's loop.
    """

    def check(self, request: Request) -> None:
        call = _call(request)
        if call.provider not in BATCH_PROVIDERS:
            raise BatchUnsupportedError(
                f"batch_api: {request.model!r} is served by provider {call.provider!r}, for which "  # type: ignore[attr-defined]
                f"cachesaver's batch mode has no batch API (supported: {', '.join(BATCH_PROVIDERS)}); "
                "register without batch_api for this model, or use an OpenAI model")

    def group(self, request: Request) -> Hashable:
        call = _call(request)
        kwargs = call.kwargs
        return (call.provider, str(kwargs.get("api_base") or ""), str(kwargs.get("api_key") or ""),
                str(kwargs.get("api_version") or ""), _name(request))

    def describe(self, request: Request) -> dict:
        call = _call(request)
        base = call.kwargs.get("api_base")
        info = {"adapter": "litellm", "provider": call.provider, "model": _name(request),
                "endpoint": url_without_userinfo(str(base)) if base else ""}
        for name in _PRICES:  # the call's own prices (not secrets): a later collect bills by them too
            value = call.kwargs.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                info[name] = value
        return info

    def estimate(self, request: Request, n: int) -> Optional[float]:
        """A line's cost before its answer, by the price function its answer is billed with:
        its prompt's tokens (litellm's token counter) plus, when the call sets ``max_tokens``
        (or ``max_completion_tokens``), ``n`` times that many completion tokens (a bound);
        without it the completion part is not counted. None if litellm cannot count."""
        import litellm

        params = getattr(request, "params", {}) or {}
        limit = params.get("max_completion_tokens", params.get("max_tokens"))
        completion = n * limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else 0
        try:
            prompt = int(litellm.token_counter(model=_name(request), messages=_call(request).messages))
            response = litellm.ModelResponse(model=_name(request), usage={
                "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
            return _batch_cost(request, response, prompt, completion)[0]
        except Exception as exc:  # an estimate only: the line is submitted all the same
            log.debug("could not estimate a batch line's cost: %s", type(exc).__name__)
            return None

    def line(self, custom_id: str, request: Request, n: int) -> bytes:
        params = dict(getattr(request, "params", {}) or {})
        extra = params.pop("extra_body", None)
        body: dict[str, Any] = {"model": _name(request), "messages": _call(request).messages, **params}
        if isinstance(extra, dict):
            body.update(extra)
        body["n"] = n
        line = {"custom_id": custom_id, "method": "POST", "url": _ENDPOINT, "body": body}
        return (json.dumps(line, sort_keys=True, default=_jsonable) + "\n").encode()

    # -- litellm calls --------------------------------------------------------------------------
    async def upload(self, request: Request, content: bytes) -> str:
        import litellm

        with _internal_sub_call()():
            file = await litellm.acreate_file(file=("cachesaver-batch.jsonl", content, "application/jsonl"),
                                              purpose="batch", **_transport(request))
        return str(file.id)

    async def create(self, request: Request, input_file: str, journal_id: str) -> str:
        """Sent once (``max_retries=0``): see :class:`~cachesaver.batchapi.CreationReplyLost`."""
        import litellm
        import openai

        try:
            with _internal_sub_call()():
                batch = await litellm.acreate_batch(completion_window="24h", endpoint=_ENDPOINT,
                                                    input_file_id=input_file, metadata={"cachesaver_batch": journal_id},
                                                    max_retries=0, **_transport(request))
        except (openai.APIConnectionError, litellm.APIConnectionError, litellm.Timeout) as exc:  # timeouts included
            raise CreationReplyLost(input_file, exc) from exc
        return str(batch.id)

    async def find(self, request: Request, input_file: str) -> Optional[str]:
        import litellm

        with _internal_sub_call()():
            page = await litellm.alist_batches(limit=100, **_transport(request))
        for batch in getattr(page, "data", None) or []:
            if getattr(batch, "input_file_id", None) == input_file:
                return str(batch.id)
        return None

    async def status(self, request: Request, batch_id: str) -> BatchStatus:
        import litellm

        with _internal_sub_call()():
            batch = await litellm.aretrieve_batch(batch_id=batch_id, **_transport(request))
        errors = getattr(batch, "errors", None)
        data = getattr(errors, "data", None) or []
        message = "; ".join(str(getattr(e, "message", "")) for e in data)
        return BatchStatus(str(batch.status), getattr(batch, "output_file_id", None),
                           getattr(batch, "error_file_id", None), message)

    async def results(self, request: Request, status: BatchStatus) -> "dict[str, LineResult]":
        out: dict[str, LineResult] = {}
        for file_id in (status.output_file, status.error_file):
            if not file_id:
                continue
            for raw in (await self._content(request, file_id)).splitlines():
                if raw.strip():
                    custom_id, result = self._result(request, json.loads(raw))
                    out[custom_id] = result
        return out

    async def cancel(self, request: Request, batch_id: str) -> None:
        import litellm

        with _internal_sub_call()():
            await litellm.acancel_batch(batch_id=batch_id, **_transport(request))

    async def _content(self, request: Request, file_id: str) -> bytes:
        import litellm

        with _internal_sub_call()():
            response = await litellm.afile_content(file_id=file_id, **_transport(request))
        return bytes(response.content)

    def _result(self, request: Request, row: dict) -> tuple[str, LineResult]:
        custom_id, body, failed = read_output_row(row)
        if failed is not None:
            return custom_id, failed
        import litellm

        model_response = litellm.ModelResponse(**body)
        call = _call(request)
        prompt_tokens, completion_tokens = response_tokens(model_response)
        cost, note = _batch_cost(request, model_response, prompt_tokens, completion_tokens)
        samples = split_response(model_response, call.provider)
        return custom_id, LineResult(samples=samples, usage=Usage(prompt_tokens, completion_tokens, cost),
                                     price_note=note)


BATCH_BACKEND = LiteLLMBatchBackend()


def _batch_cost(request: Request, response: Any, prompt_tokens: int, completion_tokens: int) -> tuple[float, str]:
    """What the provider bills a batch line, and where the price came from."""
    import litellm

    call = _call(request)
    name = _name(request)
    entry = litellm.model_cost.get(name) or litellm.model_cost.get(f"{call.provider}/{name}") or {}
    per_in, per_out = entry.get("input_cost_per_token_batches"), entry.get("output_cost_per_token_batches")
    if isinstance(per_in, (int, float)) and isinstance(per_out, (int, float)):
        return prompt_tokens * per_in + completion_tokens * per_out, "litellm batch price"
    custom_in, custom_out = call.kwargs.get("input_cost_per_token"), call.kwargs.get("output_cost_per_token")
    if isinstance(custom_in, (int, float)) and isinstance(custom_out, (int, float)):
        return (prompt_tokens * custom_in + completion_tokens * custom_out) / 2, "half the call's own price"
    return response_cost(response, f"{call.provider}/{name}") / 2, "half of litellm's interactive price"


def _call(request: Request) -> RealCall:
    call = getattr(request, "call", None)
    if not isinstance(call, RealCall):
        raise TypeError("LiteLLMRequest.call is missing: build requests through cachesaver_litellm")
    return call


def _name(request: Request) -> str:
    model = str(getattr(request, "model", "") or _call(request).model)
    provider = _call(request).provider
    return model[len(provider) + 1:] if provider and model.startswith(provider + "/") else model


def _transport(request: Request) -> dict:
    call = _call(request)
    kwargs = {"custom_llm_provider": call.provider}
    for name in ("api_key", "api_base", "api_version", "timeout"):
        value = call.kwargs.get(name)
        if value is not None:
            kwargs[name] = value
    return kwargs


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_json_schema", None)
    if callable(dump):  # a pydantic response_format class
        return dump()
    raise TypeError(f"batch line parameter of type {type(value).__name__} is not JSON")
