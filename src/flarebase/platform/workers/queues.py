"""Queues inside a Python Worker: the runtime's `Queue` producer binding, and the
consumer side (`dispatch_batch`) that the generated entry point's `queue` handler uses.

Producers have the `local` API: `send(body, content_type="json", delay_seconds=None)`
and `send_batch([...], delay_seconds=None)`. Bodies are checked and measured by the
shared rules of `flarebase.platform.queues` (the same errors as every provider),
then sent as JS values: JSON bodies as plain objects (through JSON, so None is
null), text as strings, bytes as Uint8Arrays. "v8" (structured clone) sends the
value converted as an RPC argument would be: bytes, datetimes, dicts and lists
keep their types; Python objects that only pickle could carry are refused.

Pull consumers are reached through Cloudflare's HTTP API, not a Worker binding.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import QueueError
from ..invocation import count
from ..queues import (
    MESSAGE_OVERHEAD_BYTES,
    BatchOutcome,
    Message,
    MessageBatch,
    MessageSendRequest,
    check_batch,
    check_content_type,
    check_delay,
    check_message_size,
    encode_body,
)
from ._ffi import JsException, attr, to_js_array, to_js_json, to_js_value, to_py
from .errors import queue_error

log = logging.getLogger("flarebase.queues")


def _request(request: MessageSendRequest) -> tuple[dict[str, Any], int]:
    """A MessageSendRequest as the JS binding's fields, and its size against the limits."""
    content_type = check_content_type(request.content_type)
    if content_type == "v8":
        try:
            body = to_js_value(request.body)
        except (TypeError, ValueError) as e:
            raise QueueError(f"message body cannot be sent as a structured clone: {e}") from None
        size = MESSAGE_OVERHEAD_BYTES  # the runtime measures the structured clone itself
    else:
        data = encode_body(request.body, content_type)
        size = check_message_size(data)
        if content_type == "json":
            body = to_js_json(request.body)
        elif content_type == "text":
            body = request.body
        else:
            body = to_js_value(bytes(request.body))
    fields: dict[str, Any] = {"body": body, "contentType": content_type}
    if request.delay_seconds is not None:
        fields["delaySeconds"] = check_delay(request.delay_seconds)
    return fields, size


def _js_fields(fields: dict[str, Any]) -> Any:
    obj = to_js_value({k: v for k, v in fields.items() if k != "body"})
    obj.body = fields["body"]
    return obj


class WorkersQueue:
    """The `Queue` producer binding of a Worker, with the `local` provider's Python API."""

    def __init__(self, binding: Any) -> None:
        self._js = binding

    async def send(
        self, body: Any, content_type: str = "json", delay_seconds: int | None = None
    ) -> None:
        """Send one message. `delay_seconds` (up to 24 h) defaults to the producer's
        `delivery_delay`."""
        fields, _ = _request(MessageSendRequest(body, content_type, delay_seconds))
        options = to_js_value({k: v for k, v in fields.items() if k != "body"})
        count("queues")  # not limited per invocation; counted as the local provider does
        try:
            await self._js.send(fields["body"], options)
        except JsException as e:
            raise queue_error(e) from None

    async def send_batch(
        self,
        messages: Sequence[MessageSendRequest | Mapping[str, Any]],
        delay_seconds: int | None = None,
    ) -> None:
        """Send up to 100 messages (256 KB in all) in one call."""
        requests = [MessageSendRequest.of(m) for m in messages]
        converted = [_request(r) for r in requests]
        check_batch([size for _, size in converted])
        options = to_js_value(
            {} if delay_seconds is None else {"delaySeconds": check_delay(delay_seconds)}
        )
        count("queues")
        try:
            await self._js.sendBatch(to_js_array([_js_fields(f) for f, _ in converted]), options)
        except JsException as e:
            raise queue_error(e) from None

    async def pull(self, *args: Any, **kwargs: Any) -> Any:
        raise QueueError(
            "pull consumers are reached through Cloudflare's HTTP API (the `api` provider), "
            "not from inside a Worker"
        )

    async def ack(self, *args: Any, **kwargs: Any) -> Any:
        return await self.pull()

    async def aclose(self) -> None:
        """Nothing to close: the runtime owns the binding."""


Handler = Callable[[MessageBatch, Any], Awaitable[None] | None]


async def dispatch_batch(batch: Any, env: Any, handler: Handler) -> None:
    """Run a flarebase consumer on the runtime's `MessageBatch`, then ack or retry each
    message as the local provider would: what the handler acked is acked, what it
    retried is retried; the rest is acked if it returned and retried if it raised."""
    outcome = BatchOutcome()
    js_messages = list(attr(batch, "messages", []))
    by_id: dict[str, Any] = {}
    messages = []
    for js_message in js_messages:
        message_id = str(js_message.id)
        by_id[message_id] = js_message
        timestamp = to_py(attr(js_message, "timestamp"))
        if not isinstance(timestamp, datetime):
            timestamp = datetime.now(UTC)
        messages.append(
            Message(
                message_id,
                timestamp,
                to_py(attr(js_message, "body")),
                int(attr(js_message, "attempts", 1)),
                outcome,
            )
        )
    py_batch = MessageBatch(str(attr(batch, "queue", "")), messages, outcome)
    succeeded = True
    try:
        result = handler(py_batch, env)
        if result is not None:
            await result
    except Exception:
        log.exception("queue %s: consumer raised", py_batch.queue)
        succeeded = False
    for message_id, js_message in by_id.items():
        acked, delay = outcome.decide(message_id, succeeded)
        if acked:
            js_message.ack()
        elif delay is None:
            js_message.retry()
        else:
            js_message.retry(to_js_value({"delaySeconds": delay}))
