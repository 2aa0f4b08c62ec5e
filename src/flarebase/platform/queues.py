"""Queues: the Python shape of Cloudflare's API, shared by every provider.

Producer (the binding named in `[[queues.producers]]`)::

    await env.JOBS.send({"task": "resize", "id": 7})                  # content_type="json"
    await env.JOBS.send("hello", content_type="text", delay_seconds=30)
    await env.JOBS.send_batch([{"body": 1}, MessageSendRequest(body=b"x", content_type="bytes")])

Push consumer (a `[[queues.consumers]]` entry; the Python function, like a Worker's
`queue(batch, env)` handler, is registered with the provider by queue name:
`open_env("wrangler.toml", queue_consumers={"jobs": handle})`; a "module:function"
string works too)::

    async def handle(batch: MessageBatch, env: Env) -> None:
        for message in batch.messages:
            if await process(message.body):
                message.ack()
            else:
                message.retry(delay_seconds=60)

When the handler returns, messages it did not retry are acknowledged; when it raises,
messages it did not acknowledge are retried. Retried `max_retries` times, a message goes
to the `dead_letter_queue`, or is dropped if there is none.

Pull consumer (`type = "http_pull"`), from any process::

    for m in await env.JOBS.pull(batch_size=10, visibility_timeout_ms=30_000):
        ...
    await env.JOBS.ack(acks=[m.lease_id], retries=[{"lease_id": n.lease_id, "delay_seconds": 5}])

Content types are Cloudflare's: "json" (default here), "text", "bytes", and "v8", which
for Python bodies means pickle (the counterpart of V8 structured clone).
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import LimitExceeded, QueueError

# Limits (reference/cloudflare-limits.md, "Queues"); 1 KB = 1,000 bytes.
MAX_MESSAGE_BYTES = 128_000
MESSAGE_OVERHEAD_BYTES = 100  # internal metadata counts towards the limits
MAX_BATCH_MESSAGES = 100
MAX_BATCH_BYTES = 256_000
MAX_DELAY_SECONDS = 86_400
MAX_RETRIES = 100
MAX_PULL_BATCH = 100
DEFAULT_PULL_BATCH = 5
DEFAULT_VISIBILITY_TIMEOUT_MS = 30_000
MAX_VISIBILITY_TIMEOUT_MS = 12 * 3600 * 1000
RETENTION_SECONDS = 4 * 86_400
CONTENT_TYPES = ("json", "text", "bytes", "v8")

log = logging.getLogger("flarebase.queues")


class QueueLimitExceeded(QueueError, LimitExceeded):
    """A documented Queues limit was hit (message or batch size, delay, batch count)."""

    code = "QUEUE_LIMIT_EXCEEDED"


# -- encoding ------------------------------------------------------------------------------
def check_content_type(content_type: Any) -> str:
    if content_type not in CONTENT_TYPES:
        raise QueueError(
            f"message content type {content_type} is invalid; if specified, "
            "must be one of 'text', 'json', 'bytes', or 'v8'"
        )
    return str(content_type)


def check_body(body: Any, content_type: str) -> None:
    """The body type that "text" and "bytes" need (any value may go as "json" or "v8",
    if it serializes)."""
    if content_type == "text" and not isinstance(body, str):
        raise QueueError(f"content_type 'text' needs a str body, not {type(body).__name__}")
    if content_type == "bytes" and not isinstance(body, (bytes, bytearray, memoryview)):
        raise QueueError(f"content_type 'bytes' needs a bytes body, not {type(body).__name__}")


def encode_body(body: Any, content_type: str = "json") -> bytes:
    """The bytes stored and counted against the limits for one message body."""
    check_body(body, check_content_type(content_type))
    if content_type == "json":
        try:
            return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as e:
            raise QueueError(f"message body cannot be serialized as JSON: {e}") from None
    if content_type == "text":
        return body.encode()
    if content_type == "bytes":
        return bytes(body)
    try:
        return pickle.dumps(body, protocol=5)  # "v8"
    except Exception as e:
        raise QueueError(f"message body cannot be serialized: {e}") from None


def decode_body(data: bytes, content_type: str) -> Any:
    if content_type == "json":
        return json.loads(data)
    if content_type == "text":
        return data.decode()
    if content_type == "v8":
        return pickle.loads(data)
    return data


def check_message_size(data: bytes) -> int:
    """The message's size counted against the limits (body + metadata)."""
    size = len(data) + MESSAGE_OVERHEAD_BYTES
    if size > MAX_MESSAGE_BYTES:
        raise QueueLimitExceeded(
            f"message length of {size} bytes (body {len(data)} + "
            f"{MESSAGE_OVERHEAD_BYTES} of metadata) exceeds limit of {MAX_MESSAGE_BYTES}"
        )
    return size


