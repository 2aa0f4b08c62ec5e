"""Local KV against redis-py on a real redis-server over loopback, same process, same run.

Target: >= 2x Redis's ops/s for get and put of 1 KiB values (issue 2). Redis runs
with persistence off; local KV survives a killed process (WAL, synchronous=NORMAL).
"""

from __future__ import annotations

import asyncio
import time

import redis

from flarebase.platform.local.kv import LocalKV

from common import QUICK, redis_server, report, scratch_dir

OPS = 5_000 if QUICK else 50_000
VALUE = b"v" * 1024


async def kv_put(kv: LocalKV, run: int) -> float:
    start = time.perf_counter()
    for i in range(OPS):  # distinct keys: KV allows one write per key per second
        await kv.put(f"r{run}:k{i}", VALUE)
    return OPS / (time.perf_counter() - start)


async def kv_get(kv: LocalKV, run: int) -> float:
    start = time.perf_counter()
    for i in range(OPS):
        await kv.get(f"r{run}:k{i}", type="bytes")
    return OPS / (time.perf_counter() - start)


def redis_put(client: redis.Redis, run: int) -> float:
    start = time.perf_counter()
    for i in range(OPS):
        client.set(f"r{run}:k{i}", VALUE)
    return OPS / (time.perf_counter() - start)


def redis_get(client: redis.Redis, run: int) -> float:
    start = time.perf_counter()
    for i in range(OPS):
        client.get(f"r{run}:k{i}")
    return OPS / (time.perf_counter() - start)


async def main() -> None:
    kv = LocalKV(scratch_dir() / "kv.sqlite3")
    with redis_server() as port:
        client = redis.Redis(port=port)
        puts, gets = [], []
        for run in range(3):  # interleaved, best of three
            puts.append((await kv_put(kv, run), redis_put(client, run)))
            gets.append((await kv_get(kv, run), redis_get(client, run)))
        client.close()
    await kv.aclose()
    for name, runs in (("put", puts), ("get", gets)):
        ours, peer = max(o for o, _ in runs), max(p for _, p in runs)
        report(f"kv {name} 1 KiB", ours, peer, "redis-py on redis-server")


if __name__ == "__main__":
    asyncio.run(main())
