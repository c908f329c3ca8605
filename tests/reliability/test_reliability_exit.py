"""Paid samples survive the end of the process (issue 22, item 3).

A process that ends while a miss is at the provider (Ctrl-C in the caller's thread, or
``sys.exit`` while a daemon thread waits for its answer) must store what the provider generated
for it: the engine's model calls run on the engine's loop thread, and without care the
interpreter's exit closed litellm's HTTP clients (litellm's own atexit hook) and shut the thread
pools down (langchain-openai reads its answer in one) under the call still in flight, so the
provider billed the samples and the store held nothing.

Each case runs a real child process against the local fake OpenAI server (with latency, so the
request is in flight there when the child is interrupted) on a real disk store, then compares
the server's count of generated samples with the samples in the store.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from cachesaver.errors import PipelineClosedError
from cachesaver.pipelines import OnlineAPI
from cachesaver.testing import FakeModel, FakeOpenAIServer
from cachesaver.typedefs import Request

LITELLM_CTRL_C = textwrap.dedent("""
    import sys, litellm, cachesaver_litellm
    from cachesaver.runtime import host
    host.EXIT_TIMEOUT = 40.0  # the mechanism is under test, not the default bound (a busy CI machine)
    store, base = sys.argv[1], sys.argv[2]
    cachesaver_litellm.register(store=store, namespace="exit")
    print("ready", flush=True)
    litellm.completion(model="cachesaver/openai/fake-model", api_base=base, api_key="sk-fake",
                       messages=[{"role": "user", "content": "hello"}], n=2)
""")

LANGCHAIN_CTRL_C = textwrap.dedent("""
    import sys
    from langchain_openai import ChatOpenAI
    from cachesaver_langchain import CacheSaverChatModel
    from cachesaver.runtime import host
    host.EXIT_TIMEOUT = 40.0
    store, base = sys.argv[1], sys.argv[2]
    chat = CacheSaverChatModel(chat_model=ChatOpenAI(model="fake-model", base_url=base, api_key="sk-fake",
                                                     max_retries=0), store=store)
    print("ready", flush=True)
    chat.invoke("hello")
""")

DAEMON_EXIT = textwrap.dedent("""
    import sys, threading, litellm, cachesaver_litellm
    from cachesaver.runtime import host
    host.EXIT_TIMEOUT = 40.0
    store, base = sys.argv[1], sys.argv[2]
    cachesaver_litellm.register(store=store, namespace="exit")

    def work():
        litellm.completion(model="cachesaver/openai/fake-model", api_base=base, api_key="sk-fake",
                           messages=[{"role": "user", "content": "hello"}], n=2)

    threading.Thread(target=work, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.readline()  # the test says when the request is at the server
    sys.exit(0)
""")


def stored_samples(directory: str) -> int:
    path = os.path.join(directory, "cache.db")
    if not os.path.exists(path):
        return 0
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT count(*) FROM cachesaver_samples").fetchone()[0]
    finally:
        con.close()


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Child:
    """A child process running ``code`` against its own fake server (the answer takes 1 s)."""

    def __init__(self, code: str, directory: str) -> None:
        self.directory = directory
        self.server = FakeOpenAIServer(latency=1.0).start()
        # -X faulthandler: a child that does not end in time is sent SIGABRT and prints where
        # each of its threads is (see finish).
        self.proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", code, directory,
                                      self.server.base_url],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def in_flight(self) -> bool:
        """Its request is being answered at the server (it must not have ended before)."""
        assert self.proc.poll() is None, self.proc.stderr.read()[-3000:]
        return self.server.in_flight > 0

    def finish(self, deadline: float) -> tuple[int, str]:
        """Wait (until ``deadline``) for the child and for the server to finish (and bill) its
        answer; return the samples in the store and the child's stderr. A child still running at
        the deadline is hung: the failure shows each of its threads' stacks."""
        try:
            _, err = self.proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"the child did not end; its threads:\n{err[-12000:]}") from None
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        wait_until(lambda: self.server.in_flight == 0)
        self.server.stop()
        return stored_samples(self.directory), err


def ctrl_c(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)


def main_thread_ends(proc: subprocess.Popen) -> None:
    proc.stdin.write("exit\n")
    proc.stdin.flush()


CASES = {  # name: (child code, how its process ends, samples its request asks for)
    "litellm completion + Ctrl-C": (LITELLM_CTRL_C, ctrl_c, 2),
    "langchain invoke + Ctrl-C": (LANGCHAIN_CTRL_C, ctrl_c, 1),
    "daemon thread + sys.exit": (DAEMON_EXIT, main_thread_ends, 2),
}


def test_a_process_ending_during_a_miss_stores_what_the_provider_generated(tmp_path):
    """The three children run at once (each import of litellm/langchain takes seconds)."""
    children = {name: Child(code, str(tmp_path / f"store{i}")) for i, (name, (code, _, _)) in enumerate(CASES.items())}
    try:
        waiting = dict(children)
        deadline = time.monotonic() + 60
        while waiting:  # end each child as soon as its request is at the server
            for name, child in list(waiting.items()):
                if child.in_flight():
                    CASES[name][1](child.proc)
                    del waiting[name]
            assert time.monotonic() < deadline, f"never in flight: {sorted(waiting)}"
            time.sleep(0.005)
        billed, kept, errors = {}, {}, {}
        ended_by = time.monotonic() + 150  # all were told to end by now; each takes seconds
        for name, child in children.items():
            kept[name], errors[name] = child.finish(ended_by)
            billed[name] = (child.server.request_count, child.server.samples_generated)
        assert billed == {name: (1, n) for name, (_, _, n) in CASES.items()}, errors
        # before the fix: 0 stored in each case, every sample billed
        assert kept == {name: n for name, (_, _, n) in CASES.items()}, errors
    finally:
        for child in children.values():
            if child.proc.poll() is None:
                child.proc.kill()
            child.server.stop()


