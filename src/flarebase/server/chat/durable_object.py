"""ChatStream: the Durable Object of one chat (named by the chat id).

It runs the chat's responses, so one place, reachable from every server instance,
owns them:

- `start(job)` begins a response in the background (`ctx.wait_until`): the model's
  chunks are committed to the object's SQLite (streams.buffer) as they are produced
  (those produced before the model next waits are committed together), readers see
  only committed chunks, and the finished assistant message is saved to D1 before
  readers get [DONE], whether or not anyone listens. A response still running is
  stopped (and saved) first.
- `read_events(stream_id, after, wait)` returns the chunks after a position as SSE
  events, waiting up to `wait` seconds for new ones: any number of readers follow one
  response this way, from the first chunk or from where they were (`read` gives the
  same as data).
- `stop()` is the chat's stop flag: the running response ends with an `abort` chunk
  and its partial message is saved. A reader that goes away stops nothing.
- `clear()` forgets everything (the chat was deleted); nothing more is saved.
- The alarm expires finished streams (CHAT_STREAM_TTL, default 10 min; interrupted or
  stalled ones CHAT_STREAM_ABANDONED_TTL, default 1 h) and, every few seconds while a
  response runs, beats so that an object whose process died is rebuilt soon after the
  restart.

A new instance finds any stream still marked `streaming` dead (its producer was in the
previous instance): it appends an `error` chunk, marks it `interrupted`, and saves
what was streamed as the assistant message, so resuming returns what was streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ...platform.durable_objects import AlarmInvocationInfo, DurableObject, DurableObjectState
from ..models import provider_for
from ..models.base import UpstreamError
from ..streams import sse
from ..streams.buffer import ChunkBuffer, now_ms
from . import store
from .assemble import MessageAssembler
from .generate import generate

log = logging.getLogger("flarebase.server.chat")

HEARTBEAT_MS = 10_000
SAVE_RETRY_MS = 30_000
STOP_WAIT_SECONDS = 10.0
YIELD_EVERY = 64  # chunks a producer may emit without yielding to the event loop
INTERRUPTED = "the response was interrupted (the server stopped); what was streamed is kept"
INTERNAL = "the response failed (internal error)"


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # (one encoder)
_quoted = json.encoder.encode_basestring  # a str as a JSON string, in C


def chunk_json(chunk: dict[str, Any]) -> str:
    """A chunk as compact JSON. A text delta, nearly every chunk, is written directly:
    the same text in a sixth of the encoder's time (tested)."""
    delta, part = chunk.get("delta"), chunk.get("id")
    if len(chunk) == 3 and chunk["type"] == "text-delta" and type(delta) is type(part) is str:
        return f'{{"type":"text-delta","id":{_quoted(part)},"delta":{_quoted(delta)}}}'
    return _dumps(chunk)


@dataclass
class _Run:
    """A response running in this instance."""

    stream_id: str
    chat_id: str
    assembler: MessageAssembler
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: bool = False
    emitted: int = 0
    discard: bool = False  # the chat was deleted: save nothing
    task: asyncio.Future[Any] | None = None