def check_batch(sizes: list[int]) -> None:
    if not sizes:
        raise QueueError("send_batch() needs at least one message")
    if len(sizes) > MAX_BATCH_MESSAGES:
        raise QueueLimitExceeded(
            f"batch message count of {len(sizes)} exceeds limit of {MAX_BATCH_MESSAGES}"
        )
    total = sum(sizes)
    if total > MAX_BATCH_BYTES:
        raise QueueLimitExceeded(f"batch size of {total} bytes exceeds limit of {MAX_BATCH_BYTES}")


def check_delay_type(delay_seconds: Any, what: str = "delay_seconds") -> None:
    """A number; alone, for a provider that leaves the limits to the Queues service."""
    if isinstance(delay_seconds, bool) or not isinstance(delay_seconds, (int, float)):
        raise QueueError(f"{what} must be a number of seconds")


def check_delay(delay_seconds: Any, what: str = "delay_seconds") -> int:
    """A delay within Queues' limits, in whole seconds."""
    check_delay_type(delay_seconds, what)
    if delay_seconds < 0:
        raise QueueError(f"{what} must not be negative; got {delay_seconds}")
    if delay_seconds > MAX_DELAY_SECONDS:
        raise QueueLimitExceeded(
            f"{what} of {delay_seconds} exceeds the maximum of {MAX_DELAY_SECONDS} (24 hours)"
        )
    return int(delay_seconds)


@dataclass(frozen=True, slots=True)
class MessageSendRequest:
    """One entry of `send_batch` (a dict with the same keys works too)."""

    body: Any
    content_type: str = "json"
    delay_seconds: int | None = None

    @classmethod
    def of(cls, item: MessageSendRequest | Mapping[str, Any]) -> MessageSendRequest:
        if isinstance(item, MessageSendRequest):
            return item
        if isinstance(item, Mapping) and "body" in item:
            unknown = set(item) - {"body", "content_type", "delay_seconds"}
            if unknown:
                raise QueueError(f"unknown keys in a send_batch() entry: {sorted(unknown)}")
            return cls(item["body"], item.get("content_type", "json"), item.get("delay_seconds"))
        raise QueueError("send_batch() entries are MessageSendRequest or {'body': ...} dicts")


def batch_requests(
    messages: Sequence[MessageSendRequest | Mapping[str, Any]],
    delay_seconds: Any,
    default_delay: int,
) -> tuple[list[MessageSendRequest], int]:
    """`send_batch()`'s messages as MessageSendRequests, and the batch's delay: the one
    given (checked), else the producer's `default_delay`."""
    requests = [MessageSendRequest.of(m) for m in messages]
    return requests, default_delay if delay_seconds is None else check_delay(delay_seconds)


