"""Workers KV inside a Python Worker: the runtime's `KVNamespace`, with the `local` API.

`get`, `get_with_metadata` (one key or a list of up to 100), `put`, `delete` and
`list` return what the local provider returns (`KVValueWithMetadata`,
`KVListResult` of `KVKey`s). The runtime and the KV service check values and
limits and answer with Cloudflare's messages; this adapter checks what would
otherwise change silently on the way to JavaScript, and key names:

- a key, prefix or value that is not a str (a number would become its string),
  or has a lone surrogate (stored as U+FFFD);
- a `type` or an option that is not what the binding expects (None would become
  `undefined` and be ignored: `get(key, None)` would read text);
- a list `limit` of 0 or less (workerd drops it and lists 1,000 keys);
- key names, with workerd's messages (Miniflare's `getWithMetadata` skips them).

Options and metadata cross through JSON (None -> null, dicts -> plain objects,
not Maps, which `put` would ignore), bytes as Uint8Arrays; file-like values and
async iterables of bytes are read into bytes first, as the local provider does.
A "stream" read is fetched whole (a value is at most 25 MiB) and handed out in
64 KiB chunks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..invocation import count
from ..kv import (
    BAD_VALUE,
    MAX_LIST_LIMIT,
    UNKNOWN_TYPE,
    KVListResult,
    KVTypeError,
    KVValueWithMetadata,
    check_bulk_get_type,
    check_cache_ttl,
    check_expiration,
    check_get_type,
    check_key,
    check_list_limit,
    list_result,
    metadata_json,
    read_value,
    stream_chunks,
    utf8,
)
from ._ffi import (
    JsException,
    attr,
    is_null,
    to_bytes,
    to_js_array,
    to_js_bytes,
    to_js_object,
    to_py,
)
from .errors import kv_error

# BAD_VALUE and UNKNOWN_TYPE (workerd's wording) lived here before moving to ..kv.
__all__ = ["BAD_VALUE", "UNKNOWN_TYPE", "WorkersKV"]
_MANY = (list, tuple)


def _text(value: Any, what: str) -> str:
    """A str that has a UTF-8 form (prefixes, cursors, string values)."""
    utf8(value, what)
    return str(value)


def _key(key: Any, method: str) -> str:
    """A key name, checked as workerd checks it (Miniflare's getWithMetadata does not)."""
    check_key(key, method)
    return str(key)


def _js_type(type: str) -> str:
    """What to ask the binding for: a "stream" is read whole (a value is at most 25 MiB)
    and handed out in chunks, so no JS stream is driven from Python."""
    return "arrayBuffer" if type == "stream" else type


async def _js_value(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value, "Value")
    if isinstance(value, bytes | bytearray | memoryview):
        return to_js_bytes(value)
    if hasattr(value, "read") or hasattr(value, "__aiter__"):
        return to_js_bytes(await read_value(value))
    raise KVTypeError(f"{BAD_VALUE} Got {type(value).__name__}.")


def _metadata(metadata: Any) -> Any:
    """Metadata as a JSON value (checked here: JS would drop None and refuse NaN later)."""
    return json.loads(metadata_json(metadata))


def _value(value: Any, type: str) -> Any:
    """A value read from the binding, in the local provider's Python types."""
    if is_null(value):
        return None
    if type == "text":
        return value if isinstance(value, str) else str(value)
    if type == "stream":
        return stream_chunks(to_bytes(value))
    return to_py(value)  # json: a JSON value; arrayBuffer: bytes


class WorkersKV:
    """The `KVNamespace` binding of a Worker, with the `local` provider's Python API."""

    def __init__(self, binding: Any) -> None:
        self._js = binding

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
        if isinstance(key, _MANY):
            return await self._get_bulk(key, type, cache_ttl, with_metadata)
        name = _key(key, "GET")
        js_type = check_get_type(type)
        options = to_js_object(
            {"type": _js_type(js_type), "cacheTtl": check_cache_ttl(cache_ttl, "GET")}
        )
        count("kv")
        method = self._js.getWithMetadata if with_metadata else self._js.get
        try:
            result = await method(name, options)
        except JsException as e:
            raise kv_error(e) from None
        if not with_metadata:
            return _value(result, js_type)
        return KVValueWithMetadata(
            _value(attr(result, "value"), js_type),
            to_py(attr(result, "metadata")),
            to_py(attr(result, "cacheStatus")),
        )

    async def _get_bulk(
        self, keys: Sequence[Any], type: str, cache_ttl: Any, with_metadata: bool
    ) -> dict[str, Any]:
        names = [_text(k, "Key name") for k in keys]  # the KV service checks the rest
        js_type = check_bulk_get_type(type)
        options = to_js_object(
            {"type": js_type, "cacheTtl": check_cache_ttl(cache_ttl, "GET_BULK")}
        )
        count("kv")  # a bulk read is one operation
        method = self._js.getWithMetadata if with_metadata else self._js.get
        try:
            result = await method(to_js_array(names), options)
        except JsException as e:
            raise kv_error(e) from None
        values = to_py(result)  # a Map -> dict
        if not with_metadata:
            return {name: values.get(name) for name in names}
        out: dict[str, Any] = {}
        for name in names:
            entry = values.get(name)
            if entry is None:
                out[name] = KVValueWithMetadata(None, None)
            else:
                out[name] = KVValueWithMetadata(
                    entry.get("value"), entry.get("metadata"), entry.get("cacheStatus")
                )
        return out

    async def list(
        self, prefix: str | None = None, limit: int = MAX_LIST_LIMIT, cursor: str | None = None
    ) -> KVListResult:
        """Keys in UTF-8 byte order, `limit` (1..1000) per page, from an opaque `cursor`."""
        number = check_list_limit(limit)
        options = to_js_object(
            {
                "prefix": None if prefix is None or prefix == "" else _text(prefix, "List prefix"),
                "limit": number,
                "cursor": None if cursor is None or cursor == "" else _text(cursor, "List cursor"),
            }
        )
        count("kv")
        try:
            page = to_py(await self._js.list(options))
        except JsException as e:
            raise kv_error(e) from None
        return list_result(page)

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
        now (at least 60; it wins if both are given). `metadata` is any JSON value,
        at most 1,024 bytes serialized.
        """
        name = _key(key, "PUT")
        data = await _js_value(value)
        options: dict[str, Any] = {}
        if expiration_ttl is not None:
            options["expirationTtl"] = check_expiration(expiration_ttl, "expiration_ttl")
        if expiration is not None:
            options["expiration"] = check_expiration(expiration, "expiration")
        if metadata is not None:
            options["metadata"] = _metadata(metadata)
        count("kv")
        try:
            await self._js.put(name, data, to_js_object(options))
        except JsException as e:
            raise kv_error(e) from None

    async def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""
        name = _key(key, "DELETE")
        count("kv")
        try:
            await self._js.delete(name)
        except JsException as e:
            raise kv_error(e) from None

    async def aclose(self) -> None:
        """Nothing to close: the runtime owns the binding."""
