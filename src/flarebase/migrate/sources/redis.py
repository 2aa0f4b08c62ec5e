"""Reading Redis without blocking it: redis-py over RESP, or Upstash over its REST API.

Both clients answer pipelines of raw commands with raw replies (bytes, ints, lists,
None), so the reader is the same for both:

- keys come from `SCAN cursor COUNT n`; the cursor after each batch is the resume
  position (a SCAN cursor stays valid across connections and resizes of the keyspace:
  every key that exists for the whole scan is returned at least once);
- per batch, one pipeline reads `TYPE` and `PTTL` of every key, one the size of each
  collection, one the values of the small ones; a collection over `chunk` elements
  is read in pieces (`HSCAN`, `SSCAN`, `ZSCAN`, `LRANGE`, `XRANGE ... COUNT`), so no
  single command holds the server for long.

Upstash's REST API takes a command as a JSON array (`POST /`, `POST /pipeline`) and,
with `Upstash-Encoding: base64`, answers strings in base64, which keeps binary values
intact.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from ...platform.errors import FlarebaseError

COLLECTIONS = {"hash", "list", "set", "zset", "stream"}
TYPES = ("string", "json", "hash", "list", "set", "zset", "stream")
_SIZE = {
    "string": "STRLEN",
    "hash": "HLEN",
    "list": "LLEN",
    "set": "SCARD",
    "zset": "ZCARD",
    "stream": "XLEN",
}


class RedisSourceError(FlarebaseError):
    code = "MIGRATE_REDIS"


class CommandError(Exception):
    """One command of a pipeline failed (WRONGTYPE after a concurrent change...)."""


class RedisClient(Protocol):
    description: str

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Raw replies in order; a failed command's reply is a `CommandError`."""

    async def aclose(self) -> None: ...


class RespClient:
    """redis-py (asyncio) with its reply parsing off: raw RESP2 replies."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self.description = redact(url)
        self._redis = redis.asyncio.Redis.from_url(url, decode_responses=False, protocol=2)
        self._redis.response_callbacks.clear()

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        import redis

        if not commands:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except redis.RedisError as e:
            raise RedisSourceError(f"{self.description}: {e}") from None
        return [CommandError(str(r)) if isinstance(r, Exception) else r for r in replies]

    async def aclose(self) -> None:
        await self._redis.aclose()


class UpstashClient:
    """Upstash Redis over REST: `POST {url}/pipeline` with a bearer token."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.description = f"upstash:{redact(self.url)}"
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}", "Upstash-Encoding": "base64"},
            timeout=timeout,
        )

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        if not commands:
            return []
        body = [[_text(a) for a in command] for command in commands]
        for attempt in range(5):
            try:
                response = await self._http.post(f"{self.url}/pipeline", json=body)
            except httpx.HTTPError as e:
                if attempt == 4:
                    raise RedisSourceError(f"{self.description}: {e}") from None
                continue
            retry = response.status_code == 429 or response.status_code >= 500
            if retry and attempt < 4:
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            if response.status_code != 200:
                raise RedisSourceError(
                    f"{self.description}: HTTP {response.status_code}: {response.text[:300]}"
                )
            break
        out: list[Any] = []
        for item in response.json():
            if "error" in item:
                out.append(CommandError(str(item["error"])))
            else:
                out.append(_unbase64(item.get("result")))
        return out

    async def aclose(self) -> None:
        await self._http.aclose()


def _text(arg: Any) -> Any:
    if isinstance(arg, bytes):
        try:
            return arg.decode("utf-8")
        except UnicodeDecodeError:
            raise RedisSourceError(
                "Upstash's REST API takes commands as JSON text: a key that is not UTF-8 "
                f"({arg!r}) cannot be named in one; use its redis:// endpoint instead"
            ) from None
    return arg if isinstance(arg, str | int | float) else str(arg)


