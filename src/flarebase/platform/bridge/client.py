"""The bridge Worker's HTTP protocol: signing, batching, retries, (de)serialization.

See bridge/src/index.js for the protocol. In short: `POST /v1/ops` carries a JSON list
of ops and answers a list of results; `POST /v1/stream` carries one op whose value or
result is a streamed body. Every request is signed with HMAC-SHA256 over the method,
path, timestamp, a nonce, the body's SHA-256 and the op header; a streamed body is
signed frame by frame instead (`frames`), so it is never read twice or held whole.

Batching is automatic: the ops that tasks start in the same turn of the event loop
(`asyncio.gather(kv.get(a), kv.get(b), ...)`) leave in one request, up to
`max_batch` ops. An op awaited on its own costs one round trip, as before.

Retries, with exponential backoff and jitter, only where repeating cannot change
the outcome: a request that never reached the server (connection refused, connect
timeout) is always retried; one that may have run (read timeout, dropped
connection, 502/503/504) only if every op in it is idempotent or carries an
idempotency key (which the Worker's ledger uses to run it at most once). HTTP 429
from Cloudflare's edge means the request was not run, so it is retried too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import hmac
import inspect
import json
import math
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from ..errors import FlarebaseError

SCHEME = "FLAREBASE-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
PROTOCOL = 1


class BridgeError(FlarebaseError):
    """The bridge itself failed (not the binding): unreachable, misconfigured, refused."""

    code = "BRIDGE_ERROR"


class BridgeAuthError(BridgeError):
    """The bridge refused the request's signature, timestamp or nonce."""

    code = "BRIDGE_AUTH"


class BridgeUnavailable(BridgeError):
    """The request failed in transit; `maybe_applied` says whether it may have run."""

    code = "BRIDGE_UNAVAILABLE"

    def __init__(self, message: str, *, maybe_applied: bool) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


@dataclass(frozen=True, slots=True)
class OpError:
    """A failed op, as the Worker reports it: the binding's error name and message."""

    name: str
    message: str
    code: str | None = None


ErrorMapper = Callable[[OpError], Exception]


def sign(
    secret: str,
    method: str,
    path: str,
    timestamp: str,
    nonce: str,
    body_sha256: str,
    op_header: str = "",
) -> str:
    """The hex HMAC-SHA256 the Worker expects in `authorization`."""
    canonical = "\n".join(
        [
            SCHEME,
            method,
            path,
            timestamp,
            nonce,
            body_sha256,
            hashlib.sha256(op_header.encode()).hexdigest(),
        ]
    )
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


# -- JSON with bytes -------------------------------------------------------------------------


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, bytes | bytearray | memoryview):
            return {"$bytes": base64.b64encode(o).decode("ascii")}
        return super().default(o)


_encoder = _Encoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_header_encoder = _Encoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def dumps(value: Any) -> bytes:
    """JSON, UTF-8; bytes as {"$bytes": base64}. Raises TypeError/ValueError on bad input
    (unserializable objects, NaN, strings that are not valid Unicode)."""
    try:
        return _encoder.encode(value).encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"a string cannot be encoded as UTF-8 (lone surrogate): {e}") from None


def _object_hook(d: dict[str, Any]) -> Any:
    if len(d) == 1 and "$bytes" in d:
        return base64.b64decode(d["$bytes"])
    return d


def _parse_int(text: str) -> int:
    # JavaScript numbers are doubles and print as their shortest round-trip form
    # (2**62 prints as 4611686018427388000); reading that back as a double is exact.
    return int(text) if len(text) < 16 else int(float(text))


def loads(data: bytes | str) -> Any:
    return json.loads(data, object_hook=_object_hook, parse_int=_parse_int)


# -- the client ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    encoded: bytes
    retryable: bool
    future: asyncio.Future[Any] = field(repr=False)


