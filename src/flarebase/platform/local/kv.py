"""Local Workers KV: one SQLite file per namespace, held to KV's limits and semantics.

Each key is one row `(key BLOB, value BLOB, expiration INTEGER, metadata TEXT)`.
Keys are stored as their UTF-8 bytes, so SQLite's byte-wise BLOB order is KV's
lexicographic UTF-8 order and a prefix is a plain range. Values of every input
type are stored as bytes; `text` decodes them as UTF-8 on read (invalid bytes
become U+FFFD, as workerd's text decoding does).

Semantics kept from Cloudflare (checked against workerd and Miniflare):
- expired keys read as missing at once and never appear in `list()`; a
  background task (`start()`) deletes them for good;
- one write per second to one key: a second `put()` to the same key within a
  second fails with "KV PUT failed: 429 Too Many Requests" (counted in this
  process only);
- every limit raises `KVError` with the message the Worker would see.

Durability: WAL journal with synchronous=NORMAL. A `put()` that returned is in
the WAL, which survives a killed process; only an OS crash or power loss can lose
the last writes. Statements run synchronously inside the async methods, on one
connection: a hop to a thread would cost more than the query.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import KVError
from ..invocation import count
from ..kv import (
    BAD_VALUE,
    MAX_BULK_GET_BYTES,
    MAX_BULK_GET_KEYS,
    MAX_KEY_BYTES,
    MAX_LIST_LIMIT,
    MAX_METADATA_BYTES,
    MAX_VALUE_BYTES,
    MIN_EXPIRATION_TTL,
    UNKNOWN_TYPE,
    WRITES_PER_KEY_INTERVAL,
    KVKey,
    KVListResult,
    KVTypeError,
    KVValueWithMetadata,
    check_bulk_get_type,
    check_cache_ttl,
    check_expiration,
    check_get_type,
    check_key,
    check_list_limit,
    check_str,
    expiration_message,
    key_too_long,
    metadata_json,
    read_value,
    stream_chunks,
    too_large,
    utf8,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY,   -- UTF-8 bytes of the key name
    value BLOB NOT NULL,
    expiration INTEGER,     -- seconds since the UNIX epoch; NULL: never expires
    metadata TEXT           -- serialized JSON; NULL: none
);
CREATE INDEX IF NOT EXISTS kv_expiration ON kv (expiration) WHERE expiration IS NOT NULL;
PRAGMA user_version = 1;
"""
_GET = "SELECT value, expiration FROM kv WHERE key = ?"
_GET_META = "SELECT value, expiration, metadata FROM kv WHERE key = ?"
_PUT = (
    "INSERT INTO kv (key, value, expiration, metadata) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET "
    "value = excluded.value, expiration = excluded.expiration, metadata = excluded.metadata"
)
_DELETE = "DELETE FROM kv WHERE key = ?"
_LIST_FROM = (
    "SELECT key, expiration, metadata FROM kv WHERE key >= ? AND key < ? "
    "AND (expiration IS NULL OR expiration > ?) ORDER BY key LIMIT ?"
)
_LIST_AFTER = (
    "SELECT key, expiration, metadata FROM kv WHERE key > ? AND key < ? "
    "AND (expiration IS NULL OR expiration > ?) ORDER BY key LIMIT ?"
)
_PURGE = (
    "DELETE FROM kv WHERE key IN "
    "(SELECT key FROM kv WHERE expiration <= ? ORDER BY expiration LIMIT ?)"
)
# No valid UTF-8 sequence contains 0xFF, so `prefix + b"\xff"` is above every key
# that starts with `prefix`, and b"\xff" is above every key.
_ABOVE = b"\xff"
_MANY = (list, tuple)
_BYTES_LIKE = (bytes, bytearray, memoryview)

_TOO_MANY_WRITES = "KV PUT failed: 429 Too Many Requests"


