"""Queue producers through the REST API: `send` and `send_batch`, as the local binding.

    send        POST .../queues/{queue_id}/messages {body, content_type, delay_seconds?}
    send_batch  POST .../queues/{queue_id}/messages/batch {messages: [...], delay_seconds?}
    pull        POST .../queues/{queue_id}/messages/pull {batch_size, visibility_timeout_ms}
    ack         POST .../queues/{queue_id}/messages/ack {acks: [{lease_id}], retries: [...]}

wrangler.toml names queues, the API wants their ids: the first send looks the names
up once with GET .../queues (`QueueDirectory`). The REST API carries the content
types "json" and "text" only; "bytes" and "v8" (pickle) are refused rather than
re-encoded into something a consumer would not recognise. Message, batch and delay
limits are checked here with the shared helpers, as the local binding checks them.
Sends are never retried after a failure: a lost answer may hide a delivered
message, and Queues has no idempotency key. Pulls and acks are: a lease lost with
an answer runs out and its messages come back (delivery is at least once anyway).
Pulled bodies arrive as strings, decoded by the message's "CF-Content-Type":
json is parsed, bytes are base64, text is kept; v8 stays as sent, since only the
Workers runtime can read it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..config import QueueProducerSpec
from ..errors import QueueError
from ..invocation import count
from ..queues import (
    DEFAULT_PULL_BATCH,
    DEFAULT_VISIBILITY_TIMEOUT_MS,
    AckResult,
    MessageSendRequest,
    PulledMessage,
    batch_requests,
    check_batch,
    check_delay,
    check_message_size,
    check_pull,
    encode_body,
    lease_of,
)
from .client import ApiClient, ApiFailure

REST_CONTENT_TYPES = ("json", "text")


def queue_error(failure: ApiFailure) -> QueueError:
    return QueueError(f"Queue send failed: {failure.describe()}")


def pull_error(failure: ApiFailure) -> QueueError:
    return QueueError(f"Queue pull failed: {failure.describe()}")


def ack_error(failure: ApiFailure) -> QueueError:
    return QueueError(f"Queue ack failed: {failure.describe()}")


class QueueDirectory:
    """Queue name -> id for one account, listed once on first use."""

    def __init__(self, client: ApiClient) -> None:
        self._client = client
        self._ids: dict[str, str] | None = None
        self._lock = asyncio.Lock()

    async def id_of(self, name: str) -> str:
        async with self._lock:
            if self._ids is None:
                self._ids = await self._list()
        if name not in self._ids:
            raise QueueError(
                f"no queue named {name!r} in account {self._client.account_id}; "
                f"create it with `wrangler queues create {name}`"
            )
        return self._ids[name]

    async def _list(self) -> dict[str, str]:
        queues = self._client.sdk.queues
        page = await self._client.call(
            lambda: queues.list(account_id=self._client.account_id),
            lambda f: QueueError(f"listing queues failed: {f.describe()}"),
            idempotent=True,
        )
        return {q.queue_name: q.queue_id for q in page.result or [] if q.queue_name and q.queue_id}


def _message(request: MessageSendRequest, delay: int | None) -> tuple[dict[str, Any], int]:
    """The wire message and its size as counted against the limits."""
    content_type = request.content_type
    data = encode_body(request.body, content_type)  # also validates the content type
    if content_type not in REST_CONTENT_TYPES:
        raise QueueError(
            f"content_type {content_type!r} cannot be sent through the REST API, which "
            "carries 'json' and 'text' only"
        )
    size = check_message_size(data)
    message: dict[str, Any] = {"content_type": content_type}
    message["body"] = json.loads(data) if content_type == "json" else request.body
    if request.delay_seconds is not None:
        message["delay_seconds"] = check_delay(request.delay_seconds)
    elif delay:
        message["delay_seconds"] = delay
    return message, size


class ApiQueue:
    """The `Queue` producer binding of one `[[queues.producers]]` entry."""

    def __init__(
        self, client: ApiClient, directory: QueueDirectory, spec: QueueProducerSpec
    ) -> None:
        self._client = client
        self._directory = directory
        self.binding = spec.binding
        self.name = spec.queue
        self._default_delay = check_delay(spec.delivery_delay, "delivery_delay")

    async def aclose(self) -> None:
        pass  # the client is the provider's

    async def _path(self, *tail: str) -> str:
        queue_id = await self._directory.id_of(self.name)
        return self._client.account_path("queues", queue_id, "messages", *tail)

    async def send(
        self, body: Any, content_type: str = "json", delay_seconds: int | None = None
    ) -> None:
        """Send one message. `delay_seconds` (up to 24 h) defaults to the producer's
        `delivery_delay`."""
        message, _ = _message(
            MessageSendRequest(body, content_type, delay_seconds), self._default_delay
        )
        count("queues")
        await self._client.post(await self._path(), message, queue_error, idempotent=False)

    async def send_batch(
        self,
        messages: Sequence[MessageSendRequest | Mapping[str, Any]],
        delay_seconds: int | None = None,
    ) -> None:
        """Send up to 100 messages (256 KB in all) at once."""
        requests, default = batch_requests(messages, delay_seconds, self._default_delay)
        wire, sizes = [], []
        for request in requests:
            message, size = _message(request, None)
            wire.append(message)
            sizes.append(size)
        check_batch(sizes)
        body: dict[str, Any] = {"messages": wire}
        if default:
            body["delay_seconds"] = default
        count("queues")
        await self._client.post(await self._path("batch"), body, queue_error, idempotent=False)

    async def pull(
        self,
        batch_size: int = DEFAULT_PULL_BATCH,
        visibility_timeout_ms: int = DEFAULT_VISIBILITY_TIMEOUT_MS,
    ) -> list[PulledMessage]:
        """Lease up to `batch_size` messages of an `http_pull` queue for
        `visibility_timeout_ms`, as the local provider's `pull`."""
        batch_size, visibility_timeout_ms = check_pull(batch_size, visibility_timeout_ms)
        body = {"batch_size": batch_size, "visibility_timeout_ms": visibility_timeout_ms}
        count("queues")
        result = await self._client.post(
            await self._path("pull"), body, pull_error, idempotent=True
        )
        messages = result.get("messages") if isinstance(result, dict) else None
        return [_pulled(message) for message in messages or []]

    async def ack(
        self,
        acks: Iterable[str | Mapping[str, Any]] = (),
        retries: Iterable[str | Mapping[str, Any]] = (),
    ) -> AckResult:
        """Acknowledge and retry pulled messages by lease id (plain ids, or the API's
        `{"lease_id": ..., "delay_seconds": ...}` dicts)."""
        body = {
            "acks": [_lease(a, False) for a in acks],
            "retries": [_lease(r, True) for r in retries],
        }
        count("queues")
        result = await self._client.post(await self._path("ack"), body, ack_error, idempotent=True)
        result = result if isinstance(result, dict) else {}
        return AckResult(
            int(result.get("ackCount") or 0),
            int(result.get("retryCount") or 0),
            [str(w) for w in result.get("warnings") or []],
        )


def _lease(item: str | Mapping[str, Any], retry: bool) -> dict[str, Any]:
    lease, delay = lease_of(item, retry)
    return {"lease_id": lease} if delay is None else {"lease_id": lease, "delay_seconds": delay}


def _pulled(message: Mapping[str, Any]) -> PulledMessage:
    metadata = message.get("metadata")
    content_type = "json"
    if isinstance(metadata, Mapping):
        content_type = str(metadata.get("CF-Content-Type") or "json")
    body = message.get("body")
    if isinstance(body, str) and content_type == "json":
        try:
            body = json.loads(body)
        except ValueError:
            raise QueueError(f"message {message.get('id')} is not the JSON it claims") from None
    elif isinstance(body, str) and content_type == "bytes":
        body = base64.b64decode(body)
    return PulledMessage(
        id=str(message.get("id")),
        timestamp=datetime.fromtimestamp(float(message.get("timestamp_ms") or 0) / 1000, UTC),
        body=body,
        attempts=int(message.get("attempts") or 0),
        lease_id=str(message.get("lease_id")),
        content_type=content_type,
    )
