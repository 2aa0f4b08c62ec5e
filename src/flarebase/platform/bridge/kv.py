"""Workers KV through the bridge: the same API and result types as the local KV.

Limits (key and value sizes, TTLs, list limits, ...) are enforced by KV itself
behind the Worker, with its own messages. Checked here are only the things a
Python value can get wrong on the way to JavaScript: the types of arguments and
strings that are not valid Unicode (which JavaScript would silently repair).

Text and JSON reads and small writes travel as batched JSON ops; values as bytes,
large values, files and streams travel as raw bodies on /v1/stream.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..errors import KVError
from ..invocation import count
from ..kv import GET_TYPES, MAX_LIST_LIMIT, KVKey, KVListResult, KVTypeError, KVValueWithMetadata
from .client import BridgeClient, OpError, StreamBody, is_integer

INLINE_BYTES = 256 * 1024  # larger values go as a raw body, not inside JSON
_CHUNK = 64 * 1024

_UNKNOWN_TYPE = (
    'Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream". '
    '("bytes" is accepted as an alias of "arrayBuffer".)'
)
_BAD_VALUE = (
    "KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as "
    "values. In Python: str, bytes, bytearray, memoryview, a file-like object with read(), "
    "or an async iterable of bytes."
)


def kv_error(error: OpError) -> KVError:
    if error.name == "TypeError":
        return KVTypeError(error.message)
    if " 429 " in error.message:
        return KVError(error.message, code="KV_TOO_MANY_REQUESTS")
    return KVError(error.message)


def _utf8(what: str, text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as e:
        char = text[e.start] if e.start < len(text) else ""
        raise KVTypeError(
            f"{what} cannot be encoded as UTF-8: lone surrogate {char!r} at index {e.start}. "
            "Cloudflare would silently replace it with U+FFFD."
        ) from None


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise KVTypeError(f"Key name must be a string, not {type(key).__name__}.")
    _utf8("Key name", key)
    return key


def _check_type(type: Any) -> str:
    if not isinstance(type, str) or type not in GET_TYPES:
        raise KVTypeError(_UNKNOWN_TYPE)
    return "arrayBuffer" if type == "bytes" else type


def _cache_ttl(cache_ttl: Any, method: str) -> Any:
    if cache_ttl is not None and (
        isinstance(cache_ttl, bool) or not isinstance(cache_ttl, int | float)
    ):
        raise KVTypeError(
            f"KV {method} failed: 400 Invalid cache_ttl of {cache_ttl}. "
            "Cache TTL must be at least 30."
        )
    return cache_ttl


def _whole(value: Any, message: str) -> int:
    """An integral number (int or integral float) as an int, else the KV message."""
    if not is_integer(value):
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        raise (KVError if is_number else KVTypeError)(message)
    return int(value)


class BridgeKV:
    """The `KVNamespace` binding of the bridge Worker named `binding`."""

    def __init__(self, client: BridgeClient, binding: str) -> None:
        self._client = client
        self.binding = binding

    async def aclose(self) -> None:
        pass  # the client is the provider's

    # -- reads -------------------------------------------------------------------------------

    async def get(
        self, key: str | Sequence[str], type: str = "text", cache_ttl: float | None = None
    ) -> Any:
        """The value of `key` as `type` (text | json | arrayBuffer/bytes | stream), or None.

        With a list of up to 100 keys (text or json only), a dict key -> value or None.
        """
        return await self._get(key, type, cache_ttl, with_metadata=False)

    async def get_with_metadata(
        self, key: str | Sequence[str], type: str = "text", cache_ttl: float | None = None
    ) -> Any:
        """`KVValueWithMetadata` (value and metadata None if missing); for a list, a dict."""
        return await self._get(key, type, cache_ttl, with_metadata=True)

    async def _get(self, key: Any, type: Any, cache_ttl: Any, *, with_metadata: bool) -> Any:
        method = "kv.getWithMetadata" if with_metadata else "kv.get"
        if not isinstance(key, str) and isinstance(key, list | tuple):
            return await self._get_bulk(list(key), type, cache_ttl, with_metadata)
        key = _key(key)
        wire_type = _check_type(type)
        _cache_ttl(cache_ttl, "GET")
        count("kv")
        op = {"op": method, "binding": self.binding, "key": key, "type": wire_type}
        if cache_ttl is not None:
            op["cacheTtl"] = cache_ttl
        if wire_type in ("text", "json"):
            raw = await self._client.call(op, kv_error, idempotent=True)
            if not with_metadata:
                return raw
            return KVValueWithMetadata(raw["value"], raw.get("metadata"), raw.get("cacheStatus"))
        reply = await self._client.stream(op, idempotent=True, keep_body=True)
        if "error" in reply.outcome:
            raise kv_error(OpError(**reply.outcome["error"]))
        head = reply.outcome["ok"] or {}
        data = await reply.read()
        found = bool(head.get("found"))
        value = (_chunks(data) if type == "stream" else data) if found else None
        if not with_metadata:
            return value
        metadata = head.get("metadata") if found else None
        return KVValueWithMetadata(value, metadata, head.get("cacheStatus"))

    async def _get_bulk(
        self, keys: list[Any], type: Any, cache_ttl: Any, with_metadata: bool
    ) -> dict[str, Any]:
        for key in keys:
            _key(key)
        if not isinstance(type, str):
            raise KVTypeError(_UNKNOWN_TYPE)
        _cache_ttl(cache_ttl, "GET_BULK")
        count("kv")  # a bulk read is one operation
        op = {
            "op": "kv.getWithMetadata" if with_metadata else "kv.get",
            "binding": self.binding,
            "key": keys,
            "type": "arrayBuffer" if type == "bytes" else type,
        }
        if cache_ttl is not None:
            op["cacheTtl"] = cache_ttl
        raw = await self._client.call(op, kv_error, idempotent=True)
        if not with_metadata:
            return dict(raw)
        return {
            k: None if v is None else KVValueWithMetadata(v.get("value"), v.get("metadata"))
            for k, v in raw.items()
        }

    async def list(
        self, prefix: str | None = None, limit: int = MAX_LIST_LIMIT, cursor: str | None = None
    ) -> KVListResult:
        """Keys in UTF-8 byte order, `limit` (1..1000) per page, from an opaque `cursor`."""
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise KVTypeError(
                f"KV GET failed: 400 Invalid key_count_limit of {limit}. "
                "Please specify an integer greater than 0."
            )
        op: dict[str, Any] = {"op": "kv.list", "binding": self.binding, "limit": limit}
        if prefix is not None:
            if not isinstance(prefix, str):
                raise KVTypeError(f"List prefix must be a string, not {type(prefix).__name__}.")
            _utf8("List prefix", prefix)
            op["prefix"] = prefix
        if cursor is not None:
            if not isinstance(cursor, str):
                raise KVTypeError(f"List cursor must be a string, not {type(cursor).__name__}.")
            op["cursor"] = cursor
        count("kv")
        raw = await self._client.call(op, kv_error, idempotent=True)
        keys = [
            KVKey(k["name"], k.get("expiration"), k.get("metadata")) for k in raw.get("keys", [])
        ]
        complete = bool(raw.get("list_complete"))
        return KVListResult(
            keys, complete, None if complete else raw.get("cursor"), raw.get("cacheStatus")
        )

    # -- writes ------------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        value: Any,
        expiration: float | None = None,
        expiration_ttl: float | None = None,
        metadata: Any = None,
    ) -> None:
        """Store `value` (str, bytes-like, file-like or async iterable of bytes) under `key`.

        `expiration` is seconds since the UNIX epoch, `expiration_ttl` seconds from
        now (at least 60; it wins if both are given). `metadata` is any JSON value.
        """
        key = _key(key)
        op: dict[str, Any] = {"op": "kv.put", "binding": self.binding, "key": key}
        if expiration_ttl is not None:
            op["expirationTtl"] = _whole(
                expiration_ttl,
                f"KV PUT failed: 400 Invalid expiration_ttl of {expiration_ttl}. "
                "Please specify integer greater than 0.",
            )
        if expiration is not None:
            op["expiration"] = _whole(
                expiration,
                f"KV PUT failed: 400 Invalid expiration of {expiration}. Please specify integer "
                "greater than the current number of seconds since the UNIX epoch.",
            )
        if metadata is not None:
            try:  # plain JSON: bytes are not JSON values
                json.dumps(metadata, allow_nan=False, ensure_ascii=False).encode()
            except (TypeError, ValueError) as e:
                raise KVTypeError(f"KV put() metadata must be serializable as JSON: {e}") from None
            op["metadata"] = metadata
        inline: str | bytes | None = None
        body: StreamBody | None = None
        if isinstance(value, str):
            data = _utf8("Value", value)
            if len(data) <= INLINE_BYTES:
                inline = value
            else:
                body = StreamBody(data)
        elif isinstance(value, bytes | bytearray | memoryview):
            data = value if isinstance(value, bytes) else _raw(value)
            if len(data) <= INLINE_BYTES:
                inline = data
            else:
                body = StreamBody(data)
        elif hasattr(value, "read") or hasattr(value, "__aiter__"):
            body = await _spool(value)
        else:
            raise KVTypeError(f"{_BAD_VALUE} Got {value.__class__.__name__}.")
        count("kv")
        if body is None:
            await self._client.call({**op, "value": inline}, kv_error, idempotent=True)
            return
        try:
            # The length goes with the op: a body cut short then fails instead of storing less.
            reply = await self._client.stream(
                {**op, "length": body.length}, body=body, idempotent=True
            )
        finally:
            body.close()
        if "error" in reply.outcome:
            raise kv_error(OpError(**reply.outcome["error"]))

    async def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""
        key = _key(key)
        count("kv")
        op = {"op": "kv.delete", "binding": self.binding, "key": key}
        await self._client.call(op, kv_error, idempotent=True)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), _CHUNK):
        yield data[start : start + _CHUNK]


async def _spool(value: Any) -> StreamBody:
    """A file's or a stream's bytes in a temporary file (in memory up to 8 MiB): sent with
    its length, and readable again for a retry."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    length = 0
    try:
        async for chunk in _value_chunks(value):
            spool.write(chunk)
            length += len(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return StreamBody(spool, length, owned=True)


def _raw(value: bytearray | memoryview) -> bytes:
    view = memoryview(value)
    return bytes(view if view.format == "B" and view.ndim == 1 else view.cast("B"))


async def _value_chunks(value: Any) -> AsyncIterator[bytes]:
    """A file's or a stream's bytes (text files are encoded as UTF-8), checked chunk by chunk."""
    if hasattr(value, "read"):
        while True:
            chunk = value.read(1 << 20)
            if inspect.isawaitable(chunk):
                chunk = await chunk
            if isinstance(chunk, str):
                chunk = _utf8("Value", chunk)
            data = _bytes_chunk(chunk)
            if not data:
                return
            yield data
    else:
        async for chunk in value:
            yield _bytes_chunk(chunk)


def _bytes_chunk(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        return _raw(chunk)
    raise KVTypeError(f"{_BAD_VALUE} A chunk of the value was {type(chunk).__name__}.")
