"""DSPy on CacheSaver: fresh samples within a run, exact replays across runs, threads included.

::

    import dspy, cachesaver_litellm
    from cachesaver_litellm.dspy import CacheSaverLM, Evaluate

    cachesaver_litellm.register(store="./.cachesaver")
    lm = CacheSaverLM("cachesaver/openai/gpt-4o-mini", namespace="cot-v1", temperature=0.7)
    dspy.configure(lm=lm)
    program = dspy.ChainOfThought("question -> answer")
    Evaluate(devset=devset, metric=metric, num_threads=8)(program, namespace="run-1")

How DSPy's notions map onto CacheSaver:

- **DSPy's cache is off.** DSPy caches every call before litellm is reached, which would hand one
  answer to k calls and hide every call from CacheSaver. :class:`CacheSaverLM` refuses
  ``cache=True``; a plain ``dspy.LM("cachesaver/...")`` with its cache on gets one loud WARNING.
- **Namespace** = one run of a program or one evaluation arm. Per call, the first of: the call's
  own ``metadata={"cachesaver_namespace": ...}``; the innermost ``with namespace("..."):`` (a
  ``dspy.context`` setting, so DSPy's worker threads inherit it); ``CacheSaverLM(namespace=...)``;
  else the provider's default namespace.
- **rollout_id**: in DSPy 3.x an integer that only separates *DSPy cache* entries (BestOfN and
  Refine copy the LM with ``rollout_id=i``); DSPy strips it before litellm. With DSPy's cache off
  repeated calls in a namespace already get distinct samples, so it changes no sample; it becomes
  the call's ``cachesaver_request_id`` (zero-padded), which orders calls that meet in one batch.
- **Hits before litellm**: a full hit is served from the engine on the caller's thread, where
  DSPy answers its own cache hits, with the samples, ledger positions and flags the provider
  would give (see :mod:`cachesaver_litellm._dspy_fastpath`); misses take the normal path.
- **Evaluate with threads**: :class:`Evaluate` gives each example its own namespace,
  ``<namespace>/example-<position>``. Why: threads reach the model in any order, and within one
  namespace the k-th call of a prompt gets sample k-1, so two examples sending the same prompt
  would swap samples from run to run. Per-example namespaces make the example's position, not
  thread timing, decide its samples: a replay is exact for any ``num_threads``. The price: two
  examples that send the very same prompt get the same sample (as two runs would).
  ``per_example=False`` keeps one namespace for the whole evaluation (samples i.i.d. across
  examples; exact replay only when no two examples send the same prompt).
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Optional

import dspy

from . import _dspy_fastpath, _dspy_guard
from ._callback import record_call
from ._capabilities import inner_model, mirror_model
from ._samples import build_plain_response, plain_structure

try:  # DSPy 3.4's execution path: its cache answers there, and so do CacheSaver hits (see below)
    from dspy.clients._deprecation import warn_openai_messages
    from dspy.clients.base_lm import BaseLM
    from dspy.clients.call_result import CallResult
    from dspy.clients.execution import finalize, prepare
    from dspy.clients.legacy_outputs import plain, value
    from dspy.utils.callback import with_callbacks
except ImportError:  # pragma: no cover - another DSPy: every call takes the normal path
    _FAST = False
    with_callbacks = None
else:
    _FAST = True

__all__ = ["CacheSaverLM", "Evaluate", "namespace", "current_namespace", "SETTING"]

NAMESPACE_KEY = "cachesaver_namespace"
REQUEST_ID_KEY = "cachesaver_request_id"
#: The ``dspy.context``/``dspy.settings`` key holding the active namespace.
SETTING = "cachesaver_namespace"

#: Position of the example the current thread is running for :class:`Evaluate` (None outside).
_example_position: contextvars.ContextVar[Optional[int]] = contextvars.ContextVar(
    "cachesaver_dspy_example_position", default=None
)
#: The ``dspy.context`` key saying the running :class:`Evaluate` wants per-example namespaces
#: (a DSPy setting, not a contextvar: DSPy hands its settings to its worker threads).
PER_EXAMPLE_SETTING = "cachesaver_per_example"

_dspy_guard.install()


@contextlib.contextmanager
def namespace(name: str) -> Iterator[None]:
    """Run the block's ``CacheSaverLM`` calls in namespace ``name`` (DSPy's threads inherit it)."""
    _check_namespace(name, "namespace")
    with dspy.context(**{SETTING: name}):
        yield


def current_namespace() -> Optional[str]:
    """The namespace set by the innermost :func:`namespace` block, or None."""
    return dspy.settings.get(SETTING)


def _check_namespace(value: Any, field: str) -> None:
    from cachesaver.checks import check_namespace

    check_namespace(value, field)


class CacheSaverLM(dspy.LM):
    """``dspy.LM`` for ``cachesaver/<model>``: DSPy's cache off, namespaces from DSPy's context.

    Takes every ``dspy.LM`` argument except ``cache`` (always False: see the module docstring)
    plus ``namespace``. The model's capabilities are litellm's answers for the inner model (so
    DSPy's adapters pick ``json_schema``/tools exactly as they would without CacheSaver).
    """

    def __init__(self, model: str, *, namespace: Optional[str] = None, cache: bool = False, **kwargs: Any):
        from cachesaver.errors import InvalidRequestError

        if inner_model(model) is None:
            raise InvalidRequestError(
                f"CacheSaverLM needs a 'cachesaver/<litellm model>' name, got {model!r}: "
                f"write 'cachesaver/{model}'"
            )
        if cache:
            raise InvalidRequestError(
                "CacheSaverLM(cache=True): DSPy's cache would answer repeated calls before CacheSaver sees "
                "them (one answer for k samples, no namespaces); drop cache= (CacheSaver is the cache)"
            )
        if namespace is not None:
            _check_namespace(namespace, "namespace")
        super().__init__(model, cache=False, **kwargs)
        self.namespace = namespace
        mirror_model(model)  # capabilities of the inner model, exactly (DSPy's adapters ask litellm)

    # DSPy's adapters call the LM through __call__/acall. A full hit is answered there, from the
    # engine on the caller's thread, where DSPy answers its own cache hits (before any engine or
    # litellm runs); DSPy's callbacks, history and usage tracker see it as any call. Everything
    # else is DSPy's own __call__/acall body: forward/aforward stay DSPy's, so DSPy keeps managing
    # retries, history and usage (see cachesaver_litellm._dspy_fastpath).
    def __call__(self, prompt=None, *, messages=None, **kwargs):
        return self._lm_call(prompt, messages=messages, **self._cachesaver_kwargs(kwargs))

    async def acall(self, prompt=None, *, messages=None, **kwargs):
        return await self._lm_acall(prompt, messages=messages, **self._cachesaver_kwargs(kwargs))

    def _plan(self, prompt, messages, kwargs, asynchronous: bool) -> Optional[_dspy_fastpath.Plan]:
        if not _FAST:
            return None
        return _dspy_fastpath.plan(self, prompt, messages, kwargs, asynchronous=asynchronous, prepare=prepare,
                                   send_stream=dspy.settings.send_stream)

    def _answer_hit(self, plan: _dspy_fastpath.Plan, messages: Any, result: Any) -> Any:
        """A served hit, finished as DSPy finishes a call of this LM on its LiteLLM path: the
        provider's response (as the normal path builds it), DSPy's outputs, history and usage."""
        request = plan.request
        assert request is not None
        warn_openai_messages(self, messages)
        structure = plain_structure(result)
        response = build_plain_response(result, namespace=request.namespace, request_id=request.request_id,
                                        key=result.key or "", model=request.model, provider=plan.provider,
                                        structure=structure)
        record_call(response._hidden_params["cachesaver"], response)  # as the provider does
        if structure is None or structure[3] == "length":  # (DSPy warns of a truncated answer)
            self._check_truncation(response)
        legacy = plan.call.legacy
        if structure is not None and not legacy.get("logprobs"):
            # What CallResult.legacy makes of one choice of plain text (DSPy's _process_completion:
            # only "text" -> a list of texts), without its generic walk of the response.
            outcome = CallResult(outputs=[response.choices[0].message.content],
                                 usage=_usage_dict(response.usage),
                                 cost=response._hidden_params.get("response_cost"), raw=response,
                                 response_model=value(response, "model", self.model))
        else:
            outcome = CallResult.legacy(self, response, kwargs=legacy)
        return finalize(self, plan.call, outcome)

    if _FAST:
        @with_callbacks
        def _lm_call(self, prompt=None, *, messages=None, **kwargs):
            plan = self._plan(prompt, messages, kwargs, asynchronous=False)
            if plan is not None and plan.request is not None:
                result = plan.hit_now()
                if result is not None:
                    return self._answer_hit(plan, messages, result)
            with _dspy_fastpath.learning(plan):
                return BaseLM.__call__.__wrapped__(self, prompt, messages=messages, **kwargs)

        @with_callbacks
        async def _lm_acall(self, prompt=None, *, messages=None, **kwargs):
            plan = self._plan(prompt, messages, kwargs, asynchronous=True)
            if plan is not None:
                kwargs = plan.kwargs or kwargs  # an async call numbered at issue keeps its number
                if plan.request is not None:
                    result = await plan.hit_async()
                    if result is not None:
                        return self._answer_hit(plan, messages, result)
            with _dspy_fastpath.learning(plan):
                return await BaseLM.acall.__wrapped__(self, prompt, messages=messages, **kwargs)
    else:  # pragma: no cover - another DSPy
        def _lm_call(self, prompt=None, *, messages=None, **kwargs):
            return super().__call__(prompt, messages=messages, **kwargs)

        async def _lm_acall(self, prompt=None, *, messages=None, **kwargs):
            return await super().acall(prompt, messages=messages, **kwargs)

    def _cachesaver_kwargs(self, kwargs: dict) -> dict:
        """The call's kwargs with ``metadata`` carrying namespace and request id (a new dict)."""
        from cachesaver.errors import InvalidRequestError

        if kwargs.get("cache"):
            raise InvalidRequestError("cache=True on a CacheSaverLM call: DSPy's cache would hide the call")
        lm_metadata = self.kwargs.get("metadata") or {}
        call_metadata = kwargs.get("metadata") or {}
        # DSPy replaces the LM's metadata with the call's: merge them, the call's keys winning.
        metadata = {**lm_metadata, **call_metadata}
        if NAMESPACE_KEY not in call_metadata:
            chosen = self._namespace(lm_metadata.get(NAMESPACE_KEY))
            if chosen is not None:
                metadata[NAMESPACE_KEY] = chosen
        rollout = kwargs.get("rollout_id", self.kwargs.get("rollout_id"))
        if REQUEST_ID_KEY not in metadata and isinstance(rollout, int) and not isinstance(rollout, bool):
            metadata[REQUEST_ID_KEY] = f"rollout-{rollout:012d}"
        if not metadata:
            return kwargs
        return {**kwargs, "metadata": metadata}

    def _namespace(self, from_lm_metadata: Optional[str]) -> Optional[str]:
        """Scope, then this LM's namespace, then its metadata; per example inside :class:`Evaluate`."""
        base = current_namespace() or self.namespace or from_lm_metadata
        position = _example_position.get()
        if position is None or not dspy.settings.get(PER_EXAMPLE_SETTING):
            return base
        return f"{base or 'default'}/example-{position}"

    def copy(self, **kwargs):
        if kwargs.get("cache"):
            from cachesaver.errors import InvalidRequestError

            raise InvalidRequestError("CacheSaverLM.copy(cache=True): DSPy's cache would hide the calls")
        return super().copy(**kwargs)

    def dump_state(self) -> dict:
        state = super().dump_state()
        state["namespace"] = self.namespace
        state.pop("cache", None)
        return state


def _usage_dict(usage: Any) -> dict:
    """``plain(dict(usage))`` (DSPy's usage figure of a call) for a litellm ``Usage`` whose
    fields are all numbers or None, read from its field dict; any other through ``plain``."""
    fields = getattr(usage, "__dict__", None)
    if (type(fields) is dict and not getattr(usage, "__pydantic_extra__", True)
            and all(item is None or type(item) is int or type(item) is float for item in fields.values())):
        return {name: item for name, item in fields.items() if not name.startswith("_")}
    return plain(dict(usage or {}))


class _PositionedExample(dspy.Example):
    """An example that tells the current thread its devset position when DSPy reads its inputs.

    ``dspy.Evaluate`` runs ``program(**example.inputs())`` on a worker thread: ``inputs()`` is
    the last moment before the program runs on that thread, so the position set here is the one
    the program's LM calls see.
    """

    def inputs(self):
        position = self.__dict__.get("_cachesaver_position")
        if position is not None:
            _example_position.set(position)
        return super().inputs()


class Evaluate(dspy.Evaluate):
    """``dspy.Evaluate`` whose replay is exact for any ``num_threads`` (see the module docstring).

    ``namespace=`` (constructor or call) names this evaluation; ``per_example=True`` (default)
    runs example i in ``<namespace>/example-<i>``. Results hold the caller's own examples.
    """

    def __init__(self, *, namespace: Optional[str] = None, per_example: bool = True, **kwargs: Any):
        if namespace is not None:
            _check_namespace(namespace, "namespace")
        super().__init__(**kwargs)
        self.namespace = namespace
        self.per_example = bool(per_example)

    def __call__(self, program, metric=None, devset=None, *, namespace: Optional[str] = None, **kwargs):
        devset = devset if devset is not None else self.devset
        name = namespace if namespace is not None else self.namespace
        if name is not None:
            _check_namespace(name, "namespace")
        positioned = []
        for position, example in enumerate(devset or []):
            tagged = _PositionedExample(base=dict(example._store))
            tagged._input_keys = example._input_keys
            tagged._cachesaver_position = position
            positioned.append(tagged)
        # A private context: the sequential path (num_threads=1) runs on this thread, and the
        # example position must not outlive the evaluation.
        result = contextvars.copy_context().run(self._run, program, metric, positioned, name, kwargs)
        if devset:
            result.results = [(original, prediction, score)
                              for original, (_, prediction, score) in zip(devset, result.results)]
        return result

    def _run(self, program, metric, devset, name, kwargs):
        settings = {PER_EXAMPLE_SETTING: self.per_example}
        if name is not None:
            settings[SETTING] = name
        with dspy.context(**settings):
            return super().__call__(program, metric=metric, devset=devset, **kwargs)
