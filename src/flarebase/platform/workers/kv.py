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

import inspect
import json
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..errors import KVError
from ..invocation import count
from ..kv import (
    BULK_GET_TYPES,
    GET_TYPES,
    MAX_KEY_BYTES,
    MAX_LIST_LIMIT,
    MAX_VALUE_BYTES,
    MIN_CACHE_TTL,
    KVKey,
    KVListResult,
    KVTypeError,
    KVValueWithMetadata,
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

# workerd's wording (src/workerd/api/kv.c++), as the local provider gives it.
UNKNOWN_TYPE = (
    'Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream". '
    '("bytes" is accepted as an alias of "arrayBuffer".)'
)
BAD_VALUE = (
    "KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as "
    "values. In Python: str, bytes, bytearray, memoryview, a file-like object with read(), "
    "or an async iterable of bytes."
)
_MANY = (list, tuple)
_READ_CHUNK = 1 << 20
_STREAM_CHUNK = 64 * 1024


def _not_utf8(what: str, text: str, e: UnicodeEncodeError) -> KVTypeError:
    char = text[e.start] if e.start < len(text) else ""
    return KVTypeError(
        f"{what} cannot be encoded as UTF-8: lone surrogate {char!r} at index {e.start}. "
        "Cloudflare would silently replace it with U+FFFD."
    )


def _text(value: Any, what: str) -> str:
    """A str that has a UTF-8 form (keys, prefixes, cursors, string values)."""
    if not isinstance(value, str):
        raise KVTypeError(f"{what} must be a string, not {type(value).__name__}.")
    try:
        value.encode()
    except UnicodeEncodeError as e:
        raise _not_utf8(what, value, e) from None
    return str(value)


def _key(key: Any, method: str) -> str:
    """A key name, checked as workerd checks it (Miniflare's getWithMetadata does not)."""
    name = _text(key, "Key name")
    if name == "":
        raise KVTypeError("Key name cannot be empty.")
    if name == "." or name == "..":
        raise KVTypeError(f'"{name}" is not allowed as a key name.')
    size = len(name.encode())
    if size > MAX_KEY_BYTES:
        raise KVError(
            f"KV {method} failed: 414 UTF-8 encoded length of {size} exceeds key length "
            f"limit of {MAX_KEY_BYTES}."
        )
    return name


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _get_type(type: Any, bulk: bool) -> str:
    if type not in GET_TYPES:
        raise KVTypeError(UNKNOWN_TYPE)
    if bulk and type not in BULK_GET_TYPES:
        raise KVError(f'KV GET_BULK failed: 400 "{type}" is not a valid type. Use "json" or "text"')
    return "arrayBuffer" if type == "bytes" else str(type)


def _js_type(type: str) -> str:
    """What to ask the binding for: a "stream" is read whole (a value is at most 25 MiB)
    and handed out in chunks, so no JS stream is driven from Python."""
    return "arrayBuffer" if type == "stream" else type


def _cache_ttl(cache_ttl: Any, method: str) -> float | None:
    if cache_ttl is None:
        return None
    if isinstance(cache_ttl, bool) or not isinstance(cache_ttl, int | float):
        raise KVTypeError(
            f"KV {method} failed: 400 Invalid cache_ttl of {cache_ttl}. "
            f"Cache TTL must be at least {MIN_CACHE_TTL}."
        )
    return cache_ttl


def _too_large(length: int) -> KVError:
    return KVError(
        f"KV PUT failed: 413 Value length of {length} exceeds limit of {MAX_VALUE_BYTES}."
    )


def _chunk(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        return memoryview(chunk).cast("B").tobytes()
    raise KVTypeError(f"{BAD_VALUE} A chunk of the value was {type(chunk).__name__}.")


async def _read_all(value: Any) -> bytes:
    """A file-like object or an async iterable of bytes, read to the end."""
    parts: list[bytes] = []
    total = 0
    if hasattr(value, "read"):
        while True:
            chunk = value.read(_READ_CHUNK)
            if inspect.isawaitable(chunk):
                chunk = await chunk
            data = _text(chunk, "Value").encode() if isinstance(chunk, str) else _chunk(chunk)
            if not data:
                break
            total += len(data)
            if total <= MAX_VALUE_BYTES:
                parts.append(data)
    else:
        async for chunk in value:
            data = _chunk(chunk)
            total += len(data)
            if total <= MAX_VALUE_BYTES:
                parts.append(data)
    if total > MAX_VALUE_BYTES:
        raise _too_large(total)
    return b"".join(parts)


async def _js_value(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value, "Value")
    if isinstance(value, bytes | bytearray | memoryview):
        return to_js_bytes(value)
    if hasattr(value, "read") or hasattr(value, "__aiter__"):
        return to_js_bytes(await _read_all(value))
    raise KVTypeError(f"{BAD_VALUE} Got {type(value).__name__}.")


def _metadata(metadata: Any) -> Any:
    """Metadata as a JSON value (checked here: JS would drop None and refuse NaN later)."""
    try:
        text = json.dumps(metadata, ensure_ascii=False, allow_nan=False)
        text.encode()
    except (TypeError, ValueError) as e:  # UnicodeEncodeError is a ValueError
        raise KVTypeError(f"KV put() metadata must be serializable as JSON: {e}") from None
    return json.loads(text)


def _expiration_option(value: Any, name: str) -> int:
    number = _integer(value)
    if number is None:
        message = f"KV PUT failed: 400 Invalid {name} of {value}. "
        message += (
            "Please specify integer greater than 0."
            if name == "expiration_ttl"
            else "Please specify integer greater than the current number of seconds since "
            "the UNIX epoch."
        )
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        raise (KVError if is_number else KVTypeError)(message)
    return number


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), _STREAM_CHUNK):
        yield data[start : start + _STREAM_CHUNK]


