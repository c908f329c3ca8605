"""A thread-safe "the first time only" flag, for warnings logged once per process.

Why: both adapters warn once per process when calls arrive with no namespace at all; the rule
(first caller wins, across threads; tests can forget it) is one object here, not two copies.
"""
from __future__ import annotations

import threading

__all__ = ["Once"]


class Once:
    """``first()`` is True for exactly one caller until :meth:`reset`."""

    __slots__ = ("_lock", "_done")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False

    def first(self) -> bool:
        if self._done:  # the common case, without the lock
            return False
        with self._lock:
            if self._done:
                return False
            self._done = True
            return True

    def reset(self) -> None:
        """Forget it happened (tests)."""
        with self._lock:
            self._done = False
