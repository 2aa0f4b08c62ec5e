"""Local Queues: every queue of a project in one SQLite file, `state_dir/queues/queues.sqlite3`.

One row per message: its queue, id, send time, content type, body, delivery count
(`attempts`), the time it becomes visible (after a delay, a retry delay, or when a
lease expires) and the lease that holds it while a consumer works on it.

Guarantees:
- `send`/`send_batch` return once the message is on disk: WAL with
  synchronous=FULL, so the commit is fsync'd. Sends made in the same event-loop
  turn share one commit (group commit).
- At-least-once delivery. Delivering a batch leases its messages (a push lease
  lasts 15 minutes, a pull lease `visibility_timeout_ms`); a message leaves the
  table only when acknowledged. If the process dies mid-batch, the next process
  that starts the queue's consumer releases the dead push leases at once, and a
  pull lease simply expires; either way the messages are delivered again, with
  `attempts` counting every delivery.
- A retried message waits `retry(delay_seconds)` or the consumer's `retry_delay`;
  after `max_retries` retries it moves to `dead_letter_queue` (keeping its id and
  timestamp, attempts reset) or is dropped. A message whose lease ran out
  `max_retries + 1` times counts as failed the same way.
- Batches follow `max_batch_size` and `max_batch_timeout`: a batch is delivered
  when it is full or when its oldest message has waited the timeout.
- Messages are kept at most 4 days (Cloudflare's default retention).

Consumers run in the process that serves the project, one batch at a time per
queue. Sends from other processes are noticed within `queue_poll_interval`
seconds (sends in this process wake the consumer at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import invocation
from ..config import Project, QueueConsumerSpec, QueueProducerSpec
from ..errors import ConfigError, QueueError
from ..queues import (
    DEFAULT_PULL_BATCH,
    DEFAULT_VISIBILITY_TIMEOUT_MS,
    MESSAGE_OVERHEAD_BYTES,
    RETENTION_SECONDS,
    AckResult,
    BatchOutcome,
    Message,
    MessageBatch,
    MessageSendRequest,
    PulledMessage,
    batch_requests,
    check_batch,
    check_delay,
    check_message_size,
    check_pull,
    decode_body,
    encode_body,
    lease_of,
)

log = logging.getLogger("flarebase.queues")

Consumer = Callable[..., Awaitable[Any]]
PUSH_LEASE_MS = 15 * 60 * 1000  # a consumer invocation's wall-time limit
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,           -- send order
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,     -- when it was sent
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    visible_at_ms INTEGER NOT NULL,    -- not delivered before this time
    lease_id TEXT                      -- set while a consumer holds it
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at_ms, seq);
"""
_LEASE = """
UPDATE messages SET lease_id = ? || seq, visible_at_ms = ?, attempts = attempts + 1
WHERE seq IN (
    SELECT seq FROM messages WHERE queue = ? AND visible_at_ms <= ?
    ORDER BY visible_at_ms, seq LIMIT ?
)
RETURNING seq, id, timestamp_ms, content_type, body, attempts, lease_id
"""
_INSERT = (
    "INSERT INTO messages (queue, id, timestamp_ms, content_type, body, visible_at_ms) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)

Row = tuple[
    int, str, int, str, bytes, int, str
]  # seq, id, timestamp_ms, type, body, attempts, lease


def _now_ms() -> int:
    return int(time.time() * 1000)


def _timestamp(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def connect(path: Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.executescript(_SCHEMA)
    return conn


class QueueStore:
    """The message table and the operations every queue needs, on one SQLite file."""

    def __init__(self, path: Path, consumers: Mapping[str, QueueConsumerSpec] | None = None):
        self.path = path
        self.specs = dict(consumers or {})
        self._conn: sqlite3.Connection | None = None
        self._durable: sqlite3.Connection | None = None  # synchronous=FULL, for sends
        self._pending: list[tuple[list[tuple[Any, ...]], asyncio.Future[None]]] = []
        self._flush_scheduled = False
        self.wakers: dict[str, asyncio.Event] = {}

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.path)
        return self._conn

    def close(self) -> None:
        for conn in (self._conn, self._durable):
            if conn is not None:
                conn.close()
        self._conn = self._durable = None

    def _notify(self, queue: str) -> None:
        waker = self.wakers.get(queue)
        if waker is not None:
            waker.set()

    def spec(self, queue: str) -> QueueConsumerSpec:
        return self.specs.get(queue) or QueueConsumerSpec(queue=queue)

    # sending --------------------------------------------------------------------------------
    async def append(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows durably; sends in one event-loop turn share one fsync'd commit."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((rows, done))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        await done

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if self._durable is None:
            _ = self.conn  # creates the schema
            self._durable = connect(self.path, "FULL")
        conn = self._durable
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for rows, _done in pending:
                    conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except Exception as e:
            for _, done in pending:
                if not done.done():
                    done.set_exception(QueueError(f"queue write failed: {e}"))
            return
        for rows, done in pending:
            if not done.done():
                done.set_result(None)
            for queue in {row[0] for row in rows}:
                self._notify(queue)

    # leasing --------------------------------------------------------------------------------
    def lease(self, queue: str, limit: int, lease_ms: int, prefix: str) -> list[Row]:
        """Take up to `limit` visible messages; messages out of retries go to the DLQ."""
        conn = self.conn
        spec = self.spec(queue)
        now = _now_ms()
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows: list[Row] = sorted(
                conn.execute(_LEASE, (prefix, now + lease_ms, queue, now, limit)).fetchall()
            )
            dead = [row for row in rows if row[5] > spec.max_retries + 1]
            if dead:
                self._dead_letter(queue, [(row[0], row[6]) for row in dead], now)
                rows = [row for row in rows if row[5] <= spec.max_retries + 1]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return rows

    def settle(
        self,
        queue: str,
        acks: Sequence[tuple[int, str]],
        retries: Sequence[tuple[int, str, int | None]],
    ) -> AckResult:
        """Acknowledge (delete) and retry leased messages, matched by seq and lease id."""
        conn = self.conn
        spec = self.spec(queue)
        now = _now_ms()
        result = AckResult()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for seq, lease in acks:
                if conn.execute(
                    "DELETE FROM messages WHERE seq = ? AND lease_id = ?", (seq, lease)
                ).rowcount:
                    result.ack_count += 1
                else:
                    result.warnings.append(f"lease {lease} is not held (expired or settled)")
            dead = []
            for seq, lease, delay in retries:
                row = conn.execute(
                    "SELECT attempts FROM messages WHERE seq = ? AND lease_id = ?", (seq, lease)
                ).fetchone()
                if row is None:
                    result.warnings.append(f"lease {lease} is not held (expired or settled)")
                    continue
                result.retry_count += 1
                if row[0] > spec.max_retries:
                    dead.append((seq, lease))
                    continue
                wait = spec.retry_delay if delay is None else delay
                conn.execute(
                    "UPDATE messages SET lease_id = NULL, visible_at_ms = ? WHERE seq = ?",
                    (now + wait * 1000, seq),
                )
            if dead:
                self._dead_letter(queue, dead, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if retries:
            self._notify(queue)
        return result

    def _dead_letter(self, queue: str, rows: Sequence[tuple[int, str]], now: int) -> None:
        dlq = self.spec(queue).dead_letter_queue
        if dlq:
            self.conn.executemany(
                "UPDATE messages SET queue = ?, attempts = 0, visible_at_ms = ?, lease_id = NULL "
                "WHERE seq = ? AND lease_id = ?",
                [(dlq, now, seq, lease) for seq, lease in rows],
            )
            self._notify(dlq)
            log.info("%s: %d message(s) moved to dead-letter queue %s", queue, len(rows), dlq)
        else:
            self.conn.executemany("DELETE FROM messages WHERE seq = ? AND lease_id = ?", list(rows))
            log.warning("%s: %d message(s) dropped after max_retries", queue, len(rows))

    def release_push_leases(self, queue: str) -> int:
        """Make messages leased by a push consumer visible again (that consumer is gone)."""
        return int(
            self.conn.execute(
                "UPDATE messages SET lease_id = NULL, visible_at_ms = ? "
                "WHERE queue = ? AND lease_id LIKE 'push:%'",
                (_now_ms(), queue),
            ).rowcount
        )

    def readiness(self, queue: str, limit: int) -> tuple[int, int | None]:
        """How many messages are visible (up to `limit`) and since when the oldest is."""
        row = self.conn.execute(
            "SELECT count(*), min(visible_at_ms) FROM (SELECT visible_at_ms FROM messages "
            "WHERE queue = ? AND visible_at_ms <= ? ORDER BY visible_at_ms, seq LIMIT ?)",
            (queue, _now_ms(), limit),
        ).fetchone()
        return int(row[0]), row[1]

    def next_visible(self, queue: str) -> int | None:
        row = self.conn.execute(
            "SELECT min(visible_at_ms) FROM messages WHERE queue = ? AND visible_at_ms > ?",
            (queue, _now_ms()),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def expire(self) -> int:
        cutoff = _now_ms() - RETENTION_SECONDS * 1000
        return int(
            self.conn.execute("DELETE FROM messages WHERE timestamp_ms < ?", (cutoff,)).rowcount
        )


def _rows(
    queue: str, requests: Iterable[MessageSendRequest], default_delay: int
) -> list[tuple[Any, ...]]:
    now = _now_ms()
    rows, sizes = [], []
    for request in requests:
        data = encode_body(request.body, request.content_type)
        sizes.append(check_message_size(data))
        delay = (
            default_delay if request.delay_seconds is None else check_delay(request.delay_seconds)
        )
        rows.append(
            (queue, secrets.token_hex(16), now, request.content_type, data, now + delay * 1000)
        )
    return rows


class LocalQueue:
    """The `Queue` binding of one `[[queues.producers]]` entry, plus the pull operations."""

    def __init__(self, store: QueueStore, spec: QueueProducerSpec) -> None:
        self._store = store
        self.name = spec.queue
        self.binding = spec.binding
        self._default_delay = check_delay(spec.delivery_delay, "delivery_delay")

    async def send(
        self, body: Any, content_type: str = "json", delay_seconds: int | None = None
    ) -> None:
        """Send one message; returns when it is on disk. `delay_seconds` (up to 24 h)
        defaults to the producer's `delivery_delay`."""
        request = MessageSendRequest(body, content_type, delay_seconds)
        invocation.count("queues")
        await self._store.append(_rows(self.name, [request], self._default_delay))

    async def send_batch(
        self,
        messages: Sequence[MessageSendRequest | Mapping[str, Any]],
        delay_seconds: int | None = None,
    ) -> None:
        """Send up to 100 messages (256 KB in all) atomically."""
        requests, default = batch_requests(messages, delay_seconds, self._default_delay)
        rows = _rows(self.name, requests, default) if requests else []
        check_batch([len(row[4]) + MESSAGE_OVERHEAD_BYTES for row in rows])
        invocation.count("queues")
        await self._store.append(rows)

    # pull consumers --------------------------------------------------------------------------
    def _check_pull_consumer(self) -> None:
        spec = self._store.specs.get(self.name)
        if spec is None or spec.type != "http_pull":
            raise QueueError(
                f"queue {self.name!r} has no pull consumer; declare [[queues.consumers]] "
                f'queue = "{self.name}" with type = "http_pull"'
            )

    async def pull(
        self,
        batch_size: int = DEFAULT_PULL_BATCH,
        visibility_timeout_ms: int = DEFAULT_VISIBILITY_TIMEOUT_MS,
    ) -> list[PulledMessage]:
        """Lease up to `batch_size` messages for `visibility_timeout_ms`; unacknowledged,
        they become visible again when the lease runs out."""
        self._check_pull_consumer()
        batch_size, visibility_timeout_ms = check_pull(batch_size, visibility_timeout_ms)
        prefix = f"pull:{secrets.token_hex(8)}:"
        rows = self._store.lease(self.name, batch_size, visibility_timeout_ms, prefix)
        return [
            PulledMessage(
                id=row[1],
                timestamp=_timestamp(row[2]),
                body=decode_body(row[4], row[3]),
                attempts=row[5],
                lease_id=row[6],
                content_type=row[3],
            )
            for row in rows
        ]

    async def ack(
        self,
        acks: Iterable[str | Mapping[str, Any]] = (),
        retries: Iterable[str | Mapping[str, Any]] = (),
    ) -> AckResult:
        """Acknowledge and retry pulled messages by lease id (`{"lease_id": ...,
        "delay_seconds": ...}` dicts, as in Cloudflare's API, or plain lease ids)."""
        self._check_pull_consumer()
        ack_rows = [_seq_of(lease_of(item)[0]) for item in acks]
        retry_rows = []
        for item in retries:
            lease, delay = lease_of(item, retry=True)
            retry_rows.append((*_seq_of(lease), delay))
        return self._store.settle(self.name, ack_rows, retry_rows)


def _seq_of(lease: str) -> tuple[int, str]:
    """(the message's sequence number, the lease id): pull() ends each id with it."""
    try:
        return int(lease.rsplit(":", 1)[1]), lease
    except (IndexError, ValueError):
        raise QueueError(f"not a lease id: {lease!r}") from None


# -- the provider-wide runtime --------------------------------------------------------------
class LocalQueues:
    """All queues of one local provider: producer bindings and push consumers."""

    def __init__(
        self,
        project: Project,
        folder: Path,
        consumers: Mapping[str, Consumer | str] | None = None,
        *,
        poll_interval: float = 1.0,
    ) -> None:
        self.project = project
        specs = {spec.queue: spec for spec in project.queue_consumers}
        self.store = QueueStore(folder / "queues.sqlite3", specs)
        self.handlers = dict(consumers or {})
        self.poll_interval = poll_interval
        self.env: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        for queue in self.handlers:
            spec = specs.get(queue)
            if spec is None:
                raise ConfigError(
                    f"{project.path}: a consumer function is registered for queue {queue!r} "
                    f'but there is no [[queues.consumers]] entry with queue = "{queue}"'
                )
            if spec.type != "worker":
                raise ConfigError(
                    f"{project.path}: queue {queue!r} has a pull consumer (type = "
                    f'"{spec.type}"); a consumer function needs type = "worker"'
                )

    def binding(self, spec: QueueProducerSpec) -> LocalQueue:
        return LocalQueue(self.store, spec)

    async def start(self, env: Any) -> None:
        self.env = env
        if not self.handlers:
            return
        self.store.expire()
        for queue, handler in self.handlers.items():
            fn = _resolve(handler)
            self.store.release_push_leases(queue)
            self.store.wakers[queue] = asyncio.Event()
            task = asyncio.ensure_future(self._consume(self.store.spec(queue), fn))
            self._tasks.append(task)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.store.close()

    async def _consume(self, spec: QueueConsumerSpec, handler: Consumer) -> None:
        queue, store = spec.queue, self.store
        waker = store.wakers[queue]
        prefix = f"push:{secrets.token_hex(8)}:"
        takes_env = len(inspect.signature(handler).parameters) >= 2
        last_expiry = time.monotonic()
        while True:
            try:
                await self._consume_once(spec, handler, takes_env, prefix, waker)
            except Exception:  # e.g. the file locked by another process for too long
                log.exception("queue %s: consumer loop failed; retrying", queue)
                await asyncio.sleep(self.poll_interval)
            if time.monotonic() - last_expiry > 600:
                store.expire()
                last_expiry = time.monotonic()

    async def _consume_once(
        self,
        spec: QueueConsumerSpec,
        handler: Consumer,
        takes_env: bool,
        prefix: str,
        waker: asyncio.Event,
    ) -> None:
        """Deliver one batch, or wait until one may be ready."""
        queue, store = spec.queue, self.store
        waker.clear()
        if spec.max_batch_timeout > 0:
            count, oldest = store.readiness(queue, spec.max_batch_size)
            if 0 < count < spec.max_batch_size and oldest is not None:
                wait = (oldest + spec.max_batch_timeout * 1000 - _now_ms()) / 1000
                if wait > 0:
                    await self._sleep(waker, min(wait, self.poll_interval))
                    return
        rows = store.lease(queue, spec.max_batch_size, PUSH_LEASE_MS, prefix)
        if not rows:
            wait = self.poll_interval
            upcoming = store.next_visible(queue)
            if upcoming is not None:
                wait = min(wait, max(0.0, (upcoming - _now_ms()) / 1000))
            await self._sleep(waker, wait)
            return
        await self._deliver(spec, handler, takes_env, rows)

    @staticmethod
    async def _sleep(waker: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waker.wait(), seconds)

    async def _deliver(
        self, spec: QueueConsumerSpec, handler: Consumer, takes_env: bool, rows: list[Row]
    ) -> None:
        outcome = BatchOutcome()
        messages = [
            Message(row[1], _timestamp(row[2]), decode_body(row[4], row[3]), row[5], outcome)
            for row in rows
        ]
        batch = MessageBatch(spec.queue, messages, outcome)
        succeeded = True
        try:
            with invocation.invocation():
                await (handler(batch, self.env) if takes_env else handler(batch))
        except Exception:
            log.exception("queue %s: consumer raised; unacknowledged messages retry", spec.queue)
            succeeded = False
        acks, retries = [], []
        for row in rows:
            acked, delay = outcome.decide(row[1], succeeded)
            if acked:
                acks.append((row[0], row[6]))
            else:
                retries.append((row[0], row[6], delay))
        self.store.settle(spec.queue, acks, retries)


def _resolve(handler: Consumer | str) -> Consumer:
    if isinstance(handler, str):
        module, _, attr = handler.partition(":")
        resolved: Consumer = getattr(importlib.import_module(module), attr)
        return resolved
    return handler


# -- inspection (for the CLI: `flarebase queues list|peek|purge|retry-dlq`) -----------------
@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    messages: int  # all stored messages
    ready: int  # visible now
    delayed: int  # waiting for a delay or retry delay
    leased: int  # held by a consumer


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: str
    timestamp: datetime
    content_type: str
    body: Any
    attempts: int
    visible_at: datetime
    leased: bool


def _store_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "queues" / "queues.sqlite3"


def list_queues(state_dir: str | Path, names: Iterable[str] = ()) -> list[QueueInfo]:
    """Every queue with messages, plus `names` (e.g. those in wrangler.toml) even if empty."""
    counts: dict[str, list[int]] = {name: [0, 0, 0, 0] for name in names}
    path = _store_path(state_dir)
    if path.exists():
        conn = connect(path)
        try:
            for queue, total, ready, leased in conn.execute(
                "SELECT queue, count(*), sum(visible_at_ms <= ?1), "
                "sum(lease_id IS NOT NULL AND visible_at_ms > ?1) FROM messages GROUP BY queue",
                (_now_ms(),),
            ):
                counts[queue] = [total, ready, total - ready - leased, leased]
        finally:
            conn.close()
    return [QueueInfo(name, *counts[name]) for name in sorted(counts)]


def peek(state_dir: str | Path, queue: str, limit: int = 10) -> list[StoredMessage]:
    """The first `limit` messages of a queue in delivery order, without leasing them."""
    path = _store_path(state_dir)
    if not path.exists():
        return []
    conn = connect(path)
    try:
        rows = conn.execute(
            "SELECT id, timestamp_ms, content_type, body, attempts, visible_at_ms, lease_id "
            "FROM messages WHERE queue = ? ORDER BY visible_at_ms, seq LIMIT ?",
            (queue, limit),
        ).fetchall()
    finally:
        conn.close()
    now = _now_ms()
    return [
        StoredMessage(
            id,
            _timestamp(ts),
            ctype,
            decode_body(body, ctype),
            attempts,
            _timestamp(vis),
            lease is not None and vis > now,
        )
        for id, ts, ctype, body, attempts, vis, lease in rows
    ]


def purge(state_dir: str | Path, queue: str) -> int:
    """Delete every message of a queue; returns how many."""
    path = _store_path(state_dir)
    if not path.exists():
        return 0
    conn = connect(path)
    try:
        return int(conn.execute("DELETE FROM messages WHERE queue = ?", (queue,)).rowcount)
    finally:
        conn.close()


def retry_dlq(state_dir: str | Path, dead_letter_queue: str, into: str) -> int:
    """Move every message of a dead-letter queue back to queue `into` (attempts reset,
    visible now); returns how many. A running consumer of `into` sees them within its
    poll interval."""
    path = _store_path(state_dir)
    if not path.exists():
        return 0
    conn = connect(path)
    try:
        return int(
            conn.execute(
                "UPDATE messages SET queue = ?, attempts = 0, visible_at_ms = ?, lease_id = NULL "
                "WHERE queue = ?",
                (into, _now_ms(), dead_letter_queue),
            ).rowcount
        )
    finally:
        conn.close()
