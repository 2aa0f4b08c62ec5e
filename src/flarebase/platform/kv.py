"""Workers KV result shapes and limits, shared by every provider.

The shapes are Cloudflare's, in snake_case: `list()` returns
`{keys: [{name, expiration?, metadata?}], list_complete, cursor}` and
`getWithMetadata()` returns `{value, metadata, cacheStatus}`. `to_dict()` gives
the JSON shape the binding returns in a Worker.

The argument checks at the end are every provider's, so a bad argument fails with the
same error and message everywhere. Standard library only: the `workers` provider
imports this module in a bare Pyodide.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import KVError

# Cloudflare's documented limits (developers.cloudflare.com/kv/platform/limits),
# the same figures as Miniflare's `KVLimits`.
MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 25 * 1024 * 1024  # 25 MiB
MAX_METADATA_BYTES = 1024
MIN_EXPIRATION_TTL = 60  # seconds
MIN_CACHE_TTL = 30  # seconds
MAX_LIST_LIMIT = 1000
MAX_BULK_GET_KEYS = 100
MAX_BULK_GET_BYTES = 25 * 1024 * 1024
WRITES_PER_KEY_INTERVAL = 1.0  # seconds between two writes to one key

GET_TYPES = ("text", "json", "arrayBuffer", "bytes", "stream")
BULK_GET_TYPES = ("text", "json")

READ_CHUNK = 1 << 20  # bytes asked of a file-like value per read()
STREAM_CHUNK = 64 * 1024  # a "stream" read hands the value out in chunks of this size

# workerd's TypeErrors (src/workerd/api/kv.c++).
UNKNOWN_TYPE = (
    'Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream". '
    '("bytes" is accepted as an alias of "arrayBuffer".)'
)
BAD_VALUE = (
    "KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as "
    "values. In Python: str, bytes, bytearray, memoryview, a file-like object with read(), "
    "or an async iterable of bytes."
)


class KVTypeError(KVError, TypeError):
    """A KV call got an argument of the wrong type (workerd raises a TypeError)."""

    code = "KV_TYPE_ERROR"


@dataclass(slots=True)
class KVKey:
    """One entry of a `list()` page. `expiration` is in seconds since the UNIX epoch."""

    name: str
    expiration: int | None = None
    metadata: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.expiration is not None:
            out["expiration"] = self.expiration
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


@dataclass(slots=True)
class KVListResult:
    """A `list()` page. `cursor` is set (and opaque) only when `list_complete` is false.

    A page may hold fewer keys than `limit`, even none, while `list_complete` is
    false: keep calling with the cursor (and the same prefix) until it is true.
    """

    keys: list[KVKey] = field(default_factory=list)
    list_complete: bool = True
    cursor: str | None = None
    cache_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keys": [key.to_dict() for key in self.keys],
            "list_complete": self.list_complete,
        }
        if not self.list_complete:
            out["cursor"] = self.cursor
        out["cacheStatus"] = self.cache_status
        return out


def list_result(page: Mapping[str, Any]) -> KVListResult:
    """A `list()` page from the JSON shape the binding returns."""
    keys = [KVKey(k["name"], k.get("expiration"), k.get("metadata")) for k in page.get("keys", [])]
    complete = bool(page.get("list_complete"))
    return KVListResult(
        keys, complete, None if complete else page.get("cursor"), page.get("cacheStatus")
    )


@dataclass(slots=True)
class KVValueWithMetadata:
    """What `get_with_metadata()` returns; `value` and `metadata` are None for a missing key."""

    value: Any
    metadata: Any = None
    cache_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "metadata": self.metadata, "cacheStatus": self.cache_status}


# -- argument checks, shared by every provider -------------------------------------------------
# What a Python value could get wrong on its way to JavaScript is checked the same way
# everywhere, with workerd's (or Miniflare's) wording; each provider adds the limits it
# enforces itself.


def check_str(value: Any, what: str) -> str:
    """`value` if it is a str; else workerd's TypeError for `what` ("Key name", ...)."""
    if not isinstance(value, str):
        raise KVTypeError(f"{what} must be a string, not {type(value).__name__}.")
    return value


def utf8(value: Any, what: str) -> bytes:
    """The UTF-8 bytes of a str. A lone surrogate is refused: JavaScript would silently
    turn it into U+FFFD, so the value stored would not be the one given."""
    try:
        return check_str(value, what).encode()
    except UnicodeEncodeError as e:
        char = value[e.start] if e.start < len(value) else ""
        raise KVTypeError(
            f"{what} cannot be encoded as UTF-8: lone surrogate {char!r} at index {e.start}. "
            "Cloudflare would silently replace it with U+FFFD."
        ) from None


def key_too_long(size: int, method: str) -> KVError:
    return KVError(
        f"KV {method} failed: 414 UTF-8 encoded length of {size} exceeds key length "
        f"limit of {MAX_KEY_BYTES}."
    )


def check_key(key: Any, method: str, *, enforce_limit: bool = True) -> bytes:
    """A key name checked as workerd checks it; returns its UTF-8 bytes. Without
    `enforce_limit`, the length is left to the KV service."""
    data = utf8(key, "Key name")
    if len(data) <= 2:  # the short names workerd refuses
        if not data:
            raise KVTypeError("Key name cannot be empty.")
        if key == "." or key == "..":
            raise KVTypeError(f'"{key}" is not allowed as a key name.')
    if enforce_limit and len(data) > MAX_KEY_BYTES:
        raise key_too_long(len(data), method)
    return data


