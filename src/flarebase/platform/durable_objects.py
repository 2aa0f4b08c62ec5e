"""Durable Objects: the Python shape of Cloudflare's API, shared by every provider.

A Durable Object class is a subclass of `DurableObject`, declared in wrangler.toml
(`[[durable_objects.bindings]]` with `class_name`, and `[[migrations]]` with
`new_sqlite_classes`) and registered with the provider by class name::

    class ChatRoom(DurableObject):
        async def post(self, text: str) -> int:          # RPC: await stub.post("hi")
            self.ctx.storage.sql.exec("INSERT INTO msgs (text) VALUES (?)", text)
            return self.ctx.storage.sql.exec("SELECT count(*) AS n FROM msgs").one()["n"]

        async def fetch(self, request: Request) -> Response:
            pair = WebSocketPair()
            self.ctx.accept_web_socket(pair.server, ["member"])
            return Response(status=101, web_socket=pair.client)

    async with open_env("wrangler.toml", durable_objects={"ChatRoom": ChatRoom}) as env:
        room = env.ROOMS.get(env.ROOMS.id_from_name("lobby"))
        await room.post("hello")

Names are Cloudflare's in snake_case (`ctx.storage.sql.exec`, `block_concurrency_while`,
`accept_web_socket`, `id_from_name`, ...). Requests and responses are the small
`Request`/`Response` types below (a URL, a method, headers, a body, and an optional
WebSocket end), not a web framework's: a Durable Object is not an ASGI app.

WebSockets follow the Workers model. `WebSocketPair()` gives two connected in-memory
ends; the object accepts `pair.server` with `ctx.accept_web_socket` (the hibernation
API: the runtime, not the object, holds the socket, so the object can be evicted
and rebuilt while clients stay connected) and returns `pair.client` in a 101
response. A server route then joins that client end to its real socket with
`bridge_web_socket`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from .errors import DurableObjectError, LimitExceeded

# Limits (reference/cloudflare-limits.md, "Durable Objects").
MAX_KEYS_PER_CALL = 128  # get/put/delete with several keys
MAX_ENTRY_BYTES = 2_000_000  # key + value (2 MB, as D1's row limit)
MAX_WEB_SOCKETS = 32_768  # per object, hibernation API
MAX_TAGS = 10
MAX_TAG_CHARS = 256
MAX_WEB_SOCKET_MESSAGE_BYTES = 32 * 1024 * 1024  # received by an object
MAX_AUTO_RESPONSE_CHARS = 2_048
ALARM_MAX_RETRIES = 6  # retried with exponential backoff from 2 s
ALARM_RETRY_BASE_SECONDS = 2.0
BLOCK_CONCURRENCY_TIMEOUT_SECONDS = 30.0
RESERVED_METHODS = frozenset(
    {"fetch", "alarm", "web_socket_message", "web_socket_close", "web_socket_error"}
)

T = TypeVar("T")


class StorageLimitExceeded(DurableObjectError, LimitExceeded):
    """A Durable Object storage or WebSocket limit was hit."""

    code = "DURABLE_OBJECT_LIMIT_EXCEEDED"


# -- ids ------------------------------------------------------------------------------------
class DurableObjectId:
    """A 64-hex-digit object id. `name` is set for ids made by `id_from_name`."""

    __slots__ = ("_hex", "name")

    def __init__(self, hex_id: str, name: str | None = None) -> None:
        self._hex = hex_id
        self.name = name

    def __str__(self) -> str:
        return self._hex

    def __repr__(self) -> str:
        return f"DurableObjectId({self._hex!r}, name={self.name!r})"

    def to_string(self) -> str:
        return self._hex

    def equals(self, other: DurableObjectId) -> bool:
        return self == other

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DurableObjectId) and other._hex == self._hex

    def __hash__(self) -> int:
        return hash(self._hex)


# -- requests and responses ----------------------------------------------------------------
def _lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower(): v for k, v in (headers or {}).items()}


def _body_bytes(body: bytes | str | None) -> bytes:
    if body is None:
        return b""
    return body.encode() if isinstance(body, str) else bytes(body)


class Request:
    """What `stub.fetch()` delivers to `DurableObject.fetch`. Header names are lower-cased."""

    __slots__ = ("body", "headers", "method", "url")

    def __init__(
        self,
        url: str,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> None:
        self.url = url
        self.method = method.upper()
        self.headers = _lower_headers(headers)
        self.body = _body_bytes(body)

    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Request({self.method} {self.url})"


class Response:
    """What `DurableObject.fetch` returns. `status=101` with `web_socket` completes an upgrade."""

    __slots__ = ("body", "headers", "status", "web_socket")

    def __init__(
        self,
        body: bytes | str | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        web_socket: WebSocket | None = None,
    ) -> None:
        self.body = _body_bytes(body)
        self.status = status
        self.headers = _lower_headers(headers)
        self.web_socket = web_socket

    @classmethod
    def from_json(
        cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        merged = {"content-type": "application/json", **_lower_headers(headers)}
        return cls(json.dumps(data, separators=(",", ":")), status, merged)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Response({self.status}, {len(self.body)} bytes)"


# -- WebSockets ----------------------------------------------------------------------------
class WebSocketClosed(Exception):
    """Raised by `WebSocket.receive()` once the other end has closed."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"WebSocket closed ({code}) {reason}".strip())
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WebSocketEvent:
    kind: str  # "message" or "close"
    data: str | bytes = ""
    code: int = 1000
    reason: str = ""


