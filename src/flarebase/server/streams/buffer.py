"""A durable, replayable buffer of stream chunks in a Durable Object's SQLite storage.

Tables (in the object's own storage, not D1):
  streams(id, status, error, meta, created_ms, updated_ms, finished_ms, expires_ms,
          ttl_ms, abandoned_ttl_ms, r2_prefix, saved)
  chunks(stream_id, seq, n, data, r2_key)
      one row per commit: the `n` chunks at positions seq - n + 1 .. seq, their JSON
      texts joined by newlines (a compact JSON text has none); a chunk with a newline
      of its own, or kept in R2, has a row to itself

Positions are 1, 2, 3, ... per stream. Writing is a group commit: `append` stages a
chunk and the chunks staged until the producer next yields to the event loop are
committed together, in one row (measured: a third of the time of a row per chunk).
Readers only ever see committed chunks, so whatever a reader has seen survives a
crash (a chunk that was staged but not committed was seen by no one). A chunk too
large for a row (over `INLINE_CHUNK_BYTES`) is kept in R2 and its row points to it.

The chunks committed by this instance are also kept in memory (up to
`MEMORY_BYTES` per stream), so that live readers are served without a query.
Readers wait with `change()` + `wait_for()`.

Statuses: streaming, then one of completed, stopped, error, interrupted. A finished
stream expires `ttl_ms` after it finished (interrupted ones after `abandoned_ttl_ms`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

INLINE_CHUNK_BYTES = 1_000_000  # under the 2,000,000-byte row limit, with room
BATCH_BYTES = 1_000_000  # chunks per row
MEMORY_BYTES = 8_000_000  # committed chunks kept in memory per stream
FINISHED = ("completed", "stopped", "error", "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    error TEXT,
    meta TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    expires_ms INTEGER,
    ttl_ms INTEGER NOT NULL,
    abandoned_ttl_ms INTEGER NOT NULL,
    r2_prefix TEXT NOT NULL,
    saved INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chunks (
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    n INTEGER NOT NULL DEFAULT 1,
    data TEXT,
    r2_key TEXT,
    PRIMARY KEY (stream_id, seq)
) WITHOUT ROWID;
"""
_INSERT = "INSERT INTO chunks (stream_id, seq, n, data) VALUES (?, ?, ?, ?)"
# Buffers written before rows held several chunks: each row is one chunk.
_UPGRADE = "ALTER TABLE chunks ADD COLUMN n INTEGER NOT NULL DEFAULT 1"


def now_ms() -> int:
    return int(time.time() * 1000)


class _State:
    """What this instance knows of one stream: its status and committed chunks."""

    __slots__ = ("committed", "memory", "memory_bytes", "staged", "status")

    def __init__(self, status: str, committed: int, memory: list[str] | None) -> None:
        self.status = status
        self.committed = committed  # the last committed position
        self.staged = committed  # the last position given out
        self.memory = memory  # committed chunks 1..n, or None (read from SQL)
        self.memory_bytes = 0