def _unbase64(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            return value.encode()  # a status reply ("OK") that was not encoded
    if isinstance(value, list):
        return [_unbase64(v) for v in value]
    return value


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


# -- values ----------------------------------------------------------------------------------


@dataclass
class RedisValue:
    """One key as read: its type, its value in a plain shape, and when it expires.

    value by type: string/json -> bytes; hash -> dict[bytes, bytes]; list -> list[bytes];
    set -> set[bytes]; zset -> dict[bytes, float]; stream -> list[(id, [(field, value)])].
    """

    key: bytes
    type: str
    value: Any = None
    expires_at_ms: int | None = None  # absolute, from PTTL at the time of reading

    @property
    def name(self) -> str:
        return self.key.decode("utf-8", errors="backslashreplace")


@dataclass
class Scanned:
    """A SCAN batch: keys with their types and expiries (values not read yet)."""

    keys: list[tuple[bytes, str, int | None]] = field(default_factory=list)
    vanished: int = 0  # keys that expired or were deleted between SCAN and TYPE


class RedisReader:
    """SCAN in batches, then values on demand (`values`), through a `RedisClient`."""

    def __init__(self, client: RedisClient, *, count: int = 500, chunk: int = 1000) -> None:
        self.client = client
        self.count = count
        self.chunk = chunk

    async def dbsize(self) -> int:
        (n,) = await self.client.pipeline([("DBSIZE",)])
        return int(n) if isinstance(n, int) else 0

    async def scan(self, cursor: int = 0) -> AsyncIterator[tuple[Scanned, int]]:
        """(keys, next cursor) until the cursor returns to 0."""
        started = False
        while not started or cursor != 0:
            started = True
            (reply,) = await self.client.pipeline([("SCAN", cursor, "COUNT", self.count)])
            if isinstance(reply, CommandError):
                raise RedisSourceError(f"SCAN failed: {reply}")
            cursor = int(reply[0])
            keys = list(dict.fromkeys(reply[1]))  # SCAN may return a key twice
            yield await self.describe(keys), cursor

    async def describe(self, keys: list[bytes]) -> Scanned:
        out = Scanned()
        if not keys:
            return out
        commands: list[tuple[Any, ...]] = []
        for key in keys:
            commands += [("TYPE", key), ("PTTL", key)]
        replies = await self.client.pipeline(commands)
        now = time.time()
        for i, key in enumerate(keys):
            kind, pttl = replies[2 * i], replies[2 * i + 1]
            name = _type_name(kind)
            if name == "none" or (isinstance(pttl, int) and pttl == -2):
                out.vanished += 1
                continue
            expires = None
            if isinstance(pttl, int) and pttl >= 0:
                expires = int(now * 1000) + pttl
            out.keys.append((key, name, expires))
        return out

    async def values(self, keys: list[tuple[bytes, str, int | None]]) -> list[RedisValue | str]:
        """The value of each key, or a reason it could not be read ("vanished", ...)."""
        results: list[RedisValue | str] = []
        sizes = await self.client.pipeline(
            [(_SIZE[t], k) if t in _SIZE else ("EXISTS", k) for k, t, _ in keys]
        )
        small: list[int] = []
        commands: list[tuple[Any, ...]] = []
        for i, ((key, kind, _), size) in enumerate(zip(keys, sizes, strict=True)):
            if isinstance(size, CommandError):
                results.append(f"changed while read ({size})")
                continue
            results.append(RedisValue(key, kind, None, keys[i][2]))
            if kind in COLLECTIONS and int(size) > self.chunk:
                continue
            small.append(i)
            commands.append(_read_all(key, kind))
        replies = await self.client.pipeline(commands)
        for i, reply in zip(small, replies, strict=True):
            value = results[i]
            assert isinstance(value, RedisValue)
            if isinstance(reply, CommandError):
                results[i] = f"changed while read ({reply})"
            elif reply is None and value.type in ("string", "json"):
                results[i] = "vanished"
            else:
                value.value = _shape(value.type, reply)
        for i, value in enumerate(results):
            if isinstance(value, RedisValue) and value.value is None:
                try:
                    value.value = await self._read_large(value.key, value.type)
                except CommandError as e:
                    results[i] = f"changed while read ({e})"
        return results

    async def _read_large(self, key: bytes, kind: str) -> Any:
        """A large collection in pieces of `chunk` elements."""
        if kind == "list":
            items: list[bytes] = []
            while True:
                (part,) = await self._one(("LRANGE", key, len(items), len(items) + self.chunk - 1))
                items += part
                if len(part) < self.chunk:
                    return items
        if kind == "stream":
            entries: list[Any] = []
            start = b"-"
            while True:
                (part,) = await self._one(("XRANGE", key, start, b"+", "COUNT", self.chunk))
                entries += _shape("stream", part)
                if len(part) < self.chunk:
                    return entries
                start = b"(" + part[-1][0]
        command = {"hash": "HSCAN", "set": "SSCAN", "zset": "ZSCAN"}[kind]
        cursor: Any = 0
        flat: list[bytes] = []
        while True:
            (reply,) = await self._one((command, key, cursor, "COUNT", self.chunk))
            cursor = int(reply[0])
            flat += reply[1]
            if cursor == 0:
                break
        if kind == "set":
            return set(flat)
        return _shape(kind, flat)

    async def _one(self, command: tuple[Any, ...]) -> list[Any]:
        (reply,) = await self.client.pipeline([command])
        if isinstance(reply, CommandError):
            raise reply
        return [reply]


def _type_name(reply: Any) -> str:
    name = reply.decode() if isinstance(reply, bytes) else str(reply)
    return "json" if name == "ReJSON-RL" else name


def _read_all(key: bytes, kind: str) -> tuple[Any, ...]:
    return {
        "string": ("GET", key),
        "json": ("JSON.GET", key),
        "hash": ("HGETALL", key),
        "list": ("LRANGE", key, 0, -1),
        "set": ("SMEMBERS", key),
        "zset": ("ZRANGE", key, 0, -1, "WITHSCORES"),
        "stream": ("XRANGE", key, "-", "+"),
    }.get(kind, ("TYPE", key))


def _shape(kind: str, reply: Any) -> Any:
    if kind in ("string", "json"):
        return reply
    if kind == "hash":
        return {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}
    if kind == "list":
        return list(reply)
    if kind == "set":
        return set(reply)
    if kind == "zset":
        return {reply[i]: _score(reply[i + 1]) for i in range(0, len(reply), 2)}
    if kind == "stream":
        return [
            (entry[0], [(fields[i], fields[i + 1]) for i in range(0, len(fields), 2)])
            for entry in reply
            for fields in [entry[1] or []]
        ]
    return reply


def _score(raw: Any) -> float:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return float(text)
