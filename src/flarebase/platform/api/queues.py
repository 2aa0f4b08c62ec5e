"""Queue producers through the REST API: `send` and `send_batch`, as the local binding.

    send        POST .../queues/{queue_id}/messages {body, content_type, delay_seconds?}
    send_batch  POST .../queues/{queue_id}/messages/batch {messages: [...], delay_seconds?}

wrangler.toml names queues, the API wants their ids: the first send looks the names
up once with GET .../queues (`QueueDirectory`). The REST API carries the content
types "json" and "text" only; "bytes" and "v8" (pickle) are refused rather than
re-encoded into something a consumer would not recognise. Message, batch and delay
limits are checked here with the shared helpers, as the local binding checks them.
Sends are never retried after a failure: a lost answer may hide a delivered
message, and Queues has no idempotency key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import QueueProducerSpec
from ..errors import QueueError
from ..invocation import count
from ..queues import (
    MessageSendRequest,
    batch_requests,
    check_batch,
    check_delay,
    check_message_size,
    encode_body,
)
from .client import ApiClient, ApiFailure

REST_CONTENT_TYPES = ("json", "text")


def queue_error(failure: ApiFailure) -> QueueError:
    return QueueError(f"Queue send failed: {failure.describe()}")


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

    async def pull(self, *args: Any, **kwargs: Any) -> Any:
        raise QueueError("the api provider does not implement pull consumers yet")

    async def ack(self, *args: Any, **kwargs: Any) -> Any:
        raise QueueError("the api provider does not implement pull consumers yet")