def _bulk_key_bytes(key: Any) -> bytes:
    """Bulk reads are validated by the KV service (Miniflare's wording), not by workerd."""
    data = utf8(key, "Key name")
    if not data:
        raise KVError("KV GET_BULK failed: 400 Key names must not be empty")
    if key == "." or key == "..":
        raise KVError(
            f'KV GET_BULK failed: 400 Illegal key name "{key}". Please use a different name.'
        )
    if len(data) > MAX_KEY_BYTES:
        raise key_too_long(len(data), "GET_BULK")
    return data


def _expiration(now: float, expiration: Any, expiration_ttl: Any) -> int:
    """Seconds since the epoch at which the key expires (Miniflare's checks and messages)."""
    seconds = math.floor(now)
    if expiration_ttl is not None:
        ttl = check_expiration(expiration_ttl, "expiration_ttl")
        if ttl <= 0:
            raise KVError(expiration_message("expiration_ttl", expiration_ttl))
        if ttl < MIN_EXPIRATION_TTL:
            raise KVError(
                f"KV PUT failed: 400 Invalid expiration_ttl of {expiration_ttl}. "
                f"Expiration TTL must be at least {MIN_EXPIRATION_TTL}."
            )
        if expiration is not None:
            check_expiration(expiration, "expiration")
        # Cloudflare: "If both are set, expiration_ttl is used and expiration is ignored."
        return seconds + ttl
    at = check_expiration(expiration, "expiration")
    if at <= seconds:
        raise KVError(expiration_message("expiration", expiration))
    if at < seconds + MIN_EXPIRATION_TTL:
        raise KVError(
            f"KV PUT failed: 400 Invalid expiration of {expiration}. Expiration times must be at "
            f"least {MIN_EXPIRATION_TTL} seconds in the future."
        )
    return at


def _metadata_json(metadata: Any) -> str:
    text = metadata_json(metadata)
    size = len(text.encode())
    if size > MAX_METADATA_BYTES:
        raise KVError(
            f"KV PUT failed: 413 Metadata length of {size} exceeds limit of {MAX_METADATA_BYTES}."
        )
    return text


