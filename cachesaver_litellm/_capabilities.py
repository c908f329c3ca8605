"""``cachesaver/<model>`` reports exactly what ``<model>`` reports: model info, capabilities, prices.

litellm answers ``supports_function_calling``, ``supports_response_schema``, ``supports_vision``,
``get_model_info`` and ``cost_per_token`` by looking the model *name* up in ``litellm.model_cost``.
``cachesaver/openai/gpt-4o-mini`` is not in that map, so without help it "supports" nothing and has
no price, and frameworks that switch features on those answers (DSPy's ``JSONAdapter`` picks
``json_schema`` only when ``supports_response_schema`` is true) silently degrade.

The fix is a *mirror*: the inner model's row of ``litellm.model_cost``, copied under the outer
name with ``litellm_provider="cachesaver"`` (litellm only accepts a row whose provider matches the
name's provider). Then every litellm lookup, including ones this module never heard of, resolves
the outer name the way it resolves the inner one.

Two ways rows get there:

- :func:`mirror_known_models` (called by ``register()``): every chat/completion row of the map,
  under ``cachesaver/<key>`` and ``cachesaver/<provider>/<key>``. Measured with litellm 1.110
  (``benchmarks/bench_capabilities.py``): 4,456 names in ~15 ms and ~3 MB, written straight into
  ``litellm.model_cost``; a repeat on an unchanged map costs nothing. ``litellm.register_model``
  takes ~2 ms per row (validation and a log line per row: ~9 s for the same names), which is why
  it is not used here.
- :func:`mirror_model` for one exact name (any spelling litellm resolves for the inner model,
  e.g. a model registered with ``litellm.register_model`` after ``register()``): it copies
  litellm's *resolved* model info for the inner model, which also carries provider-level fills
  the raw row lacks (DeepSeek's ``supports_assistant_prefill``, a default cache price). The DSPy
  helper calls it for its model; call it yourself before asking litellm about a name.

Left different: ``supported_openai_params`` (litellm derives it from the provider name, and has
no provider config for ``cachesaver``: it gives the generic OpenAI list).

An inner model litellm does not know stays unknown under the outer name too (same answer). A row a
user wrote under a ``cachesaver/`` name is never overwritten. The mirrors are plain rows: when
litellm reloads its cost map the next ``register()`` writes them again.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Mapping, Optional

__all__ = ["mirror_known_models", "mirror_model", "inner_model", "MIRRORED_MODES"]

log = logging.getLogger("cachesaver.litellm.capabilities")

PREFIX = "cachesaver/"
PROVIDER = "cachesaver"

#: Rows worth mirroring: the modes a ``completion`` call can use.
MIRRORED_MODES = frozenset({"chat", "responses", "completion"})

_lock = threading.Lock()
#: name -> id() of the litellm row it was copied from: ours to refresh, never a user's row.
_mirrored: dict[str, int] = {}
#: (id, len) of the cost map after the last full pass: an unchanged map needs no second pass.
_last_pass: Optional[tuple[int, int]] = None
#: Names mirrored from litellm's resolved model info (not just the raw row).
_exact: set[str] = set()
#: Resolved-info fields that describe the entry, not the model (litellm recomputes them).
_NOT_COPIED = frozenset({"key", "litellm_provider", "supported_openai_params"})


def inner_model(model: str) -> Optional[str]:
    """``openai/gpt-4o-mini`` for ``cachesaver/openai/gpt-4o-mini``; None for other names."""
    if isinstance(model, str) and model.startswith(PREFIX) and len(model) > len(PREFIX):
        return model[len(PREFIX):]
    return None


def _write(rows: Mapping[str, tuple[int, Mapping[str, Any]]]) -> int:
    """Write mirror rows (name -> (source id, source row)) into ``litellm.model_cost``."""
    import litellm

    cost_map = litellm.model_cost
    written = 0
    with _lock:
        for name, (source_id, row) in rows.items():
            if name in cost_map and (name not in _mirrored or name in _exact):
                continue  # the user's own row, or an exact mirror (mirror_model), wins
            if _mirrored.get(name) == source_id and name in cost_map:
                continue  # already mirrored from this very row
            cost_map[name] = {**dict(row), "litellm_provider": PROVIDER}
            _mirrored[name] = source_id
            written += 1
    if written:
        _invalidate_lookups()
    return written


def _invalidate_lookups() -> None:
    """Drop litellm's case-insensitive name map and its model-info LRU caches (private API)."""
    try:
        from litellm.utils import _invalidate_model_cost_lowercase_map
    except ImportError:  # pragma: no cover - other litellm versions: exact-name lookups still work
        return
    _invalidate_model_cost_lowercase_map()


def mirror_known_models() -> int:
    """Mirror every chat/completion row of ``litellm.model_cost``; returns how many names were written.

    Idempotent and cheap on repeat (rows already mirrored from the same source are skipped).
    """
    import litellm

    global _last_pass
    cost_map = litellm.model_cost
    if _last_pass == (id(cost_map), len(cost_map)):
        return 0
    rows: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for key, row in list(cost_map.items()):
        if not isinstance(row, dict) or key.startswith(PREFIX):
            continue
        provider = row.get("litellm_provider")
        if not provider or row.get("mode", "chat") not in MIRRORED_MODES:
            continue
        source = (id(row), row)
        rows.setdefault(PREFIX + key, source)
        if not key.startswith(f"{provider}/"):
            rows.setdefault(f"{PREFIX}{provider}/{key}", source)
    written = _write(rows)
    _last_pass = (id(litellm.model_cost), len(litellm.model_cost))
    log.debug("mirrored %d litellm model rows under %r", written, PREFIX)
    return written


def mirror_model(model: str) -> bool:
    """Mirror what litellm reports for the inner model of ``model`` (``cachesaver/<inner>``), exactly.

    The row written is litellm's *resolved* ``get_model_info(inner)`` (provider-level fills
    included, e.g. DeepSeek's ``supports_assistant_prefill``), replacing a raw row that
    :func:`mirror_known_models` may have written for the same name. True when the outer name now
    resolves (or is the user's own row); False when litellm knows nothing about the inner model.
    """
    import litellm

    inner = inner_model(model)
    if inner is None:
        raise ValueError(f"model must look like 'cachesaver/<litellm model>', got {model!r}")
    if model in _exact:
        return True
    if model in litellm.model_cost and model not in _mirrored:
        return True  # the user's own row
    try:
        info = dict(litellm.get_model_info(inner))
    except Exception:  # litellm raises its own "not mapped" error types; unknown stays unknown
        return False
    row = {k: v for k, v in info.items() if v is not None and k not in _NOT_COPIED}
    row["litellm_provider"] = PROVIDER
    cost_map = litellm.model_cost
    with _lock:
        if model in cost_map and model not in _mirrored:
            return True  # a user's row written meanwhile wins
        cost_map[model] = row  # replaces a raw row of the eager pass
        _mirrored[model] = id(row)
        _exact.add(model)
    _invalidate_lookups()
    return True