def _value(value: Any, type: str) -> Any:
    """A value read from the binding, in the local provider's Python types."""
    if is_null(value):
        return None
    if type == "text":
        return value if isinstance(value, str) else str(value)
    if type == "stream":
        return _chunks(to_bytes(value))
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
        if isinstance(key, _MANY):
            return await self._get_bulk(key, type, cache_ttl, with_metadata=False)
        name = _key(key, "GET")
        js_type = _get_type(type, bulk=False)
        options = to_js_object(
            {"type": _js_type(js_type), "cacheTtl": _cache_ttl(cache_ttl, "GET")}
        )
        count("kv")
        try:
            value = await self._js.get(name, options)
        except JsException as e:
            raise kv_error(e) from None
        return _value(value, js_type)

    async def get_with_metadata(
        self, key: str | Sequence[str], type: str = "text", cache_ttl: float | None = None
    ) -> Any:
        """`KVValueWithMetadata` (value and metadata None if missing); for a list, a dict."""
        if isinstance(key, _MANY):
            return await self._get_bulk(key, type, cache_ttl, with_metadata=True)
        name = _key(key, "GET")
        js_type = _get_type(type, bulk=False)
        options = to_js_object(
            {"type": _js_type(js_type), "cacheTtl": _cache_ttl(cache_ttl, "GET")}
        )
        count("kv")
        try:
            result = await self._js.getWithMetadata(name, options)
        except JsException as e:
            raise kv_error(e) from None
        return KVValueWithMetadata(
            _value(attr(result, "value"), js_type),
            to_py(attr(result, "metadata")),
            to_py(attr(result, "cacheStatus")),
        )

    async def _get_bulk(
        self, keys: Sequence[Any], type: str, cache_ttl: Any, with_metadata: bool
    ) -> dict[str, Any]:
        names = [_text(k, "Key name") for k in keys]  # the KV service checks the rest
        js_type = _get_type(type, bulk=True)
        options = to_js_object({"type": js_type, "cacheTtl": _cache_ttl(cache_ttl, "GET_BULK")})
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
        number = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
        if number is None or number < 1:
            error = KVError if number is not None else KVTypeError
            raise error(
                f"KV GET failed: 400 Invalid key_count_limit of {limit}. "
                "Please specify an integer greater than 0."
            )
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
        keys = [
            KVKey(k["name"], k.get("expiration"), k.get("metadata")) for k in page.get("keys", [])
        ]
        complete = bool(page.get("list_complete"))
        return KVListResult(
            keys,
            complete,
            None if complete else page.get("cursor"),
            page.get("cacheStatus"),
        )

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
            options["expirationTtl"] = _expiration_option(expiration_ttl, "expiration_ttl")
        if expiration is not None:
            options["expiration"] = _expiration_option(expiration, "expiration")
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