class ChunkBuffer:
    """The chunk buffer of one Durable Object. `bucket` (an R2 binding) holds chunks
    too large for a row, under the stream's `r2_prefix` as `<seq>.json`."""

    def __init__(self, storage: Any, bucket: Any = None) -> None:
        self.sql = storage.sql
        self.bucket = bucket
        self.new = storage.transaction_sync(self._create_tables)  # (one commit)
        self._states: dict[str, _State] = {}
        self._newest = ""  # the last stream this instance created
        self._prefix: dict[str, str] = {}
        self._touched: dict[str, int] = {}
        self._pending: list[tuple[str, int, str]] = []
        self._flush_scheduled = False
        self._changed = asyncio.Event()

    def _create_tables(self) -> bool:
        """Create (or upgrade) the tables; True if they are new (nothing to recover)."""
        columns = [row["name"] for row in self.sql.exec("PRAGMA table_info(chunks)")]
        if columns and "n" not in columns:
            self.sql.exec(_UPGRADE)
        self.sql.exec(_SCHEMA)
        return not columns

    # -- streams ---------------------------------------------------------------------------
    def create(
        self,
        stream_id: str,
        meta: dict[str, Any],
        ttl_ms: int,
        abandoned_ttl_ms: int,
        r2_prefix: str = "streams",
    ) -> None:
        now = now_ms()
        self.sql.exec(
            "INSERT INTO streams (id, status, meta, created_ms, updated_ms, ttl_ms, "
            "abandoned_ttl_ms, r2_prefix) VALUES (?, 'streaming', ?, ?, ?, ?, ?, ?)",
            stream_id,
            json.dumps(meta),
            now,
            now,
            int(ttl_ms),
            int(abandoned_ttl_ms),
            r2_prefix,
        )
        self._prefix[stream_id] = r2_prefix
        self._states[stream_id] = _State("streaming", 0, [])
        self._newest = stream_id
        self._touched[stream_id] = now
        self._notify()

    def get(self, stream_id: str) -> dict[str, Any] | None:
        row = self.sql.exec("SELECT * FROM streams WHERE id = ?", stream_id).next()
        return _stream(row) if row else None

    def latest(self) -> str | None:
        """The id of the newest stream that has not expired."""
        newest = self._states.get(self._newest)
        if newest is not None and newest.status == "streaming":  # (a resume of a live one)
            return self._newest
        row = self.sql.exec(
            "SELECT id FROM streams WHERE expires_ms IS NULL OR expires_ms > ? "
            "ORDER BY created_ms DESC, rowid DESC LIMIT 1",
            now_ms(),
        ).next()
        return None if row is None else str(row["id"])

    def state(self, stream_id: str) -> tuple[str, int] | None:
        """(status, last committed position), or None if there is no such stream."""
        state = self._state(stream_id)
        return None if state is None else (state.status, state.committed)

    def _state(self, stream_id: str) -> _State | None:
        state = self._states.get(stream_id)
        if state is None:
            row = self.sql.exec(
                "SELECT s.status, (SELECT coalesce(max(seq), 0) FROM chunks "
                "WHERE stream_id = s.id) AS n FROM streams s WHERE s.id = ?",
                stream_id,
            ).next()
            if row is None:
                return None
            state = self._states[stream_id] = _State(str(row["status"]), int(row["n"]), None)
        return state

    def with_status(self, *statuses: str) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in statuses)
        rows = self.sql.exec(f"SELECT * FROM streams WHERE status IN ({marks})", *statuses)
        return [_stream(row) for row in rows]

    def unsaved(self) -> list[dict[str, Any]]:
        rows = self.sql.exec("SELECT * FROM streams WHERE saved = 0 AND status != 'streaming'")
        return [_stream(row) for row in rows]

    def mark_saved(self, stream_id: str) -> None:
        self.sql.exec("UPDATE streams SET saved = 1 WHERE id = ?", stream_id)

    def finish(
        self, stream_id: str, status: str, error: str | None = None, saved: bool = False
    ) -> bool:
        """Commit what is staged and mark a streaming stream finished (and `saved`, in
        the same write); False if it was not streaming."""
        assert status in FINISHED
        self.flush()
        stream = self.get(stream_id)
        if stream is None or stream["status"] != "streaming":
            return False
        now = now_ms()
        keep = stream["abandoned_ttl_ms"] if status == "interrupted" else stream["ttl_ms"]
        self.sql.exec(
            "UPDATE streams SET status = ?, error = ?, finished_ms = ?, updated_ms = ?, "
            "expires_ms = ?, saved = max(saved, ?) WHERE id = ?",
            status,
            error,
            now,
            now,
            now + keep,
            int(saved),
            stream_id,
        )
        state = self._state(stream_id)
        if state is not None:
            state.status = status
        self._notify()
        return True

    def next_due(self, retry_at: int | None = None) -> int | None:
        """When the next finished stream expires, or a streaming one counts as stalled,
        or (with `retry_at`) a finished one that is not saved yet is to be saved again."""
        row = self.sql.exec(
            "SELECT min(CASE WHEN status = 'streaming' THEN updated_ms + abandoned_ttl_ms "
            "WHEN saved = 0 AND ?1 IS NOT NULL THEN min(coalesce(expires_ms, ?1), ?1) "
            "ELSE expires_ms END) AS due FROM streams",
            retry_at,
        ).one()
        return None if row["due"] is None else int(row["due"])

    def stalled(self, now: int) -> list[dict[str, Any]]:
        rows = self.sql.exec(
            "SELECT * FROM streams WHERE status = 'streaming' "
            "AND updated_ms + abandoned_ttl_ms <= ?",
            now,
        )
        return [_stream(row) for row in rows]

    async def expire(self, now: int) -> list[str]:
        """Delete the streams that expired by `now` (and their chunks); their ids."""
        ids = [
            row["id"]
            for row in self.sql.exec(
                "SELECT id FROM streams WHERE expires_ms IS NOT NULL AND expires_ms <= ?", now
            )
        ]
        for stream_id in ids:
            await self.delete(stream_id)
        return ids

    async def delete(self, stream_id: str) -> None:
        self.flush()
        keys = [
            row["r2_key"]
            for row in self.sql.exec(
                "SELECT r2_key FROM chunks WHERE stream_id = ? AND r2_key IS NOT NULL", stream_id
            )
        ]
        for i in range(0, len(keys), 1000):
            await self.bucket.delete(keys[i : i + 1000])
        self.sql.exec("DELETE FROM chunks WHERE stream_id = ?", stream_id)
        self.sql.exec("DELETE FROM streams WHERE id = ?", stream_id)
        for table in (self._states, self._prefix, self._touched):
            table.pop(stream_id, None)
        self._notify()

    async def delete_all(self) -> None:
        for row in self.sql.exec("SELECT id FROM streams").to_array():
            await self.delete(row["id"])

    # -- chunks ----------------------------------------------------------------------------
    def stage(self, stream_id: str, data: str) -> int | None:
        """Stage one chunk (a JSON text); its position. It is committed, with the others
        staged meanwhile, as soon as the producer yields to the event loop. None for a
        chunk too large for a row: `append` that one."""
        if len(data) > INLINE_CHUNK_BYTES // 4 and len(data.encode()) > INLINE_CHUNK_BYTES:
            return None
        seq = self._next_position(stream_id)
        self._pending.append((stream_id, seq, data))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return seq

    async def append(self, stream_id: str, data: str) -> int:
        """`stage`, or for a chunk too large for a row, keep it in R2 and commit it (with
        what was staged before it) at once; its position."""
        seq = self.stage(stream_id, data)
        if seq is None:
            seq = self._next_position(stream_id)
            await self._append_to_r2(stream_id, seq, data)
        return seq

    def _next_position(self, stream_id: str) -> int:
        """Give out the next position of a streaming stream."""
        state = self._state(stream_id)
        if state is None or state.status != "streaming":
            raise ValueError(f"stream {stream_id} is not streaming")
        state.staged += 1
        return state.staged

    async def _append_to_r2(self, stream_id: str, seq: int, data: str) -> None:
        if self.bucket is None:
            raise ValueError("a chunk over 1 MB needs an R2 bucket")
        self.flush()  # what came before it first
        prefix = self._prefix.get(stream_id)
        if prefix is None:
            row = self.sql.exec("SELECT r2_prefix FROM streams WHERE id = ?", stream_id).one()
            prefix = self._prefix[stream_id] = str(row["r2_prefix"])
        key = f"{prefix}/{seq}.json"
        await self.bucket.put(key, data.encode())
        self.sql.exec(
            "INSERT INTO chunks (stream_id, seq, r2_key) VALUES (?, ?, ?)", stream_id, seq, key
        )
        self._committed(stream_id, [data])

    def flush(self) -> None:
        """Commit the staged chunks (a row per stream and megabyte), then wake the
        readers."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if not pending:
            return
        for stream_id, last, batch in _rows(pending):
            if stream_id in self._states:  # (not deleted meanwhile)
                self.sql.exec(_INSERT, stream_id, last, len(batch), "\n".join(batch))
                self._committed(stream_id, batch)
        now = now_ms()
        for stream_id in {p[0] for p in pending}:
            if now - self._touched.get(stream_id, 0) >= 1000:  # progress, for stall detection
                self._touched[stream_id] = now
                self.sql.exec("UPDATE streams SET updated_ms = ? WHERE id = ?", now, stream_id)
        self._notify()

    def _committed(self, stream_id: str, batch: list[str]) -> None:
        state = self._states.get(stream_id)
        if state is None:
            return
        state.committed += len(batch)
        if state.memory is not None:
            state.memory.extend(batch)
            state.memory_bytes += sum(len(d) for d in batch)
            if state.memory_bytes > MEMORY_BYTES:
                state.memory = None  # too big to keep: read it from SQL

    async def read(self, stream_id: str, after: int, limit: int = 1000) -> list[tuple[int, str]]:
        """Committed chunks after position `after`, in order, at most `limit`."""
        state = self._state(stream_id)
        if state is None:
            return []
        if state.memory is not None:
            end = min(state.committed, after + limit)
            return [(seq, state.memory[seq - 1]) for seq in range(after + 1, end + 1)]
        rows = self.sql.exec(
            "SELECT seq, n, data, r2_key FROM chunks WHERE stream_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            stream_id,
            after,
            limit,
        ).raw()
        out: list[tuple[int, str]] = []
        for seq, n, data, key in rows:
            if data is None and key is not None:
                obj = await self.bucket.get(key)
                data = "" if obj is None else await obj.text()
            texts = data.split("\n") if n > 1 else [str(data)]
            first = int(seq) - len(texts) + 1
            out += [(first + i, text) for i, text in enumerate(texts) if first + i > after]
            if len(out) >= limit:
                break
        return out[:limit]

    # -- waiting ---------------------------------------------------------------------------
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def change(self) -> asyncio.Event:
        """An event set at the next change (take it before looking, then wait on it)."""
        return self._changed

    @staticmethod
    async def wait_for(event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()


def _rows(pending: list[tuple[str, int, str]]) -> Iterator[tuple[str, int, list[str]]]:
    """Staged chunks as rows (stream, last position, chunks): a stream's consecutive
    chunks up to BATCH_BYTES, and a chunk with a newline of its own alone."""
    stream, last, size, alone = "", 0, 0, False
    batch: list[str] = []
    for stream_id, seq, data in pending:
        newline = "\n" in data
        if batch and (alone or newline or stream_id != stream or size >= BATCH_BYTES):
            yield stream, last, batch
            batch, size = [], 0
        stream, last, alone = stream_id, seq, newline
        batch.append(data)
        size += len(data)
    if batch:
        yield stream, last, batch


def _stream(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["meta"] = json.loads(row["meta"])
    return out
