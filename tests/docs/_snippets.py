"""The code blocks of README.md and docs/: found, classified, and run as a reader would run them.

A block is *run* unless the line right before its opening fence is a marker:
``<!-- not-run: REASON -->`` (it cannot run here: it installs packages, starts a server that
runs until stopped, needs a service the docs name) or ``<!-- run-by: tests/PATH.py -->`` (another
test runs it, against what it needs, e.g. the LiteLLM Proxy fleet of tests/proxy).

A page's blocks run in order, like a reader working down the page in one shell: shell blocks in
``bash`` (variables they export reach the later blocks, processes they start with ``&`` keep
running until the page is done), Python blocks each in a fresh namespace of one Python process
(imports are shared, names are not: every Python block must stand on its own). The one edit: the
port 8011 the docs give the fake server becomes a free port, so pages can run side by side.
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

#: Languages whose blocks are code a reader runs; every other block is text (output, YAML).
PYTHON = {"python", "py"}
SHELL = {"bash", "sh", "shell", "console"}
DOCS_PORT = "8011"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
                    re.S | re.M)
_MARKER = re.compile(r"<!--\s*(?P<kind>not-run|run-by):\s*(?P<why>.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    marker: Optional[str] = None   # "not-run" | "run-by" | None
    why: str = ""

    @property
    def runnable(self) -> bool:
        return self.lang in PYTHON | SHELL

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        code = "\n".join(row[len(m.group("indent")):] for row in m.group("code").split("\n"))
        found.append(Block(page, line, m.group("lang").lower(), code,
                           marker.group("kind") if marker else None, marker.group("why") if marker else ""))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


_RUN_JOBS = r"""
def run_jobs(jobs, out):
    import json, os, sys, traceback
    for line in jobs:
        job = json.loads(line)
        os.environ.clear(); os.environ.update(job["env"])
        print(f"----- {job['name']}", flush=True)
        try:
            exec(compile(job["code"], job["name"], "exec"), {"__name__": "__main__"})
            result = {"ok": True}
        except BaseException:
            result = {"ok": False, "error": traceback.format_exc()}
        sys.stdout.flush(); sys.stderr.flush()
        out.write(json.dumps(result) + "\n"); out.flush()
"""

#: One page's Python process, started fresh: reads jobs on stdin, answers on the fd it is given.
_DRIVER = _RUN_JOBS + r"""
import os, sys
run_jobs(sys.stdin, os.fdopen(int(sys.argv[1]), "w"))
"""

#: Imports the frameworks the docs use once (they take seconds each), then forks one child per
#: page on request: a page's Python process is then a fresh fork of an interpreter that has
#: imported those modules and run nothing else (no thread, no registration, no call).
PRELOAD = ("litellm", "openai", "langchain_openai", "langchain_litellm", "cachesaver_litellm",
           "cachesaver_langchain", "dspy", "smolagents", "agents")
_ZYGOTE = _RUN_JOBS + r"""
import importlib, json, os, signal, socket, sys
for name in sys.argv[2].split(","):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # children are reaped by the kernel
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1]); server.listen()
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    if os.fork():
        conn.close()
        continue
    server.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    jobs, out = conn.makefile("r"), conn.makefile("w")
    start = json.loads(jobs.readline())
    os.chdir(start["workdir"])
    log = os.open(start["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(log, 1); os.dup2(log, 2)
    out.write(json.dumps({"pid": os.getpid()}) + "\n"); out.flush()
    run_jobs(jobs, out)
    os._exit(0)
"""


class Zygote:
    """The forking server behind :class:`PageRun`'s Python processes (one per test worker)."""

    def __init__(self, sock: Path, env: dict[str, str]) -> None:
        self.sock = str(sock)
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE, self.sock, ",".join(PRELOAD)], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class PageRun:
    """Runs one page's blocks in a scratch directory; ``close()`` ends every process it started."""

    def __init__(self, workdir: Path, env: dict[str, str], timeout: float = 120.0,
                 zygote: Optional[Zygote] = None) -> None:
        self.workdir, self.env, self.timeout, self.zygote = workdir, dict(env), timeout, zygote
        self._conn: Optional[socket.socket] = None
        self._jobs = None
        self.port = str(free_port())
        self.log = workdir / "snippets.log"
        self._groups: list[int] = []
        self._python: Optional[subprocess.Popen] = None
        self._results = None

    def code_of(self, block: Block) -> str:
        code = block.code
        if block.lang == "console":  # a transcript: the commands are the lines after "$ "
            code = "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ "))
        return code.replace(f"127.0.0.1:{DOCS_PORT}", f"127.0.0.1:{self.port}").replace(
            f"--port {DOCS_PORT}", f"--port {self.port}")

    def run(self, block: Block) -> Optional[str]:
        """None when the block ran cleanly, else what went wrong (with the log's tail)."""
        error = self._shell(block) if block.lang in SHELL else self._run_python(block)
        if error:
            return f"{block.where} ({block.lang}) failed: {error}\n--- log tail ---\n{self.tail()}"
        return None

    def _shell(self, block: Block) -> Optional[str]:
        env_file = self.workdir / ".env-after"
        script = self.workdir / ".block.sh"
        script.write_text("set -e\n" + self.code_of(block) + f"\nenv -0 > {env_file}\n")
        with open(self.log, "a") as log:
            log.write(f"----- {block.where}\n")
            log.flush()
            proc = subprocess.Popen(["bash", str(script)], cwd=self.workdir, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self._groups.append(proc.pid)
        try:
            code = proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            return f"still running after {self.timeout:.0f} s"
        if code != 0:
            return f"exit status {code}"
        self.env = dict(item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
        if "serve-fake" in block.code and not wait_for_port(int(self.port)):
            return f"the fake server never listened on port {self.port}"
        return None

    def _start_python(self) -> None:
        if self.zygote is not None:
            self._conn = socket.socket(socket.AF_UNIX)
            self._conn.connect(self.zygote.sock)
            self._jobs, self._results = self._conn.makefile("w"), self._conn.makefile("r")
            self._jobs.write(json.dumps({"workdir": str(self.workdir), "log": str(self.log)}) + "\n")
            self._jobs.flush()
            self._groups.append(json.loads(self._results.readline())["pid"])
            return
        read_fd, write_fd = os.pipe()
        with open(self.log, "a") as log:
            self._python = subprocess.Popen([sys.executable, "-c", _DRIVER, str(write_fd)], cwd=self.workdir,
                                            env=self.env, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                            text=True, pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)
        self._jobs, self._results = self._python.stdin, os.fdopen(read_fd)
        self._groups.append(self._python.pid)

    def _run_python(self, block: Block) -> Optional[str]:
        if self._jobs is None:
            self._start_python()
        assert self._jobs is not None and self._results is not None
        self._jobs.write(json.dumps({"code": self.code_of(block), "env": self.env, "name": block.where}) + "\n")
        self._jobs.flush()
        ready, _, _ = select.select([self._results], [], [], self.timeout)
        if not ready:
            return f"still running after {self.timeout:.0f} s"
        line = self._results.readline()
        if not line:
            return "the Python process died"
        result = json.loads(line)
        return None if result["ok"] else result["error"]

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def close(self) -> None:
        if self._jobs is not None:
            self._jobs.close()
        for pgid in self._groups:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        if self._python is not None:
            try:
                self._python.wait(10)
            except subprocess.TimeoutExpired:
                self._python.kill()
        if self._results is not None:
            self._results.close()
        if self._conn is not None:
            self._conn.close()