@dataclass(slots=True)
class StreamResult:
    """What `/v1/stream` answered: the op's outcome and, if any, the open response body."""

    outcome: dict[str, Any]
    response: httpx.Response | None

    async def read(self) -> bytes:
        if self.response is None:
            return b""
        try:
            return await self.response.aread()
        finally:
            await self.response.aclose()

    async def aclose(self) -> None:
        if self.response is not None:
            await self.response.aclose()


class BridgeClient:
    """One bridge Worker, reached over one pooled httpx.AsyncClient."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float | httpx.Timeout = 60.0,
        retries: int = 3,
        backoff: float = 0.1,
        max_batch: int = 50,
        max_batch_bytes: int = 8 * 1024 * 1024,
        idempotency: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 16,
    ) -> None:
        if not isinstance(secret, str) or len(secret) < 16:
            raise BridgeError("the bridge secret must be a string of at least 16 characters")
        self.url = url.rstrip("/")
        self._secret = secret
        self.retries = retries
        self.backoff = backoff
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.idempotency = idempotency
        self._prefix = httpx.URL(self.url).raw_path.decode().rstrip("/")
        if isinstance(timeout, int | float):
            timeout = httpx.Timeout(timeout, connect=min(10.0, timeout))
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        self._pending: list[_Pending] = []
        self._flushing: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._skew = 0.0  # server clock minus ours, learnt from a refused timestamp
        self.requests = 0  # HTTP requests sent (for tests and benchmarks)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()

    # -- ops -----------------------------------------------------------------------------------

    async def call(
        self, op: dict[str, Any], mapper: ErrorMapper, *, idempotent: bool = False
    ) -> Any:
        """Run one op (batched with others started in the same loop turn); its value."""
        outcome = await self.submit(op, idempotent=idempotent)
        if "error" in outcome:
            raise mapper(_op_error(outcome["error"]))
        return outcome.get("ok")

    async def submit(self, op: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """Queue one op for the next batch; its raw outcome ({"ok"} or {"error"})."""
        if not idempotent and self.idempotency:
            op = {**op, "idempotencyKey": secrets.token_urlsafe(18)}
            idempotent = True
        encoded = dumps(op)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Pending(encoded, idempotent, future))
        if self._flushing is None:
            self._flushing = loop.call_soon(self._flush)
        result: dict[str, Any] = await future
        return result

    def _flush(self) -> None:
        self._flushing = None
        pending, self._pending = self._pending, []
        batch: list[_Pending] = []
        size = 0
        for item in pending:
            if batch and (
                len(batch) >= self.max_batch or size + len(item.encoded) > self.max_batch_bytes
            ):
                self._spawn(batch)
                batch, size = [], 0
            batch.append(item)
            size += len(item.encoded) + 1
        if batch:
            self._spawn(batch)

    def _spawn(self, batch: list[_Pending]) -> None:
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        body = b'{"ops":[' + b",".join(p.encoded for p in batch) + b"]}"
        retryable = all(p.retryable for p in batch)
        try:
            response = await self._request("/v1/ops", body, retryable=retryable)
            results = loads(response.content)["results"]
            if len(results) != len(batch):
                raise BridgeError(f"bridge answered {len(results)} results to {len(batch)} ops")
        except BaseException as e:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        for p, result in zip(batch, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)

    # -- streams ------------------------------------------------------------------------------

    async def stream(
        self,
        op: dict[str, Any],
        *,
        body: StreamBody | None = None,
        idempotent: bool = False,
        keep_body: bool = False,
    ) -> StreamResult:
        """Run one op on /v1/stream. With `keep_body`, the response body is left open."""
        header = _header_encoder.encode(op)  # ASCII: it travels in an HTTP header
        try:
            response = await self._request(
                "/v1/stream", body, retryable=idempotent, op_header=header, stream=True
            )
        except BridgeError:
            if body is not None and body.failure is not None:
                raise body.failure from None
            raise
        if body is not None and body.failure is not None:
            await response.aclose()
            raise body.failure
        try:
            raw = response.headers.get("x-bridge-result")
            if raw is None:
                raise BridgeError("bridge answered without x-bridge-result")
            outcome = loads(unquote(raw))
        except BaseException:
            await response.aclose()
            raise
        if keep_body and "ok" in outcome:
            return StreamResult(outcome, response)
        await response.aclose()
        return StreamResult(outcome, None)

    # -- HTTP ---------------------------------------------------------------------------------

    def _headers(self, path: str, body_sha256: str, op_header: str) -> tuple[dict[str, str], str]:
        timestamp = str(int(time.time() + self._skew))
        nonce = secrets.token_urlsafe(18)
        signature = sign(
            self._secret, "POST", self._prefix + path, timestamp, nonce, body_sha256, op_header
        )
        headers = {
            "authorization": f"{SCHEME} {signature}",
            "x-bridge-timestamp": timestamp,
            "x-bridge-nonce": nonce,
            "x-bridge-content-sha256": body_sha256,
            "content-type": "application/json",
        }
        if op_header:
            headers["x-bridge-op"] = op_header
            headers["content-type"] = "application/octet-stream"
        return headers, signature

    async def _request(
        self,
        path: str,
        body: bytes | StreamBody | None,
        *,
        retryable: bool,
        op_header: str = "",
        stream: bool = False,
    ) -> httpx.Response:
        if isinstance(body, StreamBody):
            digest = STREAMING
        else:
            digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        skew_fixed = False
        attempt = 0
        while True:
            headers, signature = self._headers(path, digest, op_header)
            content: Any = body or b""
            if isinstance(body, StreamBody):
                content = frames(body, self._secret.encode(), signature)
            request = self._http.build_request("POST", path, content=content, headers=headers)
            self.requests += 1
            failure: str | None = None
            maybe_applied = False
            try:
                response = await self._http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                failure = f"cannot reach the bridge at {self.url}: {e!r}"
            except httpx.TransportError as e:
                failure, maybe_applied = f"request to the bridge failed: {e!r}", True
            else:
                status = response.status_code
                if status == 200:
                    if not stream:
                        try:
                            await response.aread()
                        finally:
                            await response.aclose()
                    return response
                await response.aread()
                await response.aclose()
                error = _error_of(response)
                if status == 401:
                    if (
                        not skew_fixed
                        and error.code == "BRIDGE_CLOCK"
                        and self._learn_skew(response)
                    ):
                        skew_fixed = True
                        if not isinstance(body, StreamBody) or body.rewind():
                            continue  # not run: the Worker checks the clock before anything
                    raise BridgeAuthError(error.message, code=error.code or "BRIDGE_AUTH")
                if status == 429:
                    failure = f"the bridge is rate limited (429): {error.message}"
                elif status in (502, 503, 504):
                    failure, maybe_applied = f"bridge answered {status}: {error.message}", True
                else:
                    raise BridgeError(
                        f"bridge answered {status}: {error.message}",
                        code=error.code or "BRIDGE_ERROR",
                    )
            if attempt >= self.retries or (maybe_applied and not retryable):
                raise BridgeUnavailable(failure, maybe_applied=maybe_applied)
            if isinstance(body, StreamBody) and not body.rewind():
                raise BridgeUnavailable(failure, maybe_applied=maybe_applied)
            attempt += 1
            await asyncio.sleep(random.uniform(0, self.backoff * 2**attempt))

    def _learn_skew(self, response: httpx.Response) -> bool:
        """Adopt the server's clock from a refused timestamp (its JSON, else its Date)."""
        with contextlib.suppress(ValueError, KeyError, TypeError):
            self._skew = float(response.json()["error"]["serverTime"]) - time.time()
            return True
        with contextlib.suppress(TypeError, ValueError, KeyError):
            date = response.headers["date"]
            self._skew = email.utils.parsedate_to_datetime(date).timestamp() - time.time()
            return True
        return False


