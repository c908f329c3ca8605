"""Starting the real LiteLLM Proxy (``litellm --config ...``) as a subprocess on 127.0.0.1.

Each :class:`ProxyProcess` runs the console script the README documents, with the shipped
``examples/proxy/config.yaml`` plus test instrumentation (see ``proxy_instrumentation.py``),
its upstream the project's fake OpenAI-compatible server, and its stdout/stderr in a log file
the secrets test searches.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Mapping, Optional

import httpx
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXAMPLE_CONFIG = REPO / "examples" / "proxy" / "config.yaml"

#: Secrets the tests search for in the store and the logs (never expected to be found).
MASTER_KEY = "sk-master-SENTINEL-4b1e0c"
UPSTREAM_KEY = "sk-upstream-SENTINEL-a83d55"
USER_SENTINEL = "user-SENTINEL-5e2f"
TEAM_A_KEY = "sk-team-a-SENTINEL-7f3c"
TEAM_B_KEY = "sk-team-b-SENTINEL-9d21"
SENTINELS = (MASTER_KEY, UPSTREAM_KEY, USER_SENTINEL, TEAM_A_KEY, TEAM_B_KEY)

MODEL = "gpt-4o-mini"  # the model name clients ask for (examples/proxy/config.yaml)

#: What the LiteLLM Proxy needs beyond litellm itself (``pip install -e ".[proxy]"``).
_PROXY_MODULES = ("fastapi", "uvicorn", "backoff", "apscheduler", "yaml", "openai")


def _missing_proxy_modules() -> list[str]:
    return [name for name in _PROXY_MODULES if importlib.util.find_spec(name) is None]


def litellm_script() -> Optional[str]:
    """The ``litellm`` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "litellm"
    return str(beside) if beside.exists() else shutil.which("litellm")


_MISSING = _missing_proxy_modules() if importlib.util.find_spec("yaml") else ["yaml"]
requires_proxy = pytest.mark.skipif(
    bool(_MISSING) or litellm_script() is None,
    reason=f"the LiteLLM Proxy is not installed (missing: {', '.join(_MISSING) or 'litellm script'}); "
           "pip install -e '.[proxy]'",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_test_config(workdir: Path) -> Path:
    """The example config, plus the test instrumentation (auth, recorder) and no router retries.

    Router retries and cooldowns are the operator's choice; they are off here so that an
    upstream failure reaches the client as it happened (the engine's own behaviour under test).
    """
    import yaml

    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config.setdefault("general_settings", {})["custom_auth"] = "proxy_instrumentation.custom_auth"
    # callbacks first: the instrumentation (DEBUG logs) is loaded before the cachesaver handler
    config["litellm_settings"] = {"callbacks": ["proxy_instrumentation.recorder"],
                                  **config.get("litellm_settings", {})}
    config["router_settings"] = {"num_retries": 0, "disable_cooldowns": True}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class ProxyProcess:
    """One ``litellm --config ... --port N --host 127.0.0.1`` process."""

    def __init__(self, name: str, workdir: Path, config: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.workdir = workdir
        self.config = config
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        self.record_path = workdir / f"{name}.record.jsonl"
        self.env = {**env, "CACHESAVER_TEST_RECORD": str(self.record_path)}
        self.proc: Optional[subprocess.Popen] = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ProxyProcess":
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [litellm_script(), "--config", str(self.config), "--port", str(self.port), "--host", "127.0.0.1"],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health/liveliness", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"proxy {self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def records(self) -> list[dict]:
        if not self.record_path.exists():
            return []
        return [json.loads(line) for line in self.record_path.read_text().splitlines() if line.strip()]


def proxy_env(*, upstream: str, store: str, run_id: str, batch_timeout: float) -> dict[str, str]:
    """The environment of a test proxy: this checkout's code first, only loopback, sentinels."""
    import cachesaver
    import cachesaver_litellm

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHESAVER_", "OPENAI_", "LITELLM_"))}
    paths = [str(Path(cachesaver_litellm.__file__).resolve().parents[1]),
             str(Path(cachesaver.__file__).resolve().parents[1]), str(HERE)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update({
        "PYTHONPATH": os.pathsep.join(paths),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_API_BASE": upstream,
        "CACHESAVER_STORE": store,
        "CACHESAVER_RUN_ID": run_id,
        "CACHESAVER_BATCH_TIMEOUT": str(batch_timeout),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })
    return env


def unique_prompt(tag: str) -> str:
    return f"{tag} {uuid.uuid4().hex[:10]}: tell me a short story"


def upstream_requests(server, prompt: str) -> list[dict]:
    """What the fake upstream received for ``prompt`` (its request log)."""
    out = []
    for body in list(server.requests):
        messages = body.get("messages") or []
        if messages and isinstance(messages[-1], dict) and messages[-1].get("content") == prompt:
            out.append(body)
    return out


def store_dump(fleet) -> bytes:
    """Every key and value the proxies' store holds (Redis: read by type; disk: every file)."""
    if fleet.redis_url is None:
        return b"".join(p.read_bytes() for p in Path(fleet.store_dir).rglob("*") if p.is_file())
    import redis

    out: list[bytes] = []
    with redis.Redis.from_url(fleet.redis_url) as r:
        for name in r.scan_iter(match=f"{fleet.redis_prefix}:*", count=1000):
            out.append(name)
            kind = r.type(name)
            if kind == b"list":
                out.extend(r.lrange(name, 0, -1))
            elif kind == b"hash":
                for field, value in r.hgetall(name).items():
                    out += [field, value]
            elif kind == b"string":
                out.append(r.get(name) or b"")
            else:
                out.append(r.dump(name) or b"")
    return b"\n".join(out)
