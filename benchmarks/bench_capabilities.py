"""What mirroring litellm's price map under ``cachesaver/`` names costs (issue 13, item 2).

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/bench_capabilities.py

Variants, each checked to be what it claims (the names resolve afterwards):
- ``mirror_known_models`` (what ``register()`` runs): every chat/completion row, written
  straight into ``litellm.model_cost``; first pass and repeat pass (unchanged map).
- ``litellm.register_model`` for a sample of the same rows, the public alternative, extrapolated
  to all rows (running it on all rows takes 7-37 s here).
- ``mirror_model`` for one name (litellm's resolved info).
Prints a Markdown table of medians.
"""
from __future__ import annotations

import logging
import os
import statistics
import time
import tracemalloc

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402

from cachesaver_litellm import _capabilities as caps  # noqa: E402

RUNS = 5
SAMPLE = 100


def drop_mirrors() -> None:
    for name in list(caps._mirrored):
        litellm.model_cost.pop(name, None)
    caps._mirrored.clear()
    caps._exact.clear()
    caps._last_pass = None
    caps._invalidate_lookups()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    litellm.custom_provider_map = [{"provider": "cachesaver", "custom_handler": litellm.CustomLLM()}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    rows: list[tuple[str, float, str]] = []

    firsts, repeats, written = [], [], 0
    for _ in range(RUNS):
        drop_mirrors()
        firsts.append(timed(caps.mirror_known_models))
        written = len(caps._mirrored)
        repeats.append(timed(caps.mirror_known_models))
    assert litellm.supports_response_schema(model="cachesaver/openai/gpt-4o-mini") is True
    rows.append(("mirror_known_models, first pass", statistics.median(firsts), f"{written} names"))
    rows.append(("mirror_known_models, repeat (unchanged map)", statistics.median(repeats), "0 names"))

    drop_mirrors()
    tracemalloc.start()
    caps.mirror_known_models()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows.append(("memory of the mirrored rows", float("nan"), f"{current / 1e6:.1f} MB"))

    lookups = []
    for _ in range(RUNS):
        caps._invalidate_lookups()
        lookups.append(timed(lambda: litellm.get_model_info("cachesaver/openai/gpt-4o-mini")))
    rows.append(("first get_model_info after a pass (map rebuild)", statistics.median(lookups), ""))

    drop_mirrors()
    chat = [(k, v) for k, v in litellm.model_cost.items()
            if isinstance(v, dict) and v.get("litellm_provider") and v.get("mode", "chat") in caps.MIRRORED_MODES]
    sample = {f"cachesaver/{k}": {**v, "litellm_provider": "cachesaver"} for k, v in chat[:SAMPLE]}
    spent = timed(lambda: litellm.register_model(sample, persist_across_reloads=False,
                                                 add_to_provider_model_sets=False))
    assert all(name in litellm.model_cost for name in sample)
    for name in sample:
        litellm.model_cost.pop(name, None)
    per_row = spent / SAMPLE
    rows.append((f"litellm.register_model, {SAMPLE} rows", spent, f"{per_row * 1e3:.2f} ms/row"))
    rows.append((f"litellm.register_model, extrapolated to {written} names", per_row * written, ""))

    singles = []
    for _ in range(RUNS):
        drop_mirrors()
        singles.append(timed(lambda: caps.mirror_model("cachesaver/openai/gpt-4o-mini")))
    assert litellm.supports_vision(model="cachesaver/openai/gpt-4o-mini") is True
    rows.append(("mirror_model, one name", statistics.median(singles), ""))

    from importlib.metadata import version

    print(f"litellm {version('litellm')}, {len(chat)} chat/completion rows, median of {RUNS}\n")
    print("| variant | seconds | note |\n|---|---:|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {'' if seconds != seconds else f'{seconds:.4f}'} | {note} |")


if __name__ == "__main__":
    main()
