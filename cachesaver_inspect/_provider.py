"""``cachesaver/<inner model>``: an Inspect ``ModelAPI`` that wraps the inner Inspect model.

Why wrap the inner ``ModelAPI`` (and not route through litellm): every provider Inspect has keeps
its own conversion of messages, tools, structured output and reasoning; CacheSaver only decides
which stored sample each call gets and asks the inner model for the missing ones (:mod:`._model`).

Identity of a call (what makes epochs fresh and reruns exact):

- **run** = one eval (Inspect's ``eval_id``): each eval gets its own ledger, so the same eval run
  again (in a new process or the same one) replays from the first stored sample. ``run_id=``
  shares one ledger across processes instead. An Inspect hook closes the eval's pipeline when
  the task ends (its last request-id records are written then, see below).
- **namespace** = ``inspect/<run_name>/<task>/<inner model>`` (``run_name`` defaults to
  ``default``; ``namespace=`` replaces the whole string). Within it, epochs and repeated
  ``generate`` calls with the same input take successive fresh samples; another task or run name
  starts from the first stored sample again and reuses what is stored.
- **request id** = ``<sample id>/epoch-<e>/call-<c>`` (``c`` counts this sample's generate calls,
  from 0): the positions an id took are recorded in the store, so a replay is exact whatever
  order Inspect schedules samples and epochs in. Outside a sample (a bare ``model.generate``),
  calls are ordered by arrival. A failed attempt gives its ``c`` back (:class:`_CallIndex`):
  Inspect retries a failed call (a rate limit, a 5xx) by calling ``generate`` again, and that
  retry is the same call of the sample, so it must get the same id; counting attempts would
  shift every later call of the sample and the rerun, which has no failure, would miss.

Inspect's own cache (``cache=True`` on ``generate``) would answer before this provider is
reached and replay one output for every epoch: a call that arrives with it on is refused.

Usage: a generated sample reports its share of the call's tokens; a stored sample reports zero
(it cost nothing). ``ModelOutput.metadata["cachesaver"]`` says, per call: ``cached`` (one flag
per choice), ``namespace``, ``request_id``, ``key`` and ``sample_usage`` (what each sample cost
when it was generated). The eval log keeps that metadata with every model event.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Optional

from inspect_ai.hooks import Hooks, TaskEnd, hooks
from inspect_ai.model import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    get_model,
    modelapi,
)
from inspect_ai.tool import ToolChoice, ToolInfo

from ._codec import key_messages, key_params, read_sample
from ._model import InnerModel, InspectRequest, LiveCall

__all__ = ["CacheSaverAPI", "OWN_ARGS"]

#: Model args (``-M``) this provider reads; every other one goes to the inner model.
OWN_ARGS = ("store", "run_name", "namespace", "run_id", "offline")
DEFAULT_STORE = "./.cachesaver"


class CacheSaverAPI(ModelAPI):
    """See the module docstring. ``model_name`` is the inner Inspect model, e.g. ``openai/gpt-4o-mini``."""

    def __init__(self, model_name: str, base_url: Optional[str] = None, api_key: Optional[str] = None,
                 config: Optional[GenerateConfig] = None, **model_args: Any) -> None:
        from cachesaver.checks import check_namespace
        from cachesaver.errors import InvalidRequestError
        from cachesaver.opening import open_store

        config = config if config is not None else GenerateConfig()
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)
        if "/" not in model_name:
            raise InvalidRequestError(
                f"cachesaver/{model_name}: name the inner Inspect model with its provider, "
                f"e.g. --model cachesaver/openai/{model_name}")
        own = {k: model_args.pop(k) for k in OWN_ARGS if k in model_args}
        self.run_name = str(own.get("run_name") or "default")
        self.fixed_namespace: Optional[str] = own.get("namespace")
        if self.fixed_namespace is not None:
            check_namespace(self.fixed_namespace, "namespace", "-M namespace=my-eval")
        self.run_id: Optional[str] = own.get("run_id")
        self.offline = _flag(own.get("offline", False))
        self.store = open_store(own.get("store") or DEFAULT_STORE)
        self.inner = get_model(model_name, config=config, base_url=base_url, api_key=api_key,
                               memoize=False, **model_args).api
        self._pipelines: dict[Optional[str], Any] = {}
        self._calls: "weakref.WeakKeyDictionary[Any, _CallIndex]" = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        _open_apis.add(self)

    # -- generate ----------------------------------------------------------------------------------
    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> ModelOutput:
        from cachesaver.runtime import check_n

        _refuse_inspect_cache(config)
        eval_id, namespace, request_id, release = self._identity()
        request = InspectRequest(
            prompt=key_messages(input),
            n=check_n(config.num_choices or 1),
            request_id=request_id,
            namespace=namespace,
            params=key_params(self.model_name, tools, tool_choice, config),
            call=LiveCall(list(input), list(tools), tool_choice, config),
        )
        try:
            response = await self._hosted(eval_id).request_async(request)
        except BaseException:
            release()  # nothing was stored for this attempt: its retry takes the same request id
            raise
        decoded = [read_sample(sample) for sample in response.data]
        shares = response.sample_usage or []
        billed = [share for share, cached in zip(shares, response.cached) if not cached]
        prompt = sum(u.prompt_tokens for u in billed)
        completion = sum(u.completion_tokens for u in billed)
        return ModelOutput(
            model=decoded[0][1] if decoded else self.model_name,
            choices=[choice for choice, _ in decoded],
            usage=ModelUsage(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion,
                             total_cost=sum(u.cost for u in billed) if any(u.cost for u in billed) else None),
            metadata={"cachesaver": {
                "cached": list(response.cached),
                "namespace": namespace,
                "request_id": request_id,
                "key": response.key,
                "sample_usage": [{"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens}
                                 for u in shares],
            }},
        )

    def _identity(self) -> tuple[Optional[str], str, str, Callable[[], None]]:
        """``(eval id, namespace, request id, release)`` of the call (see the module docstring);
        ``release()`` gives the call index back when the attempt fails."""
        from inspect_ai.log._samples import sample_active

        active = sample_active()
        if active is None:
            return None, self.fixed_namespace or f"inspect/{self.run_name}/{self.model_name}", "", _nothing
        with self._lock:
            index = self._calls.get(active)
            if index is None:
                index = self._calls[active] = _CallIndex()
            call = index.take()
        namespace = self.fixed_namespace or f"inspect/{self.run_name}/{active.task}/{self.model_name}"

        def release() -> None:
            with self._lock:
                index.give_back(call)

        return active.eval_id, namespace, f"{active.sample.id}/epoch-{active.epoch:06d}/call-{call:06d}", release

    def _hosted(self, eval_id: Optional[str]) -> Any:
        """The pipeline (one run) of an eval: built on its first call."""
        from cachesaver.runtime import HostedPipeline, PipelineSettings

        with self._lock:
            hosted = self._pipelines.get(eval_id)
            if hosted is None:
                settings = PipelineSettings(self.store, run_id=self.run_id, extra={"offline": self.offline})
                inner, name = self.inner, self.model_name
                hosted = self._pipelines[eval_id] = HostedPipeline(lambda: InnerModel(inner, name), settings)
            return hosted

    async def end_eval(self, eval_id: str) -> None:
        """Close the run of a finished eval (writes its last request-id records)."""
        with self._lock:
            hosted = self._pipelines.pop(eval_id, None)
        if hosted is not None:
            await hosted.aclose()

    # -- the inner model's answers ---------------------------------------------------------------
    async def aclose(self) -> None:
        with self._lock:
            pipelines, self._pipelines = list(self._pipelines.values()), {}
        for hosted in pipelines:
            await hosted.aclose()
        await self.inner.aclose()

    def max_tokens(self) -> Optional[int]:
        return self.inner.max_tokens()

    def max_tokens_for_config(self, config: GenerateConfig) -> Optional[int]:
        return self.inner.max_tokens_for_config(config)

    def max_connections(self) -> int:
        return self.inner.max_connections()

    def connection_key(self) -> str:
        return self.inner.connection_key()

    def should_retry(self, ex: Exception) -> Any:
        from cachesaver.errors import CacheSaverError

        if isinstance(ex, CacheSaverError):  # a bad request, an offline miss: retrying changes nothing
            return False
        return self.inner.should_retry(ex)

    def is_auth_failure(self, ex: Exception) -> bool:
        return self.inner.is_auth_failure(ex)

    def collapse_user_messages(self) -> bool:
        return self.inner.collapse_user_messages()

    def collapse_assistant_messages(self) -> bool:
        return self.inner.collapse_assistant_messages()

    def collapse_system_messages(self) -> bool:
        return self.inner.collapse_system_messages()

    def tools_required(self) -> bool:
        return self.inner.tools_required()

    def tool_result_images(self) -> bool:
        return self.inner.tool_result_images()

    def tool_result_documents(self) -> bool:
        return self.inner.tool_result_documents()

    def force_reasoning_history(self) -> Any:
        return self.inner.force_reasoning_history()

    def auto_reasoning_history(self) -> Any:
        return self.inner.auto_reasoning_history()

    def canonical_name(self) -> str:
        return self.inner.canonical_name()


class _CallIndex:
    """The generate-call indices of one sample (epoch): the lowest index given back by a failed
    attempt is taken first, else the next new one. Sequential calls (a solver, an agent loop)
    so number their successful calls 0, 1, 2, ... however many attempts failed in between."""

    def __init__(self) -> None:
        self.next = 0
        self.free: list[int] = []

    def take(self) -> int:
        if self.free:
            self.free.sort()
            return self.free.pop(0)
        self.next += 1
        return self.next - 1

    def give_back(self, call: int) -> None:
        self.free.append(call)


def _nothing() -> None:
    return None


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _refuse_inspect_cache(config: GenerateConfig) -> None:
    """Inspect's cache in front of CacheSaver would replay one output per epoch: refuse it."""
    from cachesaver.errors import InvalidRequestError

    event = None
    try:
        from inspect_ai.log._samples import _active_model_event

        event = _active_model_event.get()
    except ImportError:  # pragma: no cover - a later Inspect moved it; config.cache still checked
        pass
    if config.cache or getattr(event, "cache", None) is not None:
        raise InvalidRequestError(
            "Inspect's cache is on for a cachesaver/ model (generate(cache=...) or GenerateConfig.cache): "
            "it would answer before CacheSaver and replay one output per epoch; drop cache= "
            "(CacheSaver is the cache)")


#: Every live provider instance, for the task-end hook.
_open_apis: "weakref.WeakSet[CacheSaverAPI]" = weakref.WeakSet()


@hooks(name="cachesaver", description="Closes a cachesaver/ model's run when its eval's task ends.")
class EvalEnd(Hooks):
    async def on_task_end(self, data: TaskEnd) -> None:
        for api in list(_open_apis):
            await api.end_eval(data.eval_id)


@modelapi(name="cachesaver")
def cachesaver() -> type[ModelAPI]:
    return CacheSaverAPI
