"""Pure ASGI middleware: one invocation per request, and bounded request bodies."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..platform.invocation import invocation


class PerRequest:
    """Counts binding calls per request (a Worker invocation) and refuses request
    bodies over `max_body_bytes`, declared or streamed, with 413 JSON."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max):
            await self._refuse(send)
            return
        seen = 0
        started = refused = False

        async def bounded_receive() -> Message:
            # Past the limit: answer 413 ourselves and tell the app the client left,
            # so it stops reading; whatever it sends afterwards is dropped.
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max and not refused:
                    refused = True
                    if not started:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        with invocation():
            await self.app(scope, bounded_receive, guarded_send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"code": "payload_too_large", "message": f"request body over {self.max} bytes"}
        ).encode()
        headers: list[Any] = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
