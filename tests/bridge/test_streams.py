"""Bodies stream through the bridge in signed frames, from every kind of source."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

from flarebase.platform import Env

MiB = 1024 * 1024


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[start : start + size]


class Sized:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return pieces(self.data, 100_000)


async def test_r2_values_of_every_kind_round_trip(env: Env, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    with path.open("rb") as f:
        sources = {
            "bytes": data,
            "file": f,
            "unsized-stream": pieces(data, 7_777),  # length unknown: spooled first
            "sized-stream": Sized(data),  # length known: streamed as it is read
            "bytesio": io.BytesIO(data),
        }
        for key, value in sources.items():
            obj = await env.BUCKET.put(key, value)
            assert obj.size == len(data), key
    for key in sources:
        got = await env.BUCKET.get(key)
        chunks = [c async for c in got.body]
        assert len(chunks) > 1 and b"".join(chunks) == data, key


async def test_r2_ranges_stream_only_the_range(env: Env) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    await env.BUCKET.put("ranged", data)
    part = await env.BUCKET.get("ranged", range={"offset": 1000, "length": 1_500_000})
    assert await part.bytes() == data[1000:1_501_000]
    tail = await env.BUCKET.get("ranged", range={"suffix": 10})
    assert await tail.bytes() == data[-10:]


async def test_large_kv_values_stream_both_ways(env: Env) -> None:
    data = os.urandom(5 * MiB)
    await env.KV.put("big", pieces(data, 65_536))
    assert await env.KV.get("big", "bytes") == data
    stream = await env.KV.get("big", "stream")
    assert b"".join([c async for c in stream]) == data


class Boom(Exception):
    pass


class SizedFailing:
    """Says it has 3 MiB, fails after 1 MiB: the bridge must not store a torn object."""

    def __len__(self) -> int:
        return 3 * MiB

    async def _gen(self) -> AsyncIterator[bytes]:
        yield b"x" * MiB
        raise Boom("the source failed")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen()


async def test_a_source_failing_mid_stream_stores_nothing(env: Env) -> None:
    import pytest

    await env.BUCKET.put("kept", b"old")
    with pytest.raises(Boom):
        await env.BUCKET.put("kept", SizedFailing())
    assert await (await env.BUCKET.get("kept")).bytes() == b"old"
    with pytest.raises(Boom):
        await env.BUCKET.put("new", SizedFailing())
    assert await env.BUCKET.head("new") is None