# -- engine-only children (no litellm/langchain import: fast) ---------------------------------
ENGINE_CHILD = textwrap.dedent("""
    import atexit, sys, threading, time
    from cachesaver.testing import FakeModel
    from cachesaver.typedefs import Request
    from cachesaver.runtime import HostedPipeline, PipelineSettings
    from cachesaver.runtime import host
    directory, latency, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    model = FakeModel(latency=latency)
    # Registered before the engine's hooks exist, so it runs after them: what was generated.
    atexit.register(lambda: print("generated", model.samples_generated, flush=True))
    host.EXIT_TIMEOUT = float(sys.argv[4])
    hosted = HostedPipeline(lambda: model, PipelineSettings(directory, timeout=0))
    answers = []

    def work(count):
        for i in range(count):
            answers.append(hosted.request_sync(Request(prompt=f"p{i}", n=1, namespace="a")).data)
        print("answered", len(answers), flush=True)

    if mode == "non-daemon":  # the main thread ends at once; Python joins this thread later
        threading.Thread(target=work, args=(3,)).start()
    else:  # a daemon thread in a 30 s call when the main thread exits
        threading.Thread(target=work, args=(1,), daemon=True).start()
        time.sleep(0.3)
        sys.exit(0)
""")


def run_engine_child(tmp_path, latency: float, mode: str, exit_timeout: float) -> tuple[str, int]:
    directory = str(tmp_path / "store")
    proc = subprocess.run([sys.executable, "-c", ENGINE_CHILD, directory, str(latency), mode, str(exit_timeout)],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, stored_samples(directory)


def test_threads_still_running_after_the_main_thread_keep_calling_the_model(tmp_path):
    """The exit hooks start only once non-daemon threads are done: their calls succeed."""
    out, stored = run_engine_child(tmp_path, 0.2, "non-daemon", exit_timeout=10)
    assert out.split() == ["answered", "3", "generated", "3"] and stored == 3


def test_the_wait_at_exit_is_bounded(tmp_path):
    """A call still running after EXIT_TIMEOUT is given up (it is the only sample that may be
    lost); the process does not wait for its 30 s."""
    out, stored = run_engine_child(tmp_path, 30, "daemon", exit_timeout=0.3)
    assert out.split() == ["generated", "0"] and stored == 0


# -- once the interpreter exits, no new model call starts ------------------------------------
async def test_refused_new_calls_fail_before_the_model_is_called_and_hits_still_served(tmp_path):
    model = FakeModel()
    async with OnlineAPI(model=model, cache=str(tmp_path / "store"), timeout=0) as pipe:
        first = await pipe.request(Request(prompt="p", n=1, namespace="a"))
        pipe.refuse_new_calls("exiting")
        replay = await pipe.request(Request(prompt="p", n=1, namespace="b"))  # a hit: served
        with pytest.raises(PipelineClosedError, match="exiting"):
            await pipe.request(Request(prompt="q", n=1, namespace="a"))  # a miss: refused
    assert replay.data == first.data
    assert model.call_count == 1 and pipe.stats.model_calls == 1 and pipe.stats.failed_calls == 0


# -- a daemon thread must not run code while the interpreter finalizes ------------------------
DAEMON_HOLDS_IMPORT_LOCK = textwrap.dedent("""
    import _imp, atexit, sys, threading, time
    from cachesaver.testing import FakeModel
    from cachesaver.typedefs import Request
    from cachesaver.runtime import HostedPipeline, PipelineSettings
    model = FakeModel(latency=0.5)
    hosted = HostedPipeline(lambda: model, PipelineSettings(sys.argv[1], timeout=0))

    def work():
        hosted.request_sync(Request(prompt="p", n=1, namespace="a"))
        # Back in its caller's code: here, in the middle of an import when the process ends
        # (what litellm's post-call code, full of lazy imports, may be doing).
        _imp.acquire_lock()
        while True:
            time.sleep(0.01)

    # Runs after the engine's exit hooks, as an object's __del__ that imports (litellm's HTTP
    # handlers do) runs while the interpreter finalizes: it needs the import lock.
    atexit.register(lambda: __import__("colorsys"))
    threading.Thread(target=work, daemon=True).start()
    time.sleep(0.2)  # the call is at the model when the main thread ends
    sys.exit(0)
""")


def test_a_daemon_thread_whose_call_ends_during_the_exit_is_not_woken(tmp_path):
    """The deadlock CI hit (the daemon case above hung at exit): the exit hooks wait for the
    daemon thread's call, which then returned to its caller while the interpreter finalized;
    a daemon thread stopped holding the import lock made the next import wait forever. Now its
    call's samples are stored and the thread is left waiting: the process ends."""
    directory = str(tmp_path / "store")
    proc = subprocess.run([sys.executable, "-c", DAEMON_HOLDS_IMPORT_LOCK, directory],
                          capture_output=True, text=True, timeout=60)  # before: hung (killed at 60 s)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stored_samples(directory) == 1