class ChatStream(DurableObject):
    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        super().__init__(ctx, env)
        self.buffer = ChunkBuffer(ctx.storage, env.BUCKET)
        self._runs: dict[str, _Run] = {}
        self._lock = asyncio.Lock()
        ctx.block_concurrency_while(self._recover)

    # -- RPC ---------------------------------------------------------------------------------
    async def start(self, job: dict[str, Any]) -> dict[str, Any]:
        """Begin a response. `job`: streamId, chatId, messageId, createdAt, model (resolved),
        system, history (UI messages), maxSteps, ttlMs, abandonedTtlMs."""
        async with self._lock:
            await self._stop_runs()
            stream_id, chat_id = str(job["streamId"]), str(job["chatId"])
            meta = {
                "chatId": chat_id,
                "messageId": job["messageId"],
                "createdAt": job["createdAt"],
                "model": job["model"]["id"],
            }
            self.buffer.create(
                stream_id,
                meta,
                ttl_ms=int(job["ttlMs"]),
                abandoned_ttl_ms=int(job["abandonedTtlMs"]),
                r2_prefix=f"chats/{chat_id}/streams/{stream_id}",
            )
            run = _Run(stream_id, chat_id, MessageAssembler(str(job["messageId"])))
            self._runs[stream_id] = run
            run.task = asyncio.ensure_future(self._produce(run, job))
            self.ctx.wait_until(run.task)
            await self._schedule()
        return {"streamId": stream_id}

    async def read(
        self, stream_id: str | None = None, after: int = 0, wait: float = 0.0
    ) -> dict[str, Any] | None:
        """Chunks after position `after` of `stream_id` (default: the newest stream that has
        not expired), waiting up to `wait` s for some. None when there is no such stream.
        {streamId, status, chunks: [(position, json)], done}."""
        page = await self._page(stream_id, after, wait)
        if page is None:
            return None
        sid, status, done, chunks = page
        return {"streamId": sid, "status": status, "chunks": chunks, "done": done}

    async def read_events(
        self, stream_id: str | None = None, after: int = 0, wait: float = 0.0
    ) -> tuple[str, str, bool, int, str] | None:
        """`read` for followers: (streamId, status, done, last position, the chunks as SSE
        events), a flat tuple of strings that an RPC passes without copying."""
        page = await self._page(stream_id, after, wait)
        if page is None:
            return None
        sid, status, done, chunks = page
        last = chunks[-1][0] if chunks else after
        return sid, status, done, last, sse.events(chunks)

    async def _page(
        self, stream_id: str | None, after: int, wait: float
    ) -> tuple[str, str, bool, list[tuple[int, str]]] | None:
        if stream_id and self.buffer.state(stream_id) is None:
            return None
        sid = stream_id or self.buffer.latest()
        if sid is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait)
        while True:
            changed = self.buffer.change()
            state = self.buffer.state(sid)
            if state is None:  # expired or cleared meanwhile
                return sid, "expired", True, []
            status, committed = state
            chunks = await self.buffer.read(sid, after)
            finished = status != "streaming"
            reached = chunks[-1][0] if chunks else after
            done = finished and reached >= committed
            remaining = deadline - loop.time()
            if chunks or finished or remaining <= 0:
                return sid, status, done, chunks
            await ChunkBuffer.wait_for(changed, remaining)

    async def stop(self) -> bool:
        """Stop the running response (it ends with `abort`, its message saved). Returns
        once it is saved; False if nothing was running."""
        return await self._stop_runs()

    async def clear(self) -> None:
        """The chat is gone: stop without saving and delete every buffer."""
        for run in self._runs.values():
            run.discard = True
        await self._stop_runs()
        await self.buffer.delete_all()
        await self.ctx.storage.delete_alarm()

    async def alarm(self, alarm_info: AlarmInvocationInfo | None = None) -> None:
        now = now_ms()
        await self.buffer.expire(now)
        for stream in self.buffer.stalled(now):
            run = self._runs.get(stream["id"])
            if run is not None:  # no progress for the abandoned TTL: give up on it
                run.stalled = True
                run.stop.set()
            else:
                await self._interrupt(stream)
        await self._save_unsaved()
        await self._schedule()

    # -- producing -------------------------------------------------------------------------
    async def _emit(self, run: _Run, chunk: dict[str, Any]) -> None:
        data = chunk_json(chunk)
        if self.buffer.stage(run.stream_id, data) is None:  # (too large for a row)
            await self.buffer.append(run.stream_id, data)
        run.assembler.add(chunk)
        run.emitted += 1
        if run.emitted % YIELD_EVERY == 0:  # a model that never waits still lets readers run
            await asyncio.sleep(0)

    async def _produce(self, run: _Run, job: dict[str, Any]) -> None:
        provider = provider_for(job["model"], job.get("system"))
        work = asyncio.ensure_future(
            generate(
                provider,
                list(job["history"]),
                run.assembler,
                functools.partial(self._emit, run),
                tools=list(job["model"].get("tools") or []),
                max_steps=int(job.get("maxSteps", 5)),
            )
        )
        stopper = asyncio.ensure_future(run.stop.wait())
        status, error = "completed", None
        try:
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                status = "interrupted" if run.stalled else "stopped"
                error = "the response made no progress and was abandoned" if run.stalled else None
            else:
                work.result()
        except UpstreamError as e:
            status, error = "error", str(e)
        except asyncio.CancelledError:  # the process is going away: recovery will see it
            work.cancel()
            raise
        except Exception:
            log.exception("chat %s: the response failed", run.chat_id)
            status, error = "error", INTERNAL
        finally:
            stopper.cancel()
        try:
            await self._finish(run, status, error)
        except Exception:  # e.g. the storage closed under it: a new instance recovers it
            log.warning("chat %s: could not finish stream %s", run.chat_id, run.stream_id)
        finally:
            self._runs.pop(run.stream_id, None)
            run.done.set()
        with contextlib.suppress(Exception):
            await self._schedule()

    async def _finish(self, run: _Run, status: str, error: str | None) -> None:
        if run.discard:
            return
        if status == "stopped":
            await self._emit(run, {"type": "abort", "reason": "stopped"})
        elif status in ("error", "interrupted"):
            await self._emit(run, {"type": "error", "errorText": error or INTERNAL})
        run.assembler.finalize()
        self.buffer.flush()  # readers get every chunk now, and [DONE] once it is saved
        stream = self.buffer.get(run.stream_id)
        # saved before readers get [DONE]: then D1 has the answer
        saved = stream is not None and await self._save(stream, run.assembler, status, error)
        self.buffer.finish(run.stream_id, status, error, saved=saved)

    async def _stop_runs(self) -> bool:
        runs = list(self._runs.values())
        for run in runs:
            run.stop.set()
        if runs:
            waits = [asyncio.ensure_future(run.done.wait()) for run in runs]
            _, pending = await asyncio.wait(waits, timeout=STOP_WAIT_SECONDS)
            for task in pending:
                task.cancel()
        return bool(runs)

    # -- saving -------------------------------------------------------------------------------
    async def _save(
        self,
        stream: dict[str, Any],
        assembler: MessageAssembler,
        status: str | None = None,
        error: str | None = None,
    ) -> bool:
        """The assistant message and the stream's outcome (default: as stored), to D1;
        False on a failure, which is logged (the alarm tries again)."""
        meta = stream["meta"]
        if status is None:
            status, error = stream["status"], stream["error"]
        try:
            if assembler.has_content():
                await store.save_message(
                    self.env.DB,
                    self.env.BUCKET,
                    meta["chatId"],
                    assembler.message(),
                    created_at=meta["createdAt"],
                )
            await store.finish_stream(self.env.DB, stream["id"], meta["chatId"], status, error)
        except Exception:
            log.exception("chat %s: could not save stream %s", meta["chatId"], stream["id"])
            return False
        return True

    async def _assembled(self, stream: dict[str, Any]) -> MessageAssembler:
        assembler = MessageAssembler(stream["meta"]["messageId"])
        after = 0
        while True:
            chunks = await self.buffer.read(stream["id"], after, 5000)
            if not chunks:
                break
            for seq, data in chunks:
                with contextlib.suppress(ValueError):
                    assembler.add(json.loads(data))
                after = seq
        assembler.finalize()
        return assembler

    async def _interrupt(self, stream: dict[str, Any]) -> None:
        """A stream whose producer is gone: end it, keep what was streamed."""
        await self.buffer.append(
            stream["id"], chunk_json({"type": "error", "errorText": INTERRUPTED})
        )
        self.buffer.finish(stream["id"], "interrupted", INTERRUPTED)
        fresh = self.buffer.get(stream["id"])
        if fresh is not None:
            await self._save_from_buffer(fresh)

    async def _save_unsaved(self) -> None:
        for stream in self.buffer.unsaved():
            if stream["id"] not in self._runs:
                await self._save_from_buffer(stream)

    async def _save_from_buffer(self, stream: dict[str, Any]) -> None:
        """Save a finished stream with no producer, its answer assembled from its chunks."""
        if await self._save(stream, await self._assembled(stream)):
            self.buffer.mark_saved(stream["id"])

    async def _recover(self) -> None:
        if self.buffer.new:
            return
        for stream in self.buffer.with_status("streaming"):
            log.warning(
                "chat %s: stream %s was interrupted", stream["meta"]["chatId"], stream["id"]
            )
            await self._interrupt(stream)
        await self._save_unsaved()
        await self._schedule()

    async def _schedule(self) -> None:
        now = now_ms()
        due = self.buffer.next_due(retry_at=now + SAVE_RETRY_MS)
        if self._runs:
            due = min(due, now + HEARTBEAT_MS) if due is not None else now + HEARTBEAT_MS
        storage = self.ctx.storage
        current = await storage.get_alarm()
        if due is None:
            if current is not None:
                await storage.delete_alarm()
        elif current != due and (current is None or current > due or not self._runs):
            # While answers run, an earlier alarm is kept (it runs and sets the next);
            # after, the heartbeat moves to what is due: no wake-up for nothing.
            await storage.set_alarm(due)
