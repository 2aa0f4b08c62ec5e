"""Queues end to end (send -> consume -> ack) messages/s with durability on, beside a Redis
list on a real redis-server (RPUSH pipeline of 100, then LPOP 100) in the same run.

Ours: a producer sends batches of 100 with `send_batch` (each batch fsync'd before it
returns: WAL, synchronous=FULL) while the push consumer receives batches of up to 100
and acknowledges them; the clock stops when the last message is acknowledged (deleted).
A second run sends one message per `send` call from 100 concurrent producers (group
commit). Redis runs with persistence off (`--save ''`): nothing it holds is on disk.

Target (issue 4): >= 5,000 messages/s end to end (Cloudflare's per-queue limit).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import redis

from flarebase.platform import open_env
from flarebase.platform.queues import MessageBatch

from common import QUICK, redis_server, report, scratch_dir

MESSAGES = 5_000 if QUICK else 30_000
BATCH = 100
PRODUCERS = 100
TARGET = 5_000
BODY = {"task": "resize", "image": "uploads/cat.png", "sizes": [64, 256, 1024]}

WRANGLER = """
name = "bench"
[[queues.producers]]
binding = "JOBS"
queue = "jobs"
[[queues.consumers]]
queue = "jobs"
max_batch_size = 100
max_batch_timeout = 0
"""


async def ours(folder: Path, concurrent_single_sends: bool) -> float:
    received = 0
    done = asyncio.Event()

    async def consume(batch: MessageBatch, env: Any) -> None:
        nonlocal received
        received += len(batch.messages)
        if received >= MESSAGES:
            done.set()

    state = folder / f"state-{time.monotonic_ns()}"
    async with open_env(
        folder / "wrangler.toml", state_dir=state, queue_consumers={"jobs": consume}
    ) as env:
        store = env.JOBS._store
        start = time.perf_counter()
        if concurrent_single_sends:

            async def producer(n: int) -> None:
                for _ in range(n):
                    await env.JOBS.send(BODY)

            await asyncio.gather(*(producer(MESSAGES // PRODUCERS) for _ in range(PRODUCERS)))
        else:
            for _ in range(MESSAGES // BATCH):
                await env.JOBS.send_batch([{"body": BODY}] * BATCH)
        await done.wait()
        while store.conn.execute("SELECT count(*) FROM messages").fetchone()[0]:
            await asyncio.sleep(0.001)  # the last batch's acknowledgement
        elapsed = time.perf_counter() - start
    return MESSAGES / elapsed


def redis_list(client: redis.Redis) -> float:
    import json

    payload = json.dumps(BODY)
    start = time.perf_counter()
    received = 0
    for _ in range(MESSAGES // BATCH):
        pipe = client.pipeline(transaction=False)
        for _ in range(BATCH):
            pipe.rpush("jobs", payload)
        pipe.execute()
        got = client.lpop("jobs", BATCH) or []
        received += len(got)
    assert received == MESSAGES
    return MESSAGES / (time.perf_counter() - start)


async def main() -> None:
    folder = scratch_dir()
    (folder / "wrangler.toml").write_text(WRANGLER)
    with redis_server() as port:
        client = redis.Redis(port=port)
        batched, single = [], []
        for _ in range(3):  # interleaved, best of three
            batched.append((await ours(folder, False), redis_list(client)))
            single.append((await ours(folder, True), redis_list(client)))
        client.close()
    peer = "redis list RPUSH/LPOP pipeline (no persistence)"
    ours_b, peer_b = max(o for o, _ in batched), max(p for _, p in batched)
    ours_s, peer_s = max(o for o, _ in single), max(p for _, p in single)
    report("queue e2e, send_batch of 100, fsync'd", ours_b, peer_b, peer, "msg/s")
    report(f"queue e2e, send() x {PRODUCERS} producers, fsync'd", ours_s, peer_s, peer, "msg/s")
    verdict = "met" if ours_b >= TARGET else "MISSED"
    print(f"queue e2e vs target {TARGET:,} msg/s: {ours_b / TARGET:.1f}x ({verdict})")


if __name__ == "__main__":
    asyncio.run(main())
