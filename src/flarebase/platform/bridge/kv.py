"""Workers KV through the bridge: the same API and result types as the local KV.

Limits (key and value sizes, TTLs, list limits, ...) are enforced by KV itself
behind the Worker, with its own messages. Checked here are only the things a
Python value can get wrong on the way to JavaScript: the types of arguments and
strings that are not valid Unicode (which JavaScript would silently repair).

Text and JSON reads and small writes travel as batched JSON ops; values as bytes,
large values, files and streams travel as raw bodies on /v1/stream.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

from ..errors import KVError
from ..invocation import count
from ..kv import (
    BAD_VALUE,
    MAX_LIST_LIMIT,
    UNKNOWN_TYPE,
    KVListResult,
    KVTypeError,
    KVValueWithMetadata,
    check_cache_ttl,
    check_expiration,
    check_get_type,
    check_list_limit,
    check_str,
    list_result,
    metadata_json,
    stream_chunks,
    utf8,
    value_chunks,
)
from .client import BridgeClient, OpError, StreamBody

INLINE_BYTES = 256 * 1024  # larger values go as a raw body, not inside JSON


def kv_error(error: OpError) -> KVError:
    if error.name == "TypeError":
        return KVTypeError(error.message)
    if " 429 " in error.message:
        return KVError(error.message, code="KV_TOO_MANY_REQUESTS")
    return KVError(error.message)


def _key(key: Any) -> str:
    """A key with a UTF-8 form; KV itself checks the rest, with its own messages."""
    utf8(key, "Key name")
    return str(key)


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
        wire_type = check_get_type(type)
        check_cache_ttl(cache_ttl, "GET")
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
        value = (stream_chunks(data) if type == "stream" else data) if found else None
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
            raise KVTypeError(UNKNOWN_TYPE)
        check_cache_ttl(cache_ttl, "GET_BULK")
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
        # Only the type: the range is the service's to check (and Miniflare's differs).
        check_list_limit(limit, positive=False)
        op: dict[str, Any] = {"op": "kv.list", "binding": self.binding, "limit": limit}
        if prefix is not None:
            utf8(prefix, "List prefix")
            op["prefix"] = prefix
        if cursor is not None:
            op["cursor"] = check_str(cursor, "List cursor")
        count("kv")
        raw = await self._client.call(op, kv_error, idempotent=True)
        return list_result(raw)

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
            op["expirationTtl"] = check_expiration(expiration_ttl, "expiration_ttl")
        if expiration is not None:
            op["expiration"] = check_expiration(expiration, "expiration")
        if metadata is not None:
            metadata_json(metadata)
            op["metadata"] = metadata
        inline: str | bytes | None = None
        body: StreamBody | None = None
        if isinstance(value, str):
            data = utf8(value, "Value")
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
            raise KVTypeError(f"{BAD_VALUE} Got {value.__class__.__name__}.")
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


async def _spool(value: Any) -> StreamBody:
    """A file's or a stream's bytes in a temporary file (in memory up to 8 MiB): sent with
    its length, and readable again for a retry."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    length = 0
    try:
        async for chunk in value_chunks(value):
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
