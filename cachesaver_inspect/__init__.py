"""Inspect AI on CacheSaver: ``inspect eval task.py --model cachesaver/openai/gpt-4o-mini``.

Installing the package registers the ``cachesaver`` model API through Inspect's ``inspect_ai``
entry point; importing this module registers it too. Model args (``-M``): ``store`` (a directory,
``memory``, ``redis://...`` or a bundle file; default ``./.cachesaver``), ``run_name``,
``namespace``, ``run_id``, ``offline``; every other ``-M`` goes to the inner model. What each
call is keyed on and which sample it gets: :mod:`cachesaver_inspect._provider`.
"""
from __future__ import annotations

from ._provider import CacheSaverAPI, cachesaver

__all__ = ["CacheSaverAPI", "cachesaver"]