class WebSocket:
    """One end of a `WebSocketPair`. `send` and `close` are synchronous, as in Workers.

    The end an object accepts with `ctx.accept_web_socket` has its events delivered to
    the object's `web_socket_message` / `web_socket_close`; the other end is read with
    `await receive()` or `async for message in ws`.
    """

    CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3

    def __init__(self) -> None:
        self.ready_state = WebSocket.OPEN
        self._peer: WebSocket | None = None
        self._inbox: asyncio.Queue[WebSocketEvent] | None = None
        self._listener: Callable[[WebSocketEvent], None] | None = None
        self._attachment: bytes | None = None
        # kept by the runtime for an accepted end (they survive the object's hibernation)
        self._tags: list[str] = []
        self._auto_response_at: datetime | None = None
        self._tail: asyncio.Future[Any] | None = None  # last event being delivered

    # sending
    def send(self, message: str | bytes) -> None:
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError("WebSocket send() takes a string or bytes")
        if self.ready_state != WebSocket.OPEN:
            raise DurableObjectError("Can't call WebSocket send() after close().")
        data = message if isinstance(message, str) else bytes(message)
        if self._peer is not None:
            self._peer._deliver(WebSocketEvent("message", data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.ready_state in (WebSocket.CLOSING, WebSocket.CLOSED):
            return
        self.ready_state = WebSocket.CLOSED
        if self._peer is not None and self._peer.ready_state == WebSocket.OPEN:
            self._peer.ready_state = WebSocket.CLOSING
            self._peer._deliver(WebSocketEvent("close", code=code, reason=reason))

    # receiving (the end not accepted by an object)
    async def receive(self) -> str | bytes:
        """The next message; raises `WebSocketClosed` once the peer has closed."""
        event = await self._queue().get()
        if event.kind == "close":
            self.ready_state = WebSocket.CLOSED
            self._queue().put_nowait(event)  # later receive() calls see the close too
            raise WebSocketClosed(event.code, event.reason)
        return event.data

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        while True:
            try:
                yield await self.receive()
            except WebSocketClosed:
                return

    # attachments survive hibernation (they live with the socket, not the object)
    def serialize_attachment(self, value: Any) -> None:
        self._attachment = pickle.dumps(value, protocol=5)

    def deserialize_attachment(self) -> Any:
        return None if self._attachment is None else pickle.loads(self._attachment)

    # plumbing
    def _queue(self) -> asyncio.Queue[WebSocketEvent]:
        if self._inbox is None:
            self._inbox = asyncio.Queue()
        return self._inbox

    def _deliver(self, event: WebSocketEvent) -> None:
        if self._listener is not None:
            self._listener(event)
        else:
            self._queue().put_nowait(event)


class WebSocketPair:
    """Two connected in-memory WebSocket ends: `client` and `server`."""

    def __init__(self) -> None:
        self.client = WebSocket()
        self.server = WebSocket()
        self.client._peer = self.server
        self.server._peer = self.client

    def __iter__(self) -> Iterator[WebSocket]:
        return iter((self.client, self.server))


@dataclass(frozen=True, slots=True)
class WebSocketRequestResponsePair:
    """An auto-response: a message equal to `request` is answered with `response`
    by the runtime, without waking the object."""

    request: str
    response: str

    def __post_init__(self) -> None:
        for what, text in (("request", self.request), ("response", self.response)):
            if len(text) > MAX_AUTO_RESPONSE_CHARS:
                raise StorageLimitExceeded(
                    f"auto-response {what} is {len(text)} characters; "
                    f"the limit is {MAX_AUTO_RESPONSE_CHARS}"
                )


async def bridge_web_socket(end: WebSocket, socket: Any) -> None:
    """Join `end` (the client end an object returned in a 101 response) to a real,
    already accepted ASGI WebSocket (starlette's `WebSocket`) until either side closes."""

    async def inbound() -> None:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                end.close(int(message.get("code", 1005)), str(message.get("reason") or ""))
                return
            data = message.get("text")
            end.send(data if data is not None else message.get("bytes", b""))

    async def outbound() -> None:
        while True:
            try:
                data = await end.receive()
            except WebSocketClosed as closed:
                with contextlib.suppress(Exception):
                    await socket.close(closed.code, closed.reason)
                return
            if isinstance(data, str):
                await socket.send_text(data)
            else:
                await socket.send_bytes(data)

    tasks = [asyncio.ensure_future(inbound()), asyncio.ensure_future(outbound())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        end.close()


# -- the SQL cursor ------------------------------------------------------------------------
class SqlStorageCursor:
    """The result of `ctx.storage.sql.exec`: iterate for row dicts, or `to_array()`,
    `one()`, `raw()`; `column_names`, `rows_read`, `rows_written`."""

    __slots__ = ("_pos", "_rows", "column_names", "rows_read", "rows_written")

    def __init__(
        self, column_names: list[str], rows: list[tuple[Any, ...]], rows_written: int
    ) -> None:
        self.column_names = column_names
        self._rows = rows
        self._pos = 0
        self.rows_read = len(rows)
        self.rows_written = rows_written

    def _take(self) -> list[tuple[Any, ...]]:
        rows = self._rows[self._pos :]
        self._pos = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[dict[str, Any]]:
        cols = self.column_names
        while self._pos < len(self._rows):
            row = self._rows[self._pos]
            self._pos += 1
            yield dict(zip(cols, row, strict=True))

    def next(self) -> dict[str, Any] | None:
        return next(iter(self), None)

    def to_array(self) -> list[dict[str, Any]]:
        cols = self.column_names
        return [dict(zip(cols, row, strict=True)) for row in self._take()]

    def one(self) -> dict[str, Any]:
        rows = self._take()
        if len(rows) != 1:
            got = "no results" if not rows else "multiple results"
            raise DurableObjectError(f"Expected exactly one result from SQL query, but got {got}.")
        return dict(zip(self.column_names, rows[0], strict=True))

    def raw(self) -> Iterator[list[Any]]:
        return (list(row) for row in self._take())


# -- alarms --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlarmInvocationInfo:
    retry_count: int
    is_retry: bool


def to_epoch_ms(when: datetime | int | float) -> int:
    """An alarm time: a datetime (naive means local time) or milliseconds since the epoch."""
    if isinstance(when, datetime):
        return int(when.timestamp() * 1000)
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise TypeError("set_alarm() takes a datetime or milliseconds since the epoch")
    return int(when)


def list_options(
    start: str | None,
    start_after: str | None,
    end: str | None,
    prefix: str | None,
    reverse: bool,
    limit: int | None,
) -> dict[str, Any]:
    """`storage.list()`'s options as the JS binding takes them, those given."""
    options = {
        "start": start,
        "startAfter": start_after,
        "end": end,
        "prefix": prefix,
        "reverse": reverse or None,
        "limit": limit,
    }
    return {k: v for k, v in options.items() if v is not None}


# -- what objects see (implemented by each provider) ---------------------------------------
class SqlStorage(Protocol):
    def exec(self, query: str, *bindings: Any) -> SqlStorageCursor: ...
    @property
    def database_size(self) -> int: ...


class DurableObjectStorage(Protocol):
    @property
    def sql(self) -> SqlStorage: ...

    async def get(self, key: str | Sequence[str]) -> Any: ...
    async def put(self, key: str | Mapping[str, Any], value: Any = ...) -> None: ...
    async def delete(self, key: str | Sequence[str]) -> bool | int: ...
    async def delete_all(self) -> None: ...
    async def list(
        self,
        *,
        start: str | None = None,
        start_after: str | None = None,
        end: str | None = None,
        prefix: str | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> dict[str, Any]: ...
    async def transaction(self, fn: Callable[[Any], Awaitable[T]]) -> T: ...
    def transaction_sync(self, fn: Callable[[], T]) -> T: ...
    async def get_alarm(self) -> int | None: ...
    async def set_alarm(self, scheduled_time: datetime | int | float) -> None: ...
    async def delete_alarm(self) -> None: ...


class DurableObjectState(Protocol):
    """`ctx`: the object's id, its storage, concurrency control and WebSockets."""

    id: DurableObjectId

    @property
    def storage(self) -> DurableObjectStorage: ...

    def block_concurrency_while(self, fn: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...
    def wait_until(self, awaitable: Awaitable[Any]) -> None: ...
    def accept_web_socket(self, ws: WebSocket, tags: Sequence[str] | None = None) -> None: ...
    def get_web_sockets(self, tag: str | None = None) -> list[WebSocket]: ...
    def get_tags(self, ws: WebSocket) -> list[str]: ...
    def set_web_socket_auto_response(
        self, pair: WebSocketRequestResponsePair | None = None
    ) -> None: ...
    def get_web_socket_auto_response(self) -> WebSocketRequestResponsePair | None: ...
    def get_web_socket_auto_response_timestamp(self, ws: WebSocket) -> datetime | None: ...
    def abort(self, reason: str | None = None) -> None: ...


class DurableObject:
    """Base class of Durable Object classes. Public async methods are callable over RPC
    from a stub; `fetch`, `alarm` and the `web_socket_*` handlers are events."""

    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        self.ctx = ctx
        self.env = env

    async def fetch(self, request: Request) -> Response:
        return Response("Durable Object has no fetch() handler", status=501)

    async def alarm(self, alarm_info: AlarmInvocationInfo | None = None) -> None:
        return None

    async def web_socket_message(self, ws: WebSocket, message: str | bytes) -> None:
        return None

    async def web_socket_close(
        self, ws: WebSocket, code: int, reason: str, was_clean: bool
    ) -> None:
        return None

    async def web_socket_error(self, ws: WebSocket, error: BaseException) -> None:
        return None


class UnreachableNamespace:
    """A `[[durable_objects.bindings]]` entry that a provider cannot reach: the binding
    exists (so an env opens), and any use of it raises, saying `why`."""

    def __init__(self, binding: str, class_name: str, why: str) -> None:
        self.binding = binding
        self.class_name = class_name
        self.why = why

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise DurableObjectError(f"{self.binding} ({self.class_name}): {self.why}")
