"""``cachesaver demo``: see what CacheSaver saves on a small reasoning experiment, offline.

Tree-of-Thoughts and self-consistency solve a few Game of 24 puzzles through
``litellm.acompletion(model="cachesaver/...")``, in three scenarios: a first run, a re-run (zero
model calls, identical results) and an ablation that shares the cache (partial savings). By
default the model is the local fake OpenAI-compatible server (no API key, no network).

This package sits above the engine and the LiteLLM adapter (the engine imports neither it nor
any adapter); ``cachesaver demo`` reaches it through the ``cachesaver.commands`` entry point
(:mod:`.command`). ``game24``, ``methods`` and ``responder`` are plain Python (the savings
benchmark uses them too); only ``runner`` needs litellm, and imports it when the demo runs.
"""
from __future__ import annotations

from .responder import respond
from .runner import FAKE_MODEL, PUZZLES, Scenario, ScenarioResult, price_fake_model, run_demo, run_experiment

__all__ = ["run_demo", "run_experiment", "Scenario", "ScenarioResult", "FAKE_MODEL", "price_fake_model", "PUZZLES",
           "respond"]
