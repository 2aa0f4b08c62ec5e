"""Local R2 put/get of 1 MiB objects against raw file write+fsync / read, same run.

R2's put does more than the raw write: an MD5 of the body (R2's default checksum),
a folder fsync and an index commit that makes the object visible atomically.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from flarebase.platform.local.r2 import LocalR2

from common import QUICK, report_overhead, scratch_dir

OBJECTS = 20 if QUICK else 100
BODY = os.urandom(1024 * 1024)


async def r2_put(bucket: LocalR2, run: int) -> float:
    start = time.perf_counter()
    for i in range(OBJECTS):  # distinct keys: R2 allows one write per key per second
        await bucket.put(f"r{run}/o{i}", BODY)
    return (time.perf_counter() - start) / OBJECTS


async def r2_get(bucket: LocalR2, run: int) -> float:
    start = time.perf_counter()
    for i in range(OBJECTS):
        obj = await bucket.get(f"r{run}/o{i}")
        assert obj is not None and len(await obj.bytes()) == len(BODY)
    return (time.perf_counter() - start) / OBJECTS


def raw_put(folder: Path, run: int) -> float:
    start = time.perf_counter()
    for i in range(OBJECTS):
        with open(folder / f"r{run}-o{i}", "wb") as f:
            f.write(BODY)
            f.flush()
            os.fsync(f.fileno())
    return (time.perf_counter() - start) / OBJECTS


def raw_get(folder: Path, run: int) -> float:
    start = time.perf_counter()
    for i in range(OBJECTS):
        assert len((folder / f"r{run}-o{i}").read_bytes()) == len(BODY)
    return (time.perf_counter() - start) / OBJECTS


async def main() -> None:
    root = scratch_dir()
    bucket, raw = LocalR2(root / "bucket"), root / "raw"
    raw.mkdir()
    puts, gets = [], []
    for run in range(3):  # interleaved, best of three
        puts.append((await r2_put(bucket, run), raw_put(raw, run)))
        gets.append((await r2_get(bucket, run), raw_get(raw, run)))
    await bucket.aclose()
    for name, runs, peer in (
        ("put", puts, "file write+fsync"),
        ("get", gets, "file read"),
    ):
        ours, theirs = min(o for o, _ in runs), min(p for _, p in runs)
        report_overhead(f"r2 {name} 1 MiB", ours, theirs, peer)


if __name__ == "__main__":
    asyncio.run(main())