def _not_json(key: str, e: ValueError) -> KVError:
    return KVError(f"KV GET: the value of {key!r} is not valid JSON: {e}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # JSON.parse rejects NaN and Infinity


def _decode(key: str, value: bytes, type: str) -> Any:
    if type == "text":
        return value.decode(errors="replace")
    if type == "json":
        try:
            return json.loads(value.decode(errors="replace"), parse_constant=_reject_constant)
        except ValueError as e:
            raise _not_json(key, e) from None
    if type == "arrayBuffer" or type == "bytes":
        return value
    if type == "stream":
        return stream_chunks(value)
    raise KVTypeError(UNKNOWN_TYPE)


def _encode_cursor(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def _decode_cursor(cursor: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data.decode()
    except (binascii.Error, ValueError):
        raise KVError("KV GET failed: 400 Invalid cursor") from None
    if not data or len(data) > MAX_KEY_BYTES:
        raise KVError("KV GET failed: 400 Invalid cursor")
    return data


class LocalKV:
    """A Workers KV namespace on one SQLite file. Methods mirror the JS binding.

    `clock` returns seconds since the UNIX epoch and decides expiry; tests may
    replace it to make time pass.
    """

    purge_interval = 30.0  # seconds between two background sweeps of expired keys

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.clock = clock
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        # Fewer, larger checkpoints: each one costs an fsync of the WAL and the file.
        self._db.execute("PRAGMA wal_autocheckpoint = 4000")
        self._db.executescript(_SCHEMA)
        self._execute = self._db.execute
        self._last_write: dict[str, float] = {}
        self._prune_at = 4096
        self._bulk_sql: dict[tuple[int, bool], str] = {}
        self._purger: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start deleting expired keys in the background (every `purge_interval` s)."""
        if self._purger is None:
            self._purger = asyncio.create_task(self._purge_forever(), name=f"kv purge {self.path}")

    async def aclose(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        self._db.close()

    async def purge_expired(self, batch: int = 1000) -> int:
        """Delete expired keys now; returns how many. Reads never see them anyway."""
        removed = 0
        while True:
            n = self._execute(_PURGE, (self.clock(), batch)).rowcount
            removed += n
            if n < batch:
                return removed
            await asyncio.sleep(0)  # let other tasks run between batches

    async def _purge_forever(self) -> None:
        while True:
            with contextlib.suppress(sqlite3.Error):
                await self.purge_expired()
            await asyncio.sleep(self.purge_interval)

    # -- reads -------------------------------------------------------------------

    async def get(
        self, key: str | Sequence[str], type: str = "text", cache_ttl: float | None = None
    ) -> Any:
        """The value of `key` as `type` (text | json | arrayBuffer/bytes | stream), or None.

        With a list of up to 100 keys (text or json only), a dict key -> value or None.
        """
        if key.__class__ is not str and isinstance(key, _MANY):
            return await self._get_bulk(key, type, cache_ttl, False)
        data = check_key(key, "GET")
        if type != "text":
            check_get_type(type)
        # Checked, then ignored: there is one "edge location", this process.
        check_cache_ttl(cache_ttl, "GET", enforce_minimum=True)
        count("kv")
        row = self._execute(_GET, (data,)).fetchone()
        if row is None:
            return None
        value, expiration = row
        if expiration is not None and expiration <= self.clock():
            return None
        if type == "text":
            return value.decode(errors="replace")
        return _decode(key, value, type)  # type: ignore[arg-type]

    async def get_with_metadata(
        self, key: str | Sequence[str], type: str = "text", cache_ttl: float | None = None
    ) -> Any:
        """`KVValueWithMetadata` (value and metadata None if missing); for a list, a dict."""
        if key.__class__ is not str and isinstance(key, _MANY):
            return await self._get_bulk(key, type, cache_ttl, True)
        data = check_key(key, "GET")
        check_get_type(type)
        check_cache_ttl(cache_ttl, "GET", enforce_minimum=True)
        count("kv")
        row = self._execute(_GET_META, (data,)).fetchone()
        if row is None:
            return KVValueWithMetadata(None, None)
        value, expiration, metadata = row
        if expiration is not None and expiration <= self.clock():
            return KVValueWithMetadata(None, None)
        return KVValueWithMetadata(
            _decode(key, value, type),  # type: ignore[arg-type]
            None if metadata is None else json.loads(metadata),
        )

    async def _get_bulk(
        self, keys: Sequence[Any], type: str, cache_ttl: Any, with_metadata: bool
    ) -> dict[str, Any]:
        check_bulk_get_type(type)
        if len(keys) > MAX_BULK_GET_KEYS:
            raise KVError(
                f"KV GET_BULK failed: 400 You can request a maximum of {MAX_BULK_GET_KEYS} keys"
            )
        if not keys:
            raise KVError("KV GET_BULK failed: 400 You must request a minimum of 1 key")
        encoded = [_bulk_key_bytes(key) for key in keys]
        check_cache_ttl(cache_ttl, "GET_BULK", enforce_minimum=True)
        count("kv")  # a bulk read is one operation
        unique = list(dict.fromkeys(encoded))
        sql = self._bulk_sql.get((len(unique), with_metadata))
        if sql is None:
            columns = (
                "key, value, expiration, metadata" if with_metadata else "key, value, expiration"
            )
            marks = ", ".join("?" * len(unique))
            sql = f"SELECT {columns} FROM kv WHERE key IN ({marks})"
            self._bulk_sql[(len(unique), with_metadata)] = sql
        now = self.clock()
        found = {row[0]: row for row in self._execute(sql, unique) if not _expired(row[2], now)}
        out: dict[str, Any] = {}
        total = 0
        for key, data in zip(keys, encoded, strict=True):
            row = found.get(data)
            if row is None:
                out[key] = KVValueWithMetadata(None, None) if with_metadata else None
                continue
            total += len(row[1])
            text = row[1].decode(errors="replace")
            if type == "json":
                try:
                    value = json.loads(text, parse_constant=_reject_constant)
                except ValueError:
                    raise KVError(
                        "KV GET_BULK failed: 400 At least one of the requested keys corresponds "
                        "to a non-json value"
                    ) from None
            else:
                value = text
            if with_metadata:
                meta = row[3]
                out[key] = KVValueWithMetadata(value, None if meta is None else json.loads(meta))
            else:
                out[key] = value
        if total > MAX_BULK_GET_BYTES:
            raise KVError(
                "KV GET_BULK failed: 413 Total size of request exceeds the limit of "
                f"{MAX_BULK_GET_BYTES // 1024 // 1024}MB"
            )
        return out

    async def list(
        self, prefix: str | None = None, limit: int = MAX_LIST_LIMIT, cursor: str | None = None
    ) -> KVListResult:
        """Keys in UTF-8 byte order, `limit` (1..1000) per page, from an opaque `cursor`.

        Pass the same `prefix` with every page.
        """
        check_list_limit(limit)
        if limit > MAX_LIST_LIMIT:
            raise KVError(  # sic: Miniflare's wording, though 1,000 itself is allowed
                f"KV GET failed: 400 Invalid key_count_limit of {limit}. "
                f"Please specify an integer less than {MAX_LIST_LIMIT}."
            )
        if prefix is None or prefix == "":
            low, high = b"", _ABOVE
        else:
            low = utf8(prefix, "List prefix")
            if len(low) > MAX_KEY_BYTES:
                raise key_too_long(len(low), "GET")
            high = low + _ABOVE
        sql = _LIST_FROM
        if cursor is not None and cursor != "":
            after = _decode_cursor(check_str(cursor, "List cursor"))
            if after >= low:
                low, sql = after, _LIST_AFTER
        count("kv")
        rows = self._execute(sql, (low, high, self.clock(), limit + 1)).fetchall()
        more = len(rows) > limit
        if more:
            del rows[limit:]
        keys = [
            KVKey(name.decode(), expiration, None if meta is None else json.loads(meta))
            for name, expiration, meta in rows
        ]
        if more:
            return KVListResult(keys, False, _encode_cursor(rows[-1][0]))
        return KVListResult(keys, True, None)

    # -- writes ------------------------------------------------------------------

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
        name = check_key(key, "PUT")
        cls = value.__class__
        if cls is bytes:
            data = value
        elif isinstance(value, str):
            data = utf8(value, "Value")
        elif isinstance(value, _BYTES_LIKE):
            data = bytes(value)
        elif hasattr(value, "read") or hasattr(value, "__aiter__"):
            data = await read_value(value)
        else:
            raise KVTypeError(f"{BAD_VALUE} Got {cls.__name__}.")
        if expiration is None and expiration_ttl is None:
            at = None
        else:
            at = _expiration(self.clock(), expiration, expiration_ttl)
        meta = None if metadata is None else _metadata_json(metadata)
        if len(data) > MAX_VALUE_BYTES:
            raise too_large(len(data))
        now = time.monotonic()
        last = self._last_write.get(key)
        if last is not None and now - last < WRITES_PER_KEY_INTERVAL:
            raise KVError(_TOO_MANY_WRITES, code="KV_TOO_MANY_REQUESTS")
        count("kv")
        self._execute(_PUT, (name, data, at, meta))
        self._last_write[key] = now
        if len(self._last_write) > self._prune_at:
            self._prune_writes(now)

    def _prune_writes(self, now: float) -> None:
        recent = {k: t for k, t in self._last_write.items() if now - t < WRITES_PER_KEY_INTERVAL}
        self._last_write = recent
        self._prune_at = max(4096, 2 * len(recent))

    async def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""
        name = check_key(key, "DELETE")
        count("kv")
        self._execute(_DELETE, (name,))


def _expired(expiration: int | None, now: float) -> bool:
    return expiration is not None and expiration <= now
