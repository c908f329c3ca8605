"""redis-py's reply parsers side by side: client CPU per Redis command of the kind the store sends.

    python benchmarks/bench_redis_parser.py                          # redis://127.0.0.1:6379/9
    python benchmarks/bench_redis_parser.py --url redis://host:6379/0

redis-py parses replies in Python unless the optional ``hiredis`` package is installed
(``pip install hiredis``), in which case it uses that C parser by itself. This script times both
parsers in one process, interleaved round by round (the first round of each is a warm-up): a
script call per command (EVALSHA returning a list length and four ~60-byte samples, like a
claim), 30 pipelines of 100 and 300 single calls per round. It reports the client's CPU time per
command (``time.process_time``), which the other work on the machine disturbs less than wall time.
Without hiredis installed it says so and stops. It writes one list under ``cachesaver-bench:``
and deletes it.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

SCRIPT = "return {redis.call('LLEN', KEYS[1]), redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]))}"
KEY = "cachesaver-bench:parser"


async def one_round(client, sha: str, pipelines: int = 30, singles: int = 300) -> float:
    start = time.process_time()
    for _ in range(pipelines):
        pipe = client.pipeline(transaction=False)
        for _ in range(100):
            pipe.evalsha(sha, 1, KEY, 3)
        replies = await pipe.execute()
        assert replies[0][0] == 4 and len(replies[0][1]) == 4   # each call read what it claims
    for _ in range(singles):
        await client.evalsha(sha, 1, KEY, 3)
    return (time.process_time() - start) / (pipelines * 100 + singles) * 1e6


async def main(url: str, rounds: int) -> None:
    import redis.asyncio as aredis
    from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser
    from redis.utils import HIREDIS_AVAILABLE

    if not HIREDIS_AVAILABLE:
        print("hiredis is not installed: `pip install hiredis` to compare the two parsers")
        return
    clients = {}
    for name, parser in (("redis-py's Python parser", _AsyncRESP2Parser), ("hiredis", _AsyncHiredisParser)):
        clients[name] = aredis.Redis(connection_pool=aredis.ConnectionPool.from_url(url, parser_class=parser))
    first = next(iter(clients.values()))
    await first.delete(KEY)
    await first.rpush(KEY, *[b'{"d":"eta epsilon epsilon <bbb349> #%d","u":[6,5,0.000011]}' % i for i in range(4)])
    sha = await first.script_load(SCRIPT)
    times: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for index in range(rounds + 1):
            for name, client in clients.items():
                value = await one_round(client, sha)
                if index:
                    times[name].append(value)
    finally:
        await first.delete(KEY)
        for client in clients.values():
            await client.aclose()
    base = statistics.median(times["redis-py's Python parser"])
    print(f"\nClient CPU per Redis command (EVALSHA with a 4-sample reply), {rounds} rounds, medians\n")
    print("| parser | CPU per command (us) | range | vs Python parser |")
    print("|---|---:|---|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {min(values):.1f}-{max(values):.1f} | {median / base:.2f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.rounds))
