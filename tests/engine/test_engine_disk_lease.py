"""The disk store's generation lease: exclusive across processes and stores, never wedged by a
holder killed with SIGKILL, given up on after ``lease_max_wait`` when the holder is stuck."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

from cachesaver.stores import DiskStore

K = "k" * 64

HOLDER = textwrap.dedent("""
    import asyncio, sys
    from cachesaver.stores import DiskStore

    async def main():
        store = DiskStore(sys.argv[1])
        async with store.generation_lease(sys.argv[2]):
            print("held", flush=True)
            await asyncio.sleep(600)  # until killed

    asyncio.run(main())
""")


async def test_lease_of_a_process_killed_with_sigkill_is_free_at_once(tmp_path):
    directory = str(tmp_path / "c")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, directory, K], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        impatient = DiskStore(directory, lease_max_wait=0.2)
        # Held by the other process: a waiter gives up after max_wait, without the lease.
        t0 = time.perf_counter()
        async with impatient.generation_lease(K) as got:
            assert got.acquired is False
        assert 0.2 <= time.perf_counter() - t0 < 2
        async with impatient.generation_lease("another key") as other:
            assert other.acquired is True  # leases are per key
        impatient.close()
        store = DiskStore(directory, lease_max_wait=30)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        t0 = time.perf_counter()
        async with store.generation_lease(K) as got:
            assert got.acquired is True
        assert time.perf_counter() - t0 < 1  # the kernel released it: no expiry to wait out
        store.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


async def test_two_stores_in_one_process_exclude_each_other(tmp_path):
    directory = str(tmp_path / "c")
    a, b = DiskStore(directory), DiskStore(directory)
    order = []

    async def hold(store, name, delay):
        await asyncio.sleep(delay)
        async with store.generation_lease(K):
            order.append(f"{name} in")
            await asyncio.sleep(0.05)
            order.append(f"{name} out")

    await asyncio.gather(hold(a, "a", 0), hold(b, "b", 0.01))
    assert order == ["a in", "a out", "b in", "b out"]
    a.close()
    b.close()
