"""The ``cachesaver`` lm-eval model type (see the package docstring)."""
from __future__ import annotations

from typing import Any, Optional

from lm_eval.api.registry import register_model
from lm_eval.models.litellm_llms import LiteLLMChatCompletion

__all__ = ["CacheSaverChatLM", "UNSUPPORTED"]

UNSUPPORTED = (
    "the cachesaver lm-eval model serves generate_until only (generation tasks, e.g. with repeats); "
    "{what} needs prompt log-probabilities, which chat-completions APIs do not return: "
    "run this task with a local model type (hf, vllm) instead"
)


class _RouterCalls:
    """Stands in for the ``litellm`` module lm-eval's LiteLLM model calls: ``completion`` and
    ``acompletion`` go to this model's router, with its namespace in the call's metadata."""

    def __init__(self, router: Any, namespace: str) -> None:
        self.router = router
        self.namespace = namespace

    def _metadata(self, kwargs: dict) -> dict:
        metadata = dict(kwargs.pop("metadata", None) or {})
        metadata.setdefault("cachesaver_namespace", self.namespace)
        return metadata

    def completion(self, **payload: Any) -> Any:
        return self.router.completion(metadata=self._metadata(payload), **_without_unset_seed(payload))

    async def acompletion(self, **payload: Any) -> Any:
        return await self.router.acompletion(metadata=self._metadata(payload), **_without_unset_seed(payload))


def _without_unset_seed(payload: dict) -> dict:
    """The payload without ``seed`` when none was given (see ``CacheSaverChatLM``)."""
    if payload.get("seed") is None:
        payload.pop("seed", None)
    return payload


@register_model("cachesaver", "cachesaver-chat")
class CacheSaverChatLM(LiteLLMChatCompletion):
    """lm-eval's LiteLLM chat model with its calls through a ``CacheSaverRouter``.

    No ``seed`` is sent unless the model args give one: lm-eval sends ``seed=1234`` with every
    request by default, and a provider that honours seeds (OpenAI, best effort) then answers the
    ``k`` copies of a ``repeats: k`` prompt alike, which defeats fresh sampling. Reproducibility
    comes from the store instead (a rerun replays the stored samples). A ``seed=`` model arg is
    sent as given (and keyed).
    """

    def __init__(self, model: Optional[str] = None, *, store: str = "./.cachesaver", namespace: Optional[str] = None,
                 run_id: Optional[str] = None, offline: Any = False, base_url: Optional[str] = None,
                 api_key: Optional[str] = None, **kwargs: Any) -> None:
        from cachesaver.errors import InvalidRequestError
        from cachesaver.runtime import check_namespace
        from cachesaver_litellm import CacheSaverRouter

        if not model:
            raise InvalidRequestError(
                "--model cachesaver needs the model: --model_args model=openai/gpt-4o-mini,store=./.cachesaver")
        namespace = namespace or f"lm-eval/{model}"
        check_namespace(namespace, "namespace", "--model_args namespace=my-eval")
        seed = kwargs.pop("seed", None)
        # lm-eval gives the endpoint as base_url; litellm takes it per deployment (api_base).
        super().__init__(model=model, base_url=None, **kwargs)
        self._seed = int(seed) if seed is not None else None  # type: ignore[assignment]  # None: send none
        params: dict[str, Any] = {"model": model}
        if base_url:
            params["api_base"] = base_url
        if api_key:
            params["api_key"] = api_key
        self.cachesaver_router = CacheSaverRouter(model_list=[{"model_name": model, "litellm_params": params}],
                                                  store=store, run_id=run_id, namespace=namespace,
                                                  offline=_flag(offline))
        self._litellm = _RouterCalls(self.cachesaver_router, namespace)

    def loglikelihood(self, requests: Any, **kwargs: Any) -> Any:
        from cachesaver.errors import InvalidRequestError

        raise InvalidRequestError(UNSUPPORTED.format(what="loglikelihood (multiple-choice tasks)"))

    def loglikelihood_rolling(self, requests: Any, **kwargs: Any) -> Any:
        from cachesaver.errors import InvalidRequestError

        raise InvalidRequestError(UNSUPPORTED.format(what="loglikelihood_rolling (perplexity tasks)"))


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
