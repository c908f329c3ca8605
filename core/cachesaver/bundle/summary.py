"""The human-readable part of a bundle's manifest: models, namespaces, samples, tokens, dollars.

Every sample record carries its share of what its model call billed (see
:mod:`cachesaver.codec`), so a bundle knows what it stands for: what generating its samples
once cost (``cost``), and what the recorded runs would have paid with no cache at all
(``consumed_cost``: every namespace of every run paying for every sample it was handed; runs
that reuse namespace names count once each).
The summary is recomputed from the samples by ``verify``: an edited figure is refused.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import orjson

from ..codec import decode_sample
from ..display import request_model

__all__ = ["summarize", "render_summary", "model_of"]

#: Rounding of the sums, so that the same samples always give the same JSON.
_COST_DIGITS = 9
_TOKEN_DIGITS = 3


def model_of(meta: Optional[bytes]) -> str:
    """The model a key's canonical request names, or ``"-"``."""
    if meta is None:
        return "-"
    try:
        obj = orjson.loads(meta)
    except orjson.JSONDecodeError:
        return "-"
    return request_model(obj)  # the CLI's rule, so `inspect` and a bundle's summary agree


def _usage(raws: list[bytes], key: str, count: int) -> tuple[float, float, float]:
    pt = ct = cost = 0.0
    for i, raw in enumerate(raws[:count]):
        record = decode_sample(raw, key=key, index=i)
        pt += record.prompt_tokens
        ct += record.completion_tokens
        cost += record.cost
    return pt, ct, cost


def _figures(pt: float, ct: float, cost: float) -> dict[str, float]:
    return {"prompt_tokens": round(pt, _TOKEN_DIGITS), "completion_tokens": round(ct, _TOKEN_DIGITS),
            "cost": round(cost, _COST_DIGITS)}


def summarize(samples: Mapping[str, list[bytes]], metas: Mapping[str, Optional[bytes]],
              consumption: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """The summary of a bundle holding ``samples`` per key, recorded with ``consumption``."""
    pt = ct = cost = 0.0
    for key in sorted(samples):
        a, b, c = _usage(samples[key], key, len(samples[key]))
        pt, ct, cost = pt + a, ct + b, cost + c
    # What the runs consumed: each run counts on its own, also where runs share namespace names
    # (a re-run is paid again without a cache). Per namespace, the sum over runs.
    runs = getattr(consumption, "runs", None) or {"": consumption}
    per_namespace: dict[str, list[float]] = {}
    keys_of: dict[str, set[str]] = {}
    for positions in runs.values():
        for namespace in sorted(positions):
            figures = per_namespace.setdefault(namespace, [0.0, 0.0, 0.0, 0])
            for key, count in sorted(positions[namespace].items()):
                a, b, c = _usage(samples.get(key, []), key, count)
                figures[0], figures[1], figures[2], figures[3] = (figures[0] + a, figures[1] + b,
                                                                  figures[2] + c, figures[3] + count)
                keys_of.setdefault(namespace, set()).add(key)
    namespaces = {}
    cpt = cct = ccost = 0.0
    consumed = 0
    for namespace in sorted(per_namespace):
        npt, nct, ncost, n = per_namespace[namespace]
        namespaces[namespace] = {"keys": len(keys_of[namespace]), "samples": int(n), **_figures(npt, nct, ncost)}
        cpt, cct, ccost, consumed = cpt + npt, cct + nct, ccost + ncost, consumed + int(n)
    return {
        "models": sorted({model_of(metas.get(key)) for key in samples}),
        "keys": len(samples),
        "samples": sum(len(v) for v in samples.values()),
        **_figures(pt, ct, cost),
        "consumed_samples": consumed,
        "consumed_cost": round(ccost, _COST_DIGITS),
        "consumed_tokens": round(cpt + cct, _TOKEN_DIGITS),
        "namespaces": namespaces,
    }


def _dollars(x: float) -> str:
    return f"${x:,.4f}" if x >= 0.01 or x == 0 else f"${x:.3g}"


def render_summary(summary: Mapping[str, Any], max_namespaces: int = 12) -> str:
    """A few lines for people: what the bundle holds and what it stands for."""
    lines = [
        f"models: {', '.join(summary['models']) or '-'}",
        f"{summary['keys']} prompts, {summary['samples']} samples "
        f"({summary['prompt_tokens'] + summary['completion_tokens']:,.0f} tokens, {_dollars(summary['cost'])} to generate once)",
        f"the recorded runs consumed {summary['consumed_samples']} samples "
        f"({summary['consumed_tokens']:,.0f} tokens, {_dollars(summary['consumed_cost'])} without a cache)",
    ]
    spaces = list(summary["namespaces"].items())
    for namespace, figures in spaces[:max_namespaces]:
        lines.append(f"  namespace {namespace!r}: {figures['keys']} prompts, {figures['samples']} samples, "
                     f"{_dollars(figures['cost'])}")
    if len(spaces) > max_namespaces:
        lines.append(f"  ... and {len(spaces) - max_namespaces} more namespaces (all in the manifest)")
    return "\n".join(lines)
