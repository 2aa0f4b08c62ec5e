"""The bridge provider (the bridge Worker on Miniflare, over loopback HTTP) against the
local provider, same process, same run.

Per-operation latency: one op awaited at a time, so every bridge op is one signed
HTTP round trip (`x overhead` is how many times local's time per op it takes).
Batching: the same ops started together (asyncio.gather), so that up to `max_batch`
travel in one request; the ratio is the throughput gained over one op per request.
Over the Internet to a deployed Worker each round trip costs milliseconds more, which
makes batching worth more, not less.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from flarebase.platform import Env, load_project, open_env

from common import QUICK, report, report_overhead, scratch_dir

CONFIG = Path(__file__).resolve().parent.parent / "tests" / "bridge" / "wrangler.toml"
OPS = 200 if QUICK else 2_000
RUNS = 3


async def per_op(n: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """Seconds per op, one op awaited at a time (best of RUNS)."""
    best = float("inf")
    for _ in range(RUNS):
        start = time.perf_counter()
        for i in range(n):
            await op(i)
        best = min(best, (time.perf_counter() - start) / n)
    return best


async def rate_batched(n: int, per_request: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """Ops per second with `per_request` ops started together (best of RUNS)."""
    best = 0.0
    for _ in range(RUNS):
        start = time.perf_counter()
        for base in range(0, n, per_request):
            await asyncio.gather(*(op(i) for i in range(base, min(n, base + per_request))))
        best = max(best, n / (time.perf_counter() - start))
    return best


async def setup(env: Env) -> None:
    await env.DB.exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)")
    await env.KV.put("hot", "v" * 1024)
    await env.BUCKET.put("hot", b"b" * 1024)


def cases(env: Env) -> dict[str, Callable[[int], Awaitable[Any]]]:
    select = env.DB.prepare("SELECT v FROM kv WHERE k = ?")
    upsert = env.DB.prepare("INSERT OR REPLACE INTO kv VALUES (?, ?)")
    return {
        "kv get (1 KiB)": lambda i: env.KV.get("hot"),
        "kv put (1 KiB, new key)": lambda i: env.KV.put(f"k{time.time_ns()}-{i}", "v" * 1024),
        "d1 select by key": lambda i: select.bind(f"k{i % 100}").first(),
        "d1 insert": lambda i: upsert.bind(f"k{i}", "value").run(),
        "r2 head": lambda i: env.BUCKET.head("hot"),
        "r2 get (1 KiB)": lambda i: _read(env.BUCKET.get("hot")),
    }


async def _read(pending: Awaitable[Any]) -> bytes:
    obj = await pending
    data: bytes = await obj.bytes()
    return data


async def main() -> None:
    if shutil.which("node") is None:
        print("bridge: skipped (needs Node and bridge/node_modules)")
        return
    from flarebase.platform.bridge.miniflare import MiniflareBridge

    project = load_project(CONFIG)
    with MiniflareBridge(project, allow_reset=True) as bridge:
        async with (
            open_env(project, provider="local", state_dir=scratch_dir()) as local,
            open_env(project, provider="bridge", url=bridge.url, secret=bridge.secret) as remote,
        ):
            await setup(local)
            await setup(remote)
            n = OPS // 4
            for (name, on_bridge), on_local in zip(
                cases(remote).items(), cases(local).values(), strict=True
            ):
                ours = await per_op(n, on_bridge)
                peer = await per_op(n, on_local)
                report_overhead(f"bridge {name} latency", ours, peer, "local")
            get = cases(remote)["kv get (1 KiB)"]
            select = cases(remote)["d1 select by key"]
            for label, op in (("kv get", get), ("d1 select", select)):
                single = await rate_batched(OPS // 4, 1, op)
                for per_request in (10, 50):
                    batched = await rate_batched(OPS, per_request, op)
                    report(
                        f"bridge {label}, {per_request} ops per request",
                        batched,
                        single,
                        "1 op per request",
                    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
