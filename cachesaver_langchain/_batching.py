"""``batch``/``abatch`` whose inputs are served as one group, in input order.

LangChain's own ``batch`` runs ``invoke`` in a thread pool (``abatch``: concurrent ``ainvoke``
tasks, whose sync callback handlers run in threads): the inputs reach the model in whatever
order the scheduler picks, so identical inputs of one namespace would take that namespace's
samples in a different order on every run, and a replay would hand them to different inputs
(G4). Here every input carries its place in a runtime group (``HostedPipeline.group``); the
group is served once all its inputs have arrived (or failed before reaching the model), in
request-id then input order, so the position decides. With ``max_concurrency`` the inputs form
consecutive groups of that size, so no input waits for one that cannot start.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

from langchain_core.runnables import RunnableConfig, ensure_config
from langchain_core.runnables.config import get_config_list, get_executor_for_config
from langchain_core.runnables.utils import gather_with_concurrency

from cachesaver.runtime import HostedPipeline

from ._calls import SCOPE_KW, Scope

__all__ = ["run_batch", "arun_batch", "member_of", "leave_group"]


def _scopes(hosted: HostedPipeline, configs: list[RunnableConfig], limit: Optional[int]) -> list[Scope]:
    """Each input's place: consecutive groups of at most ``limit`` (the calls that can run at
    once), so no input waits for one that cannot start."""
    size = len(configs)
    limit = limit or size
    scopes = []
    for start in range(0, size, limit):
        group = hosted.group(min(limit, size - start))
        for position in range(min(limit, size - start)):
            config = ensure_config(configs[start + position])
            scopes.append(Scope(config.get("metadata") or {}, member=group.member(position)))
    return scopes


def run_batch(hosted: HostedPipeline, invoke: Callable[..., Any], inputs: Sequence[Any],
              config: Any, return_exceptions: bool, kwargs: dict[str, Any]) -> list[Any]:
    configs = get_config_list(config, len(inputs))
    with get_executor_for_config(configs[0]) as executor:
        # A thread pool runs at most its worker count at once (LangChain's default pool has
        # os.cpu_count() + 4 workers whatever max_concurrency says).
        workers = getattr(executor, "_max_workers", None) or configs[0].get("max_concurrency")
        scopes = _scopes(hosted, configs, workers)
        return list(executor.map(lambda i: _one(i, invoke, inputs, configs, scopes, return_exceptions, kwargs),
                                 range(len(inputs))))


def _one(i: int, invoke: Callable[..., Any], inputs: Sequence[Any], configs: list[RunnableConfig],
         scopes: list[Scope], return_exceptions: bool, kwargs: dict[str, Any]) -> Any:
    try:
        return invoke(inputs[i], configs[i], **{**kwargs, SCOPE_KW: scopes[i]})
    except Exception as exc:
        if return_exceptions:
            return exc
        raise
    finally:
        scopes[i].member.leave()  # failed before reaching the model: others stop waiting


async def arun_batch(hosted: HostedPipeline, ainvoke: Callable[..., Any], inputs: Sequence[Any],
                     config: Any, return_exceptions: bool, kwargs: dict[str, Any]) -> list[Any]:
    configs = get_config_list(config, len(inputs))
    limit: Optional[int] = configs[0].get("max_concurrency")
    scopes = _scopes(hosted, configs, limit)

    async def one(i: int) -> Any:
        try:
            return await ainvoke(inputs[i], configs[i], **{**kwargs, SCOPE_KW: scopes[i]})
        except Exception as exc:
            if return_exceptions:
                return exc
            raise
        finally:
            scopes[i].member.leave()

    return await gather_with_concurrency(limit, *(one(i) for i in range(len(inputs))))


def member_of(kwargs: Mapping[str, Any]) -> Any:
    """The batch place a call carries (None outside ``batch``/``abatch``)."""
    scope = kwargs.get(SCOPE_KW)
    return scope.member if isinstance(scope, Scope) else None


def leave_group(kwargs: Mapping[str, Any]) -> None:
    """A streamed call (LangChain streams inside a batch when a handler asks for tokens) is
    not served with its batch: the batch stops waiting for it."""
    member = member_of(kwargs)
    if member is not None:
        member.leave()
