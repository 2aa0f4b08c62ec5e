"""Queue producers through the bridge: `send` and `send_batch`, as the local binding.

Bodies travel as their content type asks: "json" as the JSON value, "text" as a
string, "bytes" as bytes, "v8" as the JSON value structured-cloned by the Worker
(JSON-compatible bodies only: a Python pickle means nothing to JavaScript). Limits
(message and batch sizes, delays) are the Queues service's own, behind the Worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import QueueError
from ..invocation import count
from ..queues import MessageSendRequest, check_body, check_content_type, check_delay_type
from .client import BridgeClient, OpError, dumps


def queue_error(error: OpError) -> QueueError:
    return QueueError(error.message)


def _message(body: Any, content_type: Any, delay_seconds: Any) -> dict[str, Any]:
    """One message for the wire; the Queues service checks sizes and delays."""
    check_body(body, check_content_type(content_type))
    if content_type == "bytes":
        body = bytes(body)
    elif content_type in ("json", "v8"):
        try:
            dumps(body)
        except (TypeError, ValueError) as e:
            raise QueueError(f"message body cannot be serialized as JSON: {e}") from None
    message: dict[str, Any] = {"body": body, "contentType": content_type}
    if delay_seconds is not None:
        check_delay_type(delay_seconds)
        message["delaySeconds"] = delay_seconds
    return message


class BridgeQueue:
    """The `Queue` producer binding of the bridge Worker named `binding`."""

    def __init__(self, client: BridgeClient, binding: str, queue: str | None = None) -> None:
        self._client = client
        self.binding = binding
        self.name = queue or binding

    async def aclose(self) -> None:
        pass  # the client is the provider's

    async def send(
        self, body: Any, content_type: str = "json", delay_seconds: int | None = None
    ) -> None:
        """Send one message (sending twice after a lost answer would deliver it twice,
        so this is retried only with the provider's `idempotency` on)."""
        op = {"op": "queue.send", "binding": self.binding}
        op |= _message(body, content_type, delay_seconds)
        count("queues")
        await self._client.call(op, queue_error)

    async def send_batch(
        self,
        messages: Sequence[MessageSendRequest | Mapping[str, Any]],
        delay_seconds: int | None = None,
    ) -> None:
        """Send up to 100 messages (256 KB in all) at once."""
        requests = [MessageSendRequest.of(m) for m in messages]
        wire = [_message(r.body, r.content_type, r.delay_seconds) for r in requests]
        op: dict[str, Any] = {"op": "queue.sendBatch", "binding": self.binding, "messages": wire}
        if delay_seconds is not None:
            op["delaySeconds"] = delay_seconds
        count("queues")
        await self._client.call(op, queue_error)

    async def pull(self, *args: Any, **kwargs: Any) -> Any:
        raise QueueError(
            "pull consumers are reached through Cloudflare's REST API, not a Worker binding: "
            "the bridge provider has no pull()"
        )

    async def ack(self, *args: Any, **kwargs: Any) -> Any:
        raise QueueError(
            "pull consumers are reached through Cloudflare's REST API, not a Worker binding: "
            "the bridge provider has no ack()"
        )
