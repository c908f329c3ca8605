"""What a pipeline did and what it saved, per namespace and in total.

Billing follows G8: a generated sample is billed to the one response that claimed it first;
every other delivery of it counts as saved. A call's usage is split evenly over its samples and
the share is stored with each sample, so a hit in a later run knows what it saved.

Read it as ``x.stats()`` on every surface (see :meth:`Stats.__call__`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["Counters", "Stats"]


@dataclass
class Counters:
    requests: int = 0
    samples_asked: int = 0
    samples_from_store: int = 0      # delivered with cached=True
    samples_generated: int = 0       # delivered with cached=False (billed here)
    samples_merged: int = 0          # delivered with duplicated=True
    model_calls: int = 0             # calls whose original sample went to this namespace
    prompt_tokens_billed: float = 0
    completion_tokens_billed: float = 0
    cost_billed: float = 0.0
    prompt_tokens_saved: float = 0
    completion_tokens_saved: float = 0
    cost_saved: float = 0.0

    def add(self, other: "Counters") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Stats:
    """Counters per namespace plus pipeline-wide model-call figures."""

    namespaces: dict[str, Counters] = field(default_factory=dict)
    model_calls: int = 0             # calls actually made to the model
    samples_requested: int = 0       # sum of n sent to the model
    samples_returned: int = 0        # samples the model returned (stored)
    failed_calls: int = 0

    def ns(self, namespace: str) -> Counters:
        counters = self.namespaces.get(namespace)
        if counters is None:
            counters = self.namespaces[namespace] = Counters()
        return counters

    @property
    def total(self) -> Counters:
        out = Counters()
        for counters in self.namespaces.values():
            out.add(counters)
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for programs (JSON-serialisable)."""
        return {
            "model_calls": self.model_calls,
            "samples_requested": self.samples_requested,
            "samples_returned": self.samples_returned,
            "failed_calls": self.failed_calls,
            "total": asdict(self.total),
            "namespaces": {ns: asdict(c) for ns, c in sorted(self.namespaces.items())},
        }

    def summary(self) -> str:
        """A small fixed-width table, one row per namespace and a total."""
        head = f"{'namespace':<20} {'req':>6} {'asked':>6} {'stored':>6} {'gen':>6} {'merged':>6} {'$ billed':>10} {'$ saved':>10}"
        lines = [head, "-" * len(head)]
        rows = sorted(self.namespaces.items()) + [("TOTAL", self.total)]
        for name, c in rows:
            lines.append(
                f"{name[:20]:<20} {c.requests:>6} {c.samples_asked:>6} {c.samples_from_store:>6} "
                f"{c.samples_generated:>6} {c.samples_merged:>6} {c.cost_billed:>10.6f} {c.cost_saved:>10.6f}"
            )
        lines.append(
            f"model calls: {self.model_calls} (failed {self.failed_calls}), samples requested from "
            f"the model: {self.samples_requested}, returned: {self.samples_returned}"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __call__(self) -> "Stats":
        """``stats()`` is the one spelling on every surface: ``pipeline.stats()``,
        ``chat.stats()`` (LangChain), ``router.stats()`` and ``cachesaver_litellm.stats()`` all
        return this object. The engine, LangChain model and router expose it as an attribute,
        so ``pipeline.stats.summary()`` (code written before) keeps working, unchanged."""
        return self
