"""Run a child process that really cannot write to a chmod-ed directory, even as root.

``chmod 555`` stops nobody when tests run as root (root bypasses permission bits through the
CAP_DAC_OVERRIDE capability). The child therefore drops that capability (and its relatives) from
its bounding set before it starts (``prctl``, through ctypes); it keeps uid 0, so it can still read the
interpreter and the code, but the permission bits now apply to it like to any user.
"""
from __future__ import annotations

import ctypes
import os
import stat
import subprocess
import sys
from pathlib import Path

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER = 1, 2, 3


def _drop_capabilities() -> None:  # runs in the child, between fork and exec
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    # Dropped from the bounding set, the capabilities are gone for good after exec too.
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def make_read_only(folder: Path) -> None:
    for path in folder.iterdir():
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter without write permission beyond the file bits."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=_drop_capabilities)
