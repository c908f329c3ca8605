"""lm-evaluation-harness on CacheSaver: the ``cachesaver`` model type.

::

    python -m cachesaver_lmeval run --model cachesaver \\
        --model_args model=openai/gpt-4o-mini,store=./.cachesaver --tasks my_task --apply_chat_template

(``python -m cachesaver_lmeval`` is lm-eval's own CLI with this model type registered: lm-eval
0.4.13 loads no model plugins from entry points, so ``lm_eval --model cachesaver`` needs the
module imported first; in Python, ``import cachesaver_lmeval`` then
``lm_eval.simple_evaluate(model="cachesaver", ...)``.)

Built on lm-eval's LiteLLM chat-completions model (``LocalChatCompletion``), so request building,
chat templates, batching and concurrency are lm-eval's; only the call itself goes through a
:class:`cachesaver_litellm.CacheSaverRouter` with one deployment (the model), which gives each
model instance its own run (usage ledger):

- **repeats**: lm-eval sends a ``repeats: k`` document's prompt k times; within the run, each
  copy takes the next stored sample, so the k samples are distinct (at temperature > 0) and only
  the missing ones are generated.
- **reruns**: a new model instance (a new ``lm_eval`` run) starts from the first stored sample:
  the same evaluation again makes zero model calls and gets the same generations and metrics.
  Replays follow lm-eval's issue order, which is deterministic with ``num_concurrent=1`` (the
  default); with more, requests of one prompt may be answered in another order.
- **namespace** (``namespace=`` model arg): default ``lm-eval/<model>``. Another namespace starts
  from the first stored sample again and reuses what is stored.
- lm-eval's own ``--use_cache`` keeps one answer per prompt (repeats collapse to it): leave it off.
- **seed**: none is sent unless ``seed=`` is in the model args (lm-eval's default ``seed=1234``
  would make a provider that honours seeds answer the repeats alike).

Model args: ``model`` (a litellm model name), ``store`` (default ``./.cachesaver``),
``namespace``, ``run_id`` (share one ledger across processes), ``offline``, ``base_url`` (the
OpenAI-compatible endpoint, passed to litellm as ``api_base``), and lm-eval's own chat-completions
args. Log-likelihood requests are refused: chat APIs return no prompt log-probabilities.
"""
from __future__ import annotations

from ._model import CacheSaverChatLM

__all__ = ["CacheSaverChatLM"]