class StreamBody:
    """A request body for /v1/stream: bytes, a file (sync or async) or an async iterable
    of bytes, sent as signed frames (see `frames`). `length`, when known, is sent with
    the op (R2 needs it); a body that can be read again from its start can be retried.
    """

    def __init__(self, source: Any, length: int | None = None, *, owned: bool = False) -> None:
        self.source = source
        self.length = length
        self.owned = owned  # a temporary file of ours: closed by close()
        self.failure: Exception | None = None  # what the source raised while being sent
        self._start: int | None = None
        if isinstance(source, bytes | memoryview):
            self._start = 0
        elif _has_sync_read(source) and _seekable(source):
            self._start = source.tell()

    def rewind(self) -> bool:
        if self._start is None:
            return False
        if not isinstance(self.source, bytes | memoryview):
            try:
                self.source.seek(self._start)
            except (OSError, ValueError):
                return False
        return True

    def close(self) -> None:
        if self.owned:
            self.source.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The raw bytes, in chunks of any size."""
        source = self.source
        if isinstance(source, bytes | memoryview):
            view = memoryview(source)
            for start in range(0, len(view), FRAME_BYTES):
                yield bytes(view[start : start + FRAME_BYTES])
        elif hasattr(source, "read"):
            while True:
                chunk = source.read(FRAME_BYTES)
                if inspect.isawaitable(chunk):
                    chunk = await chunk
                if not chunk:
                    return
                yield chunk
        else:
            async for chunk in source:
                yield chunk


FRAME_BYTES = 256 * 1024  # the Worker accepts frames of up to 1 MiB
CHUNK_SCHEME = "FLAREBASE-CHUNK"
STREAMING = "STREAMING-FRAMES"
ABORT = 0xFFFFFFFF  # the length of the frame that abandons a body


async def frames(body: StreamBody, secret: bytes, signature: str) -> AsyncIterator[bytes]:
    """`body` as frames: a 4-byte big-endian length, a 32-byte HMAC-SHA256 and the data.
    Each HMAC signs "FLAREBASE-CHUNK\n<previous signature, hex>\n<sha256 of the data, hex>",
    the first chaining to the request's signature; a zero-length frame ends the body.
    The Worker checks each frame as it arrives, so a body is authenticated without
    being hashed (or buffered) first, and a tampered or truncated one fails its write."""
    previous = signature
    pending = bytearray()

    def frame(data: bytes) -> bytes:
        nonlocal previous
        signed = f"{CHUNK_SCHEME}\n{previous}\n{hashlib.sha256(data).hexdigest()}".encode()
        mac = hmac.new(secret, signed, hashlib.sha256).digest()
        previous = mac.hex()
        return len(data).to_bytes(4, "big") + mac + data

    try:
        async for chunk in body.chunks():
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(f"a body chunk must be bytes, not {type(chunk).__name__}")
            pending += chunk
            while len(pending) >= FRAME_BYTES:
                yield frame(bytes(pending[:FRAME_BYTES]))
                del pending[:FRAME_BYTES]
    except Exception as e:
        # The source failed: end the request cleanly with a signed abort frame, so that
        # the Worker fails the write (a dropped connection might not), then raise it.
        body.failure = e
        signed = f"{CHUNK_SCHEME}\n{previous}\nABORT".encode()
        yield ABORT.to_bytes(4, "big") + hmac.new(secret, signed, hashlib.sha256).digest()
        return
    if pending:
        yield frame(bytes(pending))
    yield frame(b"")


def _has_sync_read(source: Any) -> bool:
    read = getattr(source, "read", None)
    return callable(read) and not inspect.iscoroutinefunction(read)


def _seekable(source: Any) -> bool:
    try:
        return bool(source.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _op_error(raw: Any) -> OpError:
    if not isinstance(raw, dict):
        return OpError("Error", str(raw))
    return OpError(str(raw.get("name", "Error")), str(raw.get("message", "")), raw.get("code"))


def _error_of(response: httpx.Response) -> OpError:
    try:
        error = response.json()["error"]
        return OpError("BridgeError", str(error["message"]), error.get("code"))
    except (ValueError, KeyError, TypeError):
        text = response.text[:500] if response.content else response.reason_phrase
        return OpError("BridgeError", text)


def is_integer(value: Any) -> bool:
    """An int (not bool) or an integral finite float."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()