# -- consumers -------------------------------------------------------------------------------
class BatchOutcome:
    """What a consumer decided for a batch. The first decision for a message wins; a
    per-message call after `ack_all()`/`retry_all()` has no effect (and is logged)."""

    def __init__(self) -> None:
        self.ack_all = False
        self.retry_all = False
        self.retry_all_delay: int | None = None
        self.acks: set[str] = set()
        self.retries: dict[str, int | None] = {}

    def ack(self, message_id: str) -> None:
        if self.retry_all or message_id in self.retries:
            log.warning("ack() on message %s after it was retried has no effect", message_id)
            return
        self.acks.add(message_id)

    def retry(self, message_id: str, delay_seconds: int | None) -> None:
        if self.ack_all or message_id in self.acks:
            log.warning("retry() on message %s after it was acked has no effect", message_id)
            return
        self.retries[message_id] = delay_seconds

    def decide(self, message_id: str, handler_succeeded: bool) -> tuple[bool, int | None]:
        """(acknowledged, retry delay or None for the consumer's default)."""
        if message_id in self.acks:
            return True, None
        if message_id in self.retries:
            return False, self.retries[message_id]
        if self.ack_all:
            return True, None
        if self.retry_all:
            return False, self.retry_all_delay
        return handler_succeeded, None


class Message:
    """One delivered message: `id`, `timestamp`, `body`, `attempts` (1 on first delivery)."""

    __slots__ = ("_outcome", "attempts", "body", "id", "timestamp")

    def __init__(
        self, id: str, timestamp: datetime, body: Any, attempts: int, outcome: BatchOutcome
    ) -> None:
        self.id = id
        self.timestamp = timestamp
        self.body = body
        self.attempts = attempts
        self._outcome = outcome

    def ack(self) -> None:
        self._outcome.ack(self.id)

    def retry(self, delay_seconds: int | None = None) -> None:
        if delay_seconds is not None:
            delay_seconds = check_delay(delay_seconds)
        self._outcome.retry(self.id, delay_seconds)

    def __repr__(self) -> str:
        return f"Message({self.id}, attempts={self.attempts})"


class MessageBatch:
    """What a push consumer receives: `queue` (its name) and `messages`."""

    __slots__ = ("_outcome", "messages", "queue")

    def __init__(self, queue: str, messages: list[Message], outcome: BatchOutcome) -> None:
        self.queue = queue
        self.messages = messages
        self._outcome = outcome

    def ack_all(self) -> None:
        if self._outcome.retry_all:
            log.warning("ack_all() after retry_all() has no effect")
            return
        self._outcome.ack_all = True

    def retry_all(self, delay_seconds: int | None = None) -> None:
        if delay_seconds is not None:
            delay_seconds = check_delay(delay_seconds)
        if self._outcome.ack_all:
            log.warning("retry_all() after ack_all() has no effect")
            return
        self._outcome.retry_all = True
        self._outcome.retry_all_delay = delay_seconds


# -- pull consumers --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PulledMessage:
    id: str
    timestamp: datetime
    body: Any
    attempts: int
    lease_id: str
    content_type: str


@dataclass(slots=True)
class AckResult:
    ack_count: int = 0
    retry_count: int = 0
    warnings: list[str] = field(default_factory=list)


def lease_of(item: str | Mapping[str, Any], retry: bool = False) -> tuple[str, int | None]:
    """The lease id of a pulled message to ack or retry (a plain id, or the API's
    `{"lease_id": ..., "delay_seconds": ...}`) and, for a retry, its checked delay."""
    lease = item.get("lease_id") if isinstance(item, Mapping) else item
    if not isinstance(lease, str) or not lease:
        raise QueueError("a lease id is a string from pull()")
    delay = item.get("delay_seconds") if retry and isinstance(item, Mapping) else None
    return lease, None if delay is None else check_delay(delay)


def check_pull(batch_size: Any, visibility_timeout_ms: Any) -> tuple[int, int]:
    if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_PULL_BATCH:
        raise QueueLimitExceeded(f"batch_size must be between 1 and {MAX_PULL_BATCH}")
    if (
        not isinstance(visibility_timeout_ms, int)
        or not 0 <= visibility_timeout_ms <= MAX_VISIBILITY_TIMEOUT_MS
    ):
        raise QueueLimitExceeded(
            f"visibility_timeout_ms must be between 0 and {MAX_VISIBILITY_TIMEOUT_MS} (12 hours)"
        )
    return batch_size, visibility_timeout_ms
