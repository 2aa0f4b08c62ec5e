"""The durable chunk buffer (flarebase.server.streams.buffer) read back from SQLite, as a
new instance after a restart reads it: chunks committed several to a row, positions
inside a row, limits, chunks with newlines of their own, chunks kept in R2, and
buffers written by the earlier one-chunk-per-row layout."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from flarebase.platform import open_env
from flarebase.platform.durable_objects import DurableObject, DurableObjectState
from flarebase.server.streams import ChunkBuffer
from flarebase.server.streams.buffer import now_ms

from ..helpers import wrangler_toml

CONFIG = wrangler_toml("buffer-test", {}, index=None, migrations_dir=None).replace(
    '"ChatStream"', '"Buffered"'
)


class Buffered(DurableObject):
    """A Durable Object that only holds a ChunkBuffer (a fresh one per instance)."""

    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        super().__init__(ctx, env)
        self.buffer = ChunkBuffer(ctx.storage, env.BUCKET)

    async def write(
        self, stream_id: str, chunks: list[str], yield_every: int, saved: bool = False
    ) -> None:
        self.buffer.create(stream_id, {}, ttl_ms=60_000, abandoned_ttl_ms=60_000)
        for i, chunk in enumerate(chunks, 1):
            await self.buffer.append(stream_id, chunk)
            if i % yield_every == 0:
                await asyncio.sleep(0)  # the staged chunks commit together
        self.buffer.finish(stream_id, "completed", saved=saved)

    async def unsaved(self) -> list[str]:
        return [stream["id"] for stream in self.buffer.unsaved()]

    async def start(self, stream_id: str) -> None:
        self.buffer.create(stream_id, {}, ttl_ms=60_000, abandoned_ttl_ms=60_000)

    async def latest(self, finish: str | None = None, delete: str | None = None) -> str | None:
        if finish:
            self.buffer.finish(finish, "completed")
        if delete:
            await self.buffer.delete(delete)
        return self.buffer.latest()

    async def due(self, retry_at: int | None = None, saved: str | None = None) -> int | None:
        if saved:
            self.buffer.mark_saved(saved)
        return self.buffer.next_due(retry_at)

    async def read(self, stream_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        return await self.buffer.read(stream_id, after, limit)

    async def rows(self) -> list[int]:
        return [row["n"] for row in self.ctx.storage.sql.exec("SELECT n FROM chunks")]

    async def raw_sql(self, query: str, *bindings: Any) -> None:
        self.ctx.storage.sql.exec(query, *bindings)


def stub_of(env: Any) -> Any:
    return env.CHAT_STREAMS.get(env.CHAT_STREAMS.id_from_name("b"))


@asynccontextmanager
async def reopened(tmp_path: Path, calls: Callable[[Any], Awaitable[Any]]) -> AsyncIterator[Any]:
    """Run `calls(stub)` in one process, then give a stub in a new one (whose buffer
    reads SQLite, not the memory of the instance that wrote it)."""
    config = tmp_path / "wrangler.toml"
    config.write_text(CONFIG)
    classes, state = {"Buffered": Buffered}, tmp_path / "state"
    async with open_env(config, durable_objects=classes, state_dir=state) as env:
        await calls(stub_of(env))
    async with open_env(config, durable_objects=classes, state_dir=state) as env:
        yield stub_of(env)


def chunk(i: int, text: str = "") -> str:
    return json.dumps(
        {"type": "text-delta", "id": "t", "delta": f"w{i}{text}"}, separators=(",", ":")
    )


async def test_rows_hold_the_chunks_committed_together_and_read_back_by_position(
    tmp_path: Path,
) -> None:
    written = [chunk(i) for i in range(1, 101)]

    async with reopened(tmp_path, lambda stub: stub.write("s", written, 40)) as stub:
        assert await stub.rows() == [40, 40, 20]
        assert await stub.read("s", 0, 1000) == list(enumerate(written, 1))
        assert await stub.read("s", 55, 1000) == list(enumerate(written, 1))[55:]
        assert await stub.read("s", 39, 3) == [
            (40, written[39]),
            (41, written[40]),
            (42, written[41]),
        ]
        assert await stub.read("s", 100, 10) == []


async def test_a_chunk_with_a_newline_of_its_own_has_a_row_to_itself(tmp_path: Path) -> None:
    pretty = json.dumps({"type": "data-note", "data": {"a": 1}}, indent=2)
    written = [chunk(1), chunk(2), pretty, chunk(4, "\\n escaped, not a newline")]

    async with reopened(tmp_path, lambda stub: stub.write("s", written, 100)) as stub:
        assert await stub.rows() == [2, 1, 1]
        assert await stub.read("s", 0, 1000) == list(enumerate(written, 1))


async def test_a_chunk_over_a_megabyte_is_kept_in_r2_between_rows(tmp_path: Path) -> None:
    big = chunk(2, "x" * 1_100_000)
    written = [chunk(1), big, chunk(3), chunk(4)]

    async with reopened(tmp_path, lambda stub: stub.write("s", written, 100)) as stub:
        assert await stub.rows() == [1, 1, 2]
        assert await stub.read("s", 0, 1000) == list(enumerate(written, 1))
        assert await stub.read("s", 2, 1) == [(3, written[2])]


async def test_buffers_of_the_one_chunk_per_row_layout_read_back(tmp_path: Path) -> None:
    async def old_layout(stub: Any) -> None:
        # what an earlier flarebase wrote: no `n` column, a row per chunk
        await stub.write("s", [], 1)
        await stub.raw_sql("DROP TABLE chunks")
        await stub.raw_sql(
            "CREATE TABLE chunks (stream_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT, "
            "r2_key TEXT, PRIMARY KEY (stream_id, seq)) WITHOUT ROWID"
        )
        for i in range(1, 6):
            await stub.raw_sql("INSERT INTO chunks VALUES ('s', ?, ?, NULL)", i, chunk(i))

    async with reopened(tmp_path, old_layout) as stub:
        assert await stub.read("s", 2, 1000) == [(i, chunk(i)) for i in range(3, 6)]
        await stub.write("t", [chunk(i) for i in range(1, 4)], 100)
        assert await stub.read("t", 0, 1000) == [(i, chunk(i)) for i in range(1, 4)]


async def test_latest_is_the_newest_stream_live_or_finished(tmp_path: Path) -> None:
    async def write(stub: Any) -> None:
        await stub.write("s1", [chunk(1)], 1)
        assert await stub.latest() == "s1"  # (finished: from SQL)
        await stub.start("s2")
        assert await stub.latest() == "s2"  # (live: from memory)
        assert await stub.latest(finish="s2") == "s2"
        assert await stub.latest(delete="s2") == "s1"

    async with reopened(tmp_path, write) as stub:
        assert await stub.latest() == "s1"


async def test_next_due_is_the_expiry_or_the_retry_of_an_unsaved_stream(tmp_path: Path) -> None:
    async def write(stub: Any) -> None:
        await stub.write("s", [chunk(1)], 1)  # finished, kept 60 s, not saved yet

    async with reopened(tmp_path, write) as stub:
        expires = await stub.due()
        assert expires is not None and abs(expires - now_ms() - 60_000) < 5_000
        assert await stub.due(retry_at=now_ms() + 1_000) < expires  # saving is retried
        assert await stub.due(retry_at=now_ms() + 1_000, saved="s") == expires
        await stub.start("live")  # (due later: when it would count as stalled)
        assert await stub.due(retry_at=now_ms() + 1_000) == expires


async def test_a_stream_finished_as_saved_is_not_saved_again(tmp_path: Path) -> None:
    async def write(stub: Any) -> None:
        await stub.write("saved", [chunk(1)], 1, saved=True)
        await stub.write("unsaved", [chunk(1)], 1)

    async with reopened(tmp_path, write) as stub:
        assert await stub.unsaved() == ["unsaved"]
