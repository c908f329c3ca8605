"""A shared run on disk must not freeze the caller's event loop while another process holds the
store's write lock (before: a hit took 5 s and no other coroutine ran meanwhile).

Claims of a shared run are write transactions; a write waits for another process's lock on the
loop for at most ``LOOP_WAIT`` (20 ms), then in a worker thread, so the loop keeps serving.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

from cachesaver.pipelines import OnlineAPI
from cachesaver.stores.disk import DB_FILE
from cachesaver.testing import FakeModel
from cachesaver.typedefs import Request

HOLD = 1.5  # seconds the other process keeps the write lock


def _hold_write_lock(path: str) -> subprocess.Popen:
    script = textwrap.dedent(f"""
        import sqlite3, sys, time
        con = sqlite3.connect({path!r}, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep({HOLD})
        con.execute("COMMIT")
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


async def test_a_shared_run_waiting_for_another_processs_write_lock_keeps_the_loop_running(tmp_path):
    directory = str(tmp_path / "store")
    model = FakeModel(seed=4)
    async with OnlineAPI(model=model, cache=directory, run_id="exp", timeout=0.01) as pipeline:
        first = await pipeline.request(Request("q", namespace="A"))
        holder = _hold_write_lock(os.path.join(directory, DB_FILE))
        beats: list[float] = []

        async def heartbeat():
            while True:
                beats.append(time.monotonic())
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(heartbeat())
        started = time.monotonic()
        replay = await pipeline.request(Request("q", namespace="B"))  # claims in the locked store
        waited = time.monotonic() - started
        beat.cancel()
        holder.wait(10)
    gaps = [b - a for a, b in zip(beats, beats[1:])]
    assert replay.data == first.data and replay.cached == [True] and model.call_count == 1
    assert waited >= HOLD * 0.5  # it really waited for the other process's lock...
    assert len(beats) > 20 and max(gaps) < 0.5  # ...while the loop kept running (not a speed target)
