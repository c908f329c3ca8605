"""Child process of the resume tests: submit a batch of misses, then wait (to be killed -9).

argv: store, base URL, and optionally a JSON object: ``kwargs`` (extra litellm arguments of
every call), ``waves`` (``[[start, stop], ...]``: questions r<start>..r<stop-1> asked together,
each wave once the previous one's batch is submitted), ``window`` (batch mode's) and
``hostname`` (the host its batches are recorded as submitted from)."""
import asyncio
import json
import os
import socket
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, os.path.dirname(__file__))
options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
if "hostname" in options:  # a process of another host (there is no second machine here)
    socket.gethostname = lambda: options["hostname"]

from _helpers import ask  # noqa: E402

import cachesaver_litellm  # noqa: E402


class _Server:
    base_url = sys.argv[2]


window = options.get("window", 0.5)  # one batch per wave even when the machine is busy


async def submitted() -> int:
    from cachesaver.opening import open_store

    store = open_store(sys.argv[1])
    try:
        return sum(bool(record.provider_batch) for record, _ in await store.batch_journal().batches())
    finally:
        await store.aclose()


async def main():
    calls = []
    for wave, (start, stop) in enumerate(options.get("waves", [[0, 10]])):
        calls += [asyncio.ensure_future(ask(_Server, f"r{i}", "ns", 2, **options.get("kwargs", {})))
                  for i in range(start, stop)]
        while wave + 1 < len(options.get("waves", [])) and await submitted() <= wave:
            await asyncio.sleep(0.05)  # the next wave once this one's batch is submitted
    await asyncio.gather(*calls, return_exceptions=True)


cachesaver_litellm.register(store=sys.argv[1], timeout=0.02, batch_api={"window": window, "poll": 30.0})
asyncio.run(main())