def check_get_type(type: Any) -> str:
    """A `get` type; "bytes" comes back as "arrayBuffer", the name the binding knows."""
    if not isinstance(type, str) or type not in GET_TYPES:
        raise KVTypeError(UNKNOWN_TYPE)
    return "arrayBuffer" if type == "bytes" else type


def check_bulk_get_type(type: Any) -> str:
    """A bulk `get` type: only "text" and "json" (the KV service's message otherwise)."""
    check_get_type(type)
    if type not in BULK_GET_TYPES:
        raise KVError(f'KV GET_BULK failed: 400 "{type}" is not a valid type. Use "json" or "text"')
    return str(type)


def check_cache_ttl(cache_ttl: Any, method: str, *, enforce_minimum: bool = False) -> Any:
    """None or a number. The minimum is the KV service's to enforce, so only a provider
    that plays the service (`local`) asks for it."""
    if cache_ttl is None:
        return None
    message = (
        f"KV {method} failed: 400 Invalid cache_ttl of {cache_ttl}. "
        f"Cache TTL must be at least {MIN_CACHE_TTL}."
    )
    if isinstance(cache_ttl, bool) or not isinstance(cache_ttl, int | float):
        raise KVTypeError(message)
    if enforce_minimum and not cache_ttl >= MIN_CACHE_TTL:  # also catches NaN
        raise KVError(message)
    return cache_ttl


def check_list_limit(limit: Any, *, positive: bool = True) -> int:
    """A `list` limit: an int, and with `positive` at least 1 (workerd drops a limit of 0
    or less and lists 1,000 keys; Cloudflare documents 1 to 1,000)."""
    message = (
        f"KV GET failed: 400 Invalid key_count_limit of {limit}. "
        "Please specify an integer greater than 0."
    )
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise KVTypeError(message)
    if positive and limit < 1:
        raise KVError(message)
    return limit


def integer(value: Any) -> int | None:
    """An int, or a float with an integral value; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def number_error(value: Any, message: str) -> KVError:
    """A non-number gets a KVTypeError, a number out of range a KVError; same message."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return (KVError if is_number else KVTypeError)(message)


def expiration_message(name: str, value: Any) -> str:
    """Miniflare's message for a bad `expiration` or `expiration_ttl`."""
    want = (
        "integer greater than 0"
        if name == "expiration_ttl"
        else "integer greater than the current number of seconds since the UNIX epoch"
    )
    return f"KV PUT failed: 400 Invalid {name} of {value}. Please specify {want}."


def check_expiration(value: Any, name: str) -> int:
    """`expiration` or `expiration_ttl` as a whole number of seconds."""
    number = integer(value)
    if number is None:
        raise number_error(value, expiration_message(name, value))
    return number


def metadata_json(metadata: Any) -> str:
    """Metadata as compact JSON (how the runtime measures it). Plain JSON only: bytes,
    NaN and lone surrogates have no JSON form that would read back the same."""
    try:
        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        text.encode()
    except (TypeError, ValueError) as e:  # UnicodeEncodeError is a ValueError
        raise KVTypeError(f"KV put() metadata must be serializable as JSON: {e}") from None
    return text


# -- values ------------------------------------------------------------------------------------


def too_large(length: int) -> KVError:
    return KVError(
        f"KV PUT failed: 413 Value length of {length} exceeds limit of {MAX_VALUE_BYTES}."
    )


def value_chunk(chunk: Any) -> bytes:
    """One chunk of a file or stream value, as bytes."""
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    raise KVTypeError(f"{BAD_VALUE} A chunk of the value was {type(chunk).__name__}.")


async def value_chunks(value: Any) -> AsyncIterator[bytes]:
    """The bytes of a file-like value (sync or async `read()`; text is encoded as UTF-8)
    or of an async iterable of bytes, chunk by chunk."""
    if hasattr(value, "read"):
        while True:
            chunk = value.read(READ_CHUNK)
            if inspect.isawaitable(chunk):
                chunk = await chunk
            data = utf8(chunk, "Value") if isinstance(chunk, str) else value_chunk(chunk)
            if not data:
                return
            yield data
    else:
        async for chunk in value:
            yield value_chunk(chunk)


async def read_value(value: Any) -> bytes:
    """A file-like or async iterable value read whole. A value over the limit is read to
    its end first, so that the error gives its full length (as Miniflare's does)."""
    parts: list[bytes] = []
    total = 0
    async for data in value_chunks(value):
        total += len(data)
        if total <= MAX_VALUE_BYTES:
            parts.append(data)
    if total > MAX_VALUE_BYTES:
        raise too_large(total)
    return b"".join(parts)


async def stream_chunks(data: bytes) -> AsyncIterator[bytes]:
    """A value read as "stream": it is at most 25 MiB, so it is read whole and handed
    out in chunks."""
    for start in range(0, len(data), STREAM_CHUNK):
        yield data[start : start + STREAM_CHUNK]
