"""Durable Object RPC calls/s, to one object and spread over 1,000 objects, beside a real
redis-server doing the same read-modify-write (INCR, one round trip per call).

Each call is an RPC to a public async method that increments a counter in the object's
SQLite storage (`ctx.storage.sql.exec(... RETURNING)`): input gate, a new invocation,
argument/result copies and a committed write (WAL, synchronous=NORMAL, survives a killed
process). Redis runs with persistence off.

Target (issue 4): >= 1,000 calls/s to one object, Cloudflare's soft limit per object.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis

from flarebase.platform import open_env
from flarebase.platform.durable_objects import DurableObject, DurableObjectState

from common import QUICK, redis_server, report, scratch_dir

CALLS = 5_000 if QUICK else 30_000
OBJECTS = 1_000
TARGET_ONE_OBJECT = 1_000

WRANGLER = """
name = "bench"
[[durable_objects.bindings]]
name = "COUNTERS"
class_name = "Counter"
[[migrations]]
tag = "v1"
new_sqlite_classes = ["Counter"]
"""


class Counter(DurableObject):
    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n INTEGER)")

    async def increment(self) -> int:
        row = self.sql.exec(
            "INSERT INTO counter VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1 RETURNING n"
        ).one()
        return int(row["n"])


async def calls_per_second(stubs: list[Any], calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        await stubs[i % len(stubs)].increment()
    return calls / (time.perf_counter() - start)


def redis_incr(client: redis.Redis, keys: list[str], calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        client.incr(keys[i % len(keys)])
    return calls / (time.perf_counter() - start)


async def main() -> None:
    folder = scratch_dir()
    (folder / "wrangler.toml").write_text(WRANGLER)
    async with open_env(
        folder / "wrangler.toml", state_dir=folder / "state", durable_objects={"Counter": Counter}
    ) as env:
        ns = env.COUNTERS
        one = [ns.get(ns.id_from_name("one"))]
        many = [ns.get(ns.id_from_name(f"object-{i}")) for i in range(OBJECTS)]
        start = time.perf_counter()
        for stub in many:  # first call: builds the object and creates its SQLite file
            await stub.increment()
        cold = OBJECTS / (time.perf_counter() - start)
        with redis_server() as port:
            client = redis.Redis(port=port)
            keys_one, keys_many = ["one"], [f"object-{i}" for i in range(OBJECTS)]
            runs_one, runs_many = [], []
            for _ in range(3):  # interleaved, best of three
                runs_one.append(
                    (await calls_per_second(one, CALLS), redis_incr(client, keys_one, CALLS))
                )
                runs_many.append(
                    (await calls_per_second(many, CALLS), redis_incr(client, keys_many, CALLS))
                )
            client.close()
    ours_one, peer_one = max(o for o, _ in runs_one), max(p for _, p in runs_one)
    ours_many, peer_many = max(o for o, _ in runs_many), max(p for _, p in runs_many)
    peer = "redis INCR round trip"
    report("do rpc to one object (sql write)", ours_one, peer_one, peer, "calls/s")
    report(f"do rpc across {OBJECTS:,} objects (sql write)", ours_many, peer_many, peer, "calls/s")
    print(
        f"do rpc first call to {OBJECTS:,} new objects (build + create file): {cold:,.0f} calls/s"
    )
    verdict = "met" if ours_one >= TARGET_ONE_OBJECT else "MISSED"
    print(
        f"do rpc to one object vs target {TARGET_ONE_OBJECT:,} calls/s: "
        f"{ours_one / TARGET_ONE_OBJECT:.1f}x ({verdict})"
    )


if __name__ == "__main__":
    asyncio.run(main())
