"""Local Durable Objects: one instance per id in this process, one SQLite file per object.

Files, under `state_dir/do/<class_name>/`:
  <id>.sqlite3     the object's storage: the user's SQL tables, `_cf_KV` (the
                   key-value API) and `_cf_METADATA` (the alarm); `_cf_*` tables
                   are out of reach of `sql.exec`, as on Cloudflare
  _index.sqlite3   the names of objects, and a wake-up list of alarms so that
                   alarms fire after a restart without opening every object

Semantics kept from Cloudflare:
- One instance per id. Events (RPC calls, `fetch`, alarms, WebSocket messages)
  pass an input gate: none is delivered while `block_concurrency_while` or a
  `storage.transaction()` runs. Storage calls are synchronous SQLite calls that
  never yield to the event loop, so no other event runs during a storage
  operation; like Cloudflare, events may interleave at other awaits
  (`asyncio.sleep`, outgoing I/O).
- `sql.exec` runs with D1's SQLite limits and authorizer (`configure_connection`
  from local D1): BEGIN/SAVEPOINT are refused with Cloudflare's message; use
  `storage.transaction()` / `transaction_sync()`.
- Every write commits before the call returns (WAL, synchronous=NORMAL: it
  survives a killed process). Cloudflare coalesces writes made without an
  intervening await into one atomic commit; here each statement is its own
  commit (stronger durability, and `transaction()` gives atomicity).
- One alarm per object, at-least-once: the alarm stays stored until `alarm()`
  returns, so a crash during the handler fires it again after the restart. A
  handler that raises is retried with exponential backoff (2 s, 4 s, ... up to
  6 retries; the base is the provider option `do_alarm_retry_base`).
- Objects idle for `do_idle_timeout` seconds (default 70) are evicted and rebuilt
  from storage by the next event. Accepted WebSockets (hibernation API), their
  tags and attachments, and the auto-response belong to the runtime, so they
  survive eviction; an auto-response is answered without waking the object.
- RPC arguments and results are copied (Cloudflare serializes them), so caller
  and object never share mutable state.

Registration: wrangler.toml names only `class_name`, so the Python classes are given
to the provider by class name, `open_env(..., durable_objects={"ChatRoom": ChatRoom})`
(a "module:Class" string works too). A process that has no class for a namespace (a CLI
command, say) can still create ids and stubs, but does not run that class's alarms: they
stay stored for the process that serves the project.

An object is hosted by one process at a time (the one that serves the project). At most
`max_open` objects keep their SQLite file open (derived from the open-file limit, at most
2,000); past that, the least recently used idle objects are evicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import functools
import hashlib
import heapq
import hmac
import importlib
import inspect
import json
import logging
import math
import os
import pickle
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from .. import invocation
from ..config import DurableObjectSpec, Project
from ..d1 import script_statements
from ..durable_objects import (
    ALARM_MAX_RETRIES,
    ALARM_RETRY_BASE_SECONDS,
    BLOCK_CONCURRENCY_TIMEOUT_SECONDS,
    MAX_ENTRY_BYTES,
    MAX_KEYS_PER_CALL,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_WEB_SOCKET_MESSAGE_BYTES,
    MAX_WEB_SOCKETS,
    RESERVED_METHODS,
    AlarmInvocationInfo,
    DurableObject,
    DurableObjectId,
    Request,
    Response,
    SqlStorageCursor,
    StorageLimitExceeded,
    WebSocket,
    WebSocketEvent,
    WebSocketRequestResponsePair,
    to_epoch_ms,
)
from ..errors import ConfigError, D1Error, DurableObjectError
from .d1 import (
    TRANSACTION_MESSAGE,
    Guard,
    check_bindable,
    configure_connection,
    is_transaction,
    to_d1_error,
)

log = logging.getLogger("flarebase.durable_objects")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _cf_METADATA (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""


@functools.cache
def _empty_database() -> bytes:
    """The bytes of a new object's file: `_SCHEMA` on a database already in WAL mode
    (header bytes 18-19 = 2), so a new object skips the switch to WAL and the schema."""
    memory = sqlite3.connect(":memory:")
    memory.executescript(_SCHEMA)
    image = bytearray(memory.serialize())
    memory.close()
    image[18:20] = b"\x02\x02"
    return bytes(image)


def _create_database(path: Path) -> bool:
    """Write an empty object database at `path`; False when the file is already there.
    One write(2): a killed process leaves the whole file or none of it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    image = _empty_database()
    try:
        if os.write(fd, image) != len(image):
            raise OSError(f"{path}: short write")
    except BaseException:
        os.close(fd)
        path.unlink()
        raise
    os.close(fd)
    return True


# Closing an object's file checkpoints its WAL and waits for the disk: evicting 300 idle
# objects held the event loop for 190 ms (64 ms of CPU), so evicted files close here.
_CLOSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flarebase-do-close")

_INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (id TEXT PRIMARY KEY, name TEXT, created_ms INTEGER)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarms (id TEXT NOT NULL, at_ms INTEGER NOT NULL,
    PRIMARY KEY (id, at_ms)) WITHOUT ROWID;
"""
_RESERVED_PREFIX = "_cf_"
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})
_in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "flarebase_do_txn", default=False
)


def _max_open_objects() -> int:
    """How many objects may hold an open SQLite file (3 descriptors each, with the WAL).
    At most 2,000: SQLite walks its list of open files on every open (measured: 40 us
    with 1,000 files open, 280 us with 4,000, 610 us with 6,000)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 256
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft <= 0:
        soft = 65_536
    return max(64, min(2_000, (soft - 256) // 4))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _clone(value: Any) -> Any:
    """What structured cloning does to an RPC argument or result: a copy, with shared
    and circular references kept as they were."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is tuple and all(type(v) in _IMMUTABLE for v in value):
        return value
    return _copy_tree(value, {})


def _copy_tree(value: Any, memo: dict[int, Any]) -> Any:
    """`copy.deepcopy` with a fast path for the tuples, dicts and lists of JSON-like data
    (a chat's history, say), which it copies some 2.5x faster."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is tuple:  # RPC arguments come as one
        return tuple([_copy_tree(item, memo) for item in value])
    if kind is not dict and kind is not list:
        return copy.deepcopy(value, memo)
    done = memo.get(id(value))
    if done is not None:
        return done
    if kind is list:
        items = memo[id(value)] = []
        for item in value:
            items.append(_copy_tree(item, memo))
        return items
    fields = memo[id(value)] = {}
    for key, item in value.items():
        fields[key if type(key) is str else _copy_tree(key, memo)] = _copy_tree(item, memo)
    return fields


def _rpc_missing(method: str) -> DurableObjectError:
    return DurableObjectError(f'The RPC receiver does not implement the method "{method}".')


# -- the provider-wide runtime --------------------------------------------------------------
class LocalDurableObjects:
    """All Durable Object namespaces of one local provider, their alarms and evictions."""

    def __init__(
        self,
        project: Project,
        root: Path,
        classes: Mapping[str, type[DurableObject] | str] | None = None,
        *,
        idle_timeout: float = 70.0,
        alarm_retry_base: float = ALARM_RETRY_BASE_SECONDS,
        alarm_max_retries: int = ALARM_MAX_RETRIES,
        block_timeout: float = BLOCK_CONCURRENCY_TIMEOUT_SECONDS,
    ) -> None:
        self.project = project
        self.root = root
        self.classes = dict(classes or {})
        self.idle_timeout = idle_timeout
        self.alarm_retry_base = alarm_retry_base
        self.alarm_max_retries = alarm_max_retries
        self.block_timeout = block_timeout
        self.env: Any = None
        self.namespaces: dict[str, LocalDurableObjectNamespace] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._started = False
        self.max_open = _max_open_objects()
        self.open_count = 0  # objects with an open SQLite connection

    def namespace(self, spec: DurableObjectSpec) -> LocalDurableObjectNamespace:
        """The binding for one `[[durable_objects.bindings]]` entry (shared per class)."""
        ns = self.namespaces.get(spec.class_name)
        if ns is None:
            ns = LocalDurableObjectNamespace(self, spec.class_name, self._storage_kind(spec))
            self.namespaces[spec.class_name] = ns
        return ns

    def _storage_kind(self, spec: DurableObjectSpec) -> str:
        """ "sqlite" or "kv", from `[[migrations]]` (the last migration that names the class)."""
        kind = None
        for migration in self.project.do_migrations:
            if spec.class_name in migration.new_sqlite_classes:
                kind = "sqlite"
            elif spec.class_name in migration.new_classes:
                kind = "kv"
            elif spec.class_name in migration.deleted_classes:
                kind = None
        if kind is None and spec.script_name is None:
            raise ConfigError(
                f"{self.project.path}: Durable Object class {spec.class_name!r} "
                f"(binding {spec.name}) has no [[migrations]] entry; add "
                f'new_sqlite_classes = ["{spec.class_name}"] to a migration'
            )
        return kind or "sqlite"

    def opening(self) -> None:
        """Called before an object opens its storage: past `max_open` open objects, the
        least recently used idle ones are evicted (as Cloudflare evicts under pressure)."""
        self.open_count += 1
        if self.open_count <= self.max_open:
            return
        idle = [
            actor
            for ns in self.namespaces.values()
            for actor in ns._actors.values()
            if actor._storage is not None and not actor.busy()
        ]
        idle.sort(key=lambda actor: actor.last_used)
        for actor in idle[: max(1, self.open_count - self.max_open * 9 // 10)]:
            actor.ns.evict(actor)

    def spawn(self, aw: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self, env: Any) -> None:
        self.env = env
        if self._started:
            return
        self._started = True
        for name, ns in self.namespaces.items():
            if name in self.classes:  # alarms of a class this process cannot run stay stored
                self.spawn(ns.run_alarms())
        if self.namespaces and math.isfinite(self.idle_timeout):
            self.spawn(self._evict_loop())

    async def _evict_loop(self) -> None:
        interval = min(max(self.idle_timeout / 4, 0.01), 10.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for ns in self.namespaces.values():
                ns.evict_idle(now)

    async def aclose(self) -> None:
        # The runtime's loops, and the objects' work left running (`ctx.wait_until`): an
        # object must not run on past its storage's close.
        tasks = list(self._tasks) + [
            task
            for ns in self.namespaces.values()
            for actor in ns._actors.values()
            for task in actor.background
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ns in self.namespaces.values():
            ns.close()


# -- a namespace binding -------------------------------------------------------------------
class LocalDurableObjectNamespace:
    """The `DurableObjectNamespace` binding: ids, stubs, and the objects of one class."""

    def __init__(self, runtime: LocalDurableObjects, class_name: str, kind: str) -> None:
        self.runtime = runtime
        self.class_name = class_name
        self.sql_enabled = kind == "sqlite"
        self.folder = runtime.root / class_name
        self._key = hashlib.sha256(f"flarebase-durable-object:{class_name}".encode()).digest()
        self._actors: dict[str, _Actor] = {}
        self._closing: dict[str, Future[None]] = {}  # evicted objects' files being closed
        self._prune_at = 64
        self._cls: type[DurableObject] | None = None
        self._index: sqlite3.Connection | None = None
        self._heap: list[tuple[int, int, str, int, int]] = []
        self._seq = 0
        self._due: dict[str, tuple[int, int]] = {}  # id -> (alarm time, retry) to fire next
        self._wake: asyncio.Event | None = None
        self._alarm_takes_info: bool | None = None
        self.constructed = 0  # instances built (a test and `do list` read it)

    # ids --------------------------------------------------------------------------------
    def _make_id(self, body: bytes, name: str | None) -> DurableObjectId:
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:8]
        return DurableObjectId((body + mac).hex(), name)

    def id_from_name(self, name: str) -> DurableObjectId:
        if not isinstance(name, str):
            raise TypeError("id_from_name() takes a string")
        body = hmac.new(self._key, b"name:" + name.encode(), hashlib.sha256).digest()[:24]
        return self._make_id(body, name)

    def new_unique_id(self, jurisdiction: str | None = None) -> DurableObjectId:
        return self._make_id(secrets.token_bytes(24), None)

    def id_from_string(self, hex_id: str) -> DurableObjectId:
        self._check_id(hex_id)
        return DurableObjectId(hex_id.lower())

    def _check_id(self, hex_id: str) -> None:
        try:
            raw = bytes.fromhex(hex_id)
        except (ValueError, TypeError):
            raw = b""
        if len(raw) != 32 or len(hex_id) != 64:
            raise DurableObjectError("Invalid Durable Object ID: must be 64 hex digits")
        mac = hmac.new(self._key, raw[:24], hashlib.sha256).digest()[:8]
        if not hmac.compare_digest(mac, raw[24:]):
            raise DurableObjectError(
                f"Durable Object ID is not valid for this namespace ({self.class_name})"
            )

    def get(self, id: DurableObjectId, location_hint: str | None = None) -> DurableObjectStub:
        if not isinstance(id, DurableObjectId):
            raise TypeError("get() takes a DurableObjectId (use id_from_name or id_from_string)")
        self._check_id(str(id))
        return DurableObjectStub(self, id)

    def get_by_name(self, name: str) -> DurableObjectStub:
        return DurableObjectStub(self, self.id_from_name(name))

    # events -----------------------------------------------------------------------------
    def _class(self) -> type[DurableObject]:
        if self._cls is None:
            found = self.runtime.classes.get(self.class_name)
            if found is None:
                raise ConfigError(
                    f"no Python class registered for Durable Object class {self.class_name!r}; "
                    f"pass durable_objects={{{self.class_name!r}: {self.class_name}}} to open_env"
                )
            if isinstance(found, str):
                module, _, attr = found.partition(":")
                found = getattr(importlib.import_module(module), attr)
            assert isinstance(found, type)
            if not issubclass(found, DurableObject):
                raise ConfigError(f"{found.__qualname__} must subclass flarebase DurableObject")
            self._cls = found
        return self._cls

    def _actor(self, id: DurableObjectId) -> _Actor:
        actor = self._actors.get(id._hex)
        if actor is None:
            actor = self._actors[id._hex] = _Actor(self, id)
        elif id.name is not None and actor.id.name is None:
            actor.id = id
        return actor

    async def deliver(self, actor: _Actor, call: Callable[[DurableObject], Any]) -> Any:
        """Run one event on the object: through the input gate, in its own invocation."""
        built = False
        while True:
            if not actor.gate.is_set():
                actor.waiting += 1  # a waiting event keeps the object from eviction
                try:
                    await actor.gate.wait()
                finally:
                    actor.waiting -= 1
                continue
            if actor.instance is None:
                if built:
                    raise DurableObjectError(
                        f"Durable Object was reset: {actor.reset_reason or 'unknown reason'}"
                    )
                actor.construct()
                built = True
                continue
            break
        instance = actor.instance
        actor.inflight += 1
        try:
            with invocation.invocation():
                result = call(instance)
                if inspect.isawaitable(result):
                    result = await result
            return result
        finally:
            actor.inflight -= 1
            actor.last_used = time.monotonic()

    async def rpc(
        self, id: DurableObjectId, method: str, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        if method.startswith("_") or method in RESERVED_METHODS:
            raise _rpc_missing(method)
        args = _clone(args)
        kwargs = _clone(kwargs) if kwargs else kwargs

        def call(instance: DurableObject) -> Any:
            fn = getattr(instance, method, None)
            if fn is None or not callable(fn) or isinstance(fn, type):
                raise _rpc_missing(method)
            return fn(*args, **kwargs)

        return _clone(await self.deliver(self._actor(id), call))

    async def fetch(self, id: DurableObjectId, request: Request) -> Response:
        response = await self.deliver(self._actor(id), lambda obj: obj.fetch(request))
        if not isinstance(response, Response):
            raise DurableObjectError(
                "Incorrect type for Promise: the Promise did not resolve to 'Response'."
            )
        return response

    # WebSockets ---------------------------------------------------------------------------
    def socket_event(self, actor: _Actor, ws: WebSocket, event: WebSocketEvent) -> None:
        """An event from the peer of an accepted socket (called synchronously by `send`)."""
        if event.kind == "message":
            auto = actor.auto_response
            if auto is not None and event.data == auto.request:
                ws._auto_response_at = datetime.now(UTC)
                if ws.ready_state == WebSocket.OPEN:
                    ws.send(auto.response)
                return
            data = event.data
            size = len(data.encode()) if isinstance(data, str) else len(data)
            if size > MAX_WEB_SOCKET_MESSAGE_BYTES:
                ws.close(1009, "Message is too large")
                event = WebSocketEvent("close", code=1009, reason="Message is too large")
        previous = ws._tail
        ws._tail = self.runtime.spawn(self._socket_deliver(actor, ws, event, previous))

    async def _socket_deliver(
        self,
        actor: _Actor,
        ws: WebSocket,
        event: WebSocketEvent,
        previous: asyncio.Future[Any] | None,
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # one socket's events arrive in order
        try:
            if event.kind == "message":
                await self.deliver(actor, lambda obj: obj.web_socket_message(ws, event.data))
            else:
                ws.ready_state = WebSocket.CLOSED
                if ws in actor.sockets:
                    actor.sockets.remove(ws)
                await self.deliver(
                    actor,
                    lambda obj: obj.web_socket_close(ws, event.code, event.reason, True),
                )
        except Exception:
            log.exception("%s: WebSocket %s handler raised", self.class_name, event.kind)

    # alarms ---------------------------------------------------------------------------------
    def _index_db(self) -> sqlite3.Connection:
        if self._index is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.folder / "_index.sqlite3", isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_INDEX_SCHEMA)
            self._index = conn
        return self._index

    def register_object(self, id: DurableObjectId) -> None:
        self._index_db().execute(
            "INSERT INTO objects (id, name, created_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = coalesce(objects.name, excluded.name)",
            (id._hex, id.name, _now_ms()),
        )

    def _stored_id(self, hex_id: str) -> DurableObjectId:
        row = self._index_db().execute("SELECT name FROM objects WHERE id = ?", (hex_id,))
        found = row.fetchone()
        return DurableObjectId(hex_id, found[0] if found else None)

    def alarm_written(self, hex_id: str, at_ms: int) -> None:
        """Called before the object stores an alarm: the wake-up list never misses one."""
        self._index_db().execute(
            "INSERT OR IGNORE INTO alarms (id, at_ms) VALUES (?, ?)", (hex_id, at_ms)
        )
        self.schedule(hex_id, at_ms)

    def schedule(self, hex_id: str, expected: int, due: int | None = None, retry: int = 0) -> None:
        self._seq += 1
        self._due[hex_id] = (expected, retry)
        heapq.heappush(
            self._heap, (expected if due is None else due, self._seq, hex_id, expected, retry)
        )
        if self._wake is not None:
            self._wake.set()

    async def run_alarms(self) -> None:
        self._wake = asyncio.Event()
        if (self.folder / "_index.sqlite3").exists():
            rows = self._index_db().execute("SELECT id, min(at_ms) FROM alarms GROUP BY id")
            for hex_id, at_ms in rows.fetchall():
                self.schedule(hex_id, at_ms)
        while True:
            now = _now_ms()
            while self._heap and self._heap[0][0] <= now:
                _, _, hex_id, expected, retry = heapq.heappop(self._heap)
                self.runtime.spawn(self._fire(hex_id, expected, retry))
            timeout = (self._heap[0][0] - now) / 1000 if self._heap else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _fire(self, hex_id: str, expected: int, retry: int) -> None:
        if self._due.get(hex_id) != (expected, retry):
            return  # superseded, or a duplicate wake-up
        actor = self._actors.get(hex_id) or self._actor(self._stored_id(hex_id))
        if actor.alarm_running is not None:
            return  # the running handler reschedules whatever is stored when it ends
        del self._due[hex_id]
        stored = actor.storage().alarm_ms()
        if stored != expected:
            self._index_db().execute(
                "DELETE FROM alarms WHERE id = ? AND at_ms = ?", (hex_id, expected)
            )
            if stored is not None:
                self.alarm_written(hex_id, stored)
            return
        actor.alarm_running = expected
        done = True
        try:
            info = AlarmInvocationInfo(retry_count=retry, is_retry=retry > 0)
            await self.deliver(actor, lambda obj: self._call_alarm(obj, info))
        except Exception:
            log.exception("%s %s: alarm() raised (retry %d)", self.class_name, hex_id, retry)
            if retry < self.runtime.alarm_max_retries:
                done = False
                delay = self.runtime.alarm_retry_base * 2**retry
                self.schedule(hex_id, expected, _now_ms() + int(delay * 1000), retry + 1)
        finally:
            actor.alarm_running = None
        if not done:
            return
        storage = actor.storage()
        if storage.alarm_ms() == expected:
            storage.clear_alarm()
        self._index_db().execute(
            "DELETE FROM alarms WHERE id = ? AND at_ms <= ?", (hex_id, expected)
        )
        later = storage.alarm_ms()
        if later is not None:
            self.alarm_written(hex_id, later)

    def _call_alarm(self, obj: DurableObject, info: AlarmInvocationInfo) -> Any:
        if self._alarm_takes_info is None:
            self._alarm_takes_info = bool(inspect.signature(obj.alarm).parameters)
        return obj.alarm(info) if self._alarm_takes_info else obj.alarm()  # type: ignore[call-arg]

    # lifecycle --------------------------------------------------------------------------
    def evict_idle(self, now: float) -> None:
        for actor in list(self._actors.values()):
            if not actor.busy() and now - actor.last_used >= self.runtime.idle_timeout:
                self.evict(actor)

    def evict(self, actor: _Actor) -> None:
        actor.evict()
        if not actor.sockets:  # accepted WebSockets keep the record (hibernation)
            self._actors.pop(actor.id._hex, None)

    def close_later(self, hex_id: str, storage: LocalStorage) -> None:
        """Close an evicted object's file in `_CLOSER`'s thread."""
        closing = self._closing
        if len(closing) >= self._prune_at:  # (amortised: when the map has doubled)
            closing = self._closing = {k: f for k, f in closing.items() if not f.done()}
            self._prune_at = max(64, 2 * len(closing))
        closing[hex_id] = _CLOSER.submit(storage.close)

    def wait_closed(self, hex_id: str) -> None:
        """Wait for the close of an object's file evicted a moment ago, if any."""
        closing = self._closing.pop(hex_id, None)
        if closing is not None:
            closing.result()

    def close(self) -> None:
        for actor in self._actors.values():
            actor.evict()
        self._actors.clear()
        for pending in self._closing.values():
            pending.result()
        self._closing.clear()
        if self._index is not None:
            self._index.close()
            self._index = None

    def object_path(self, id: DurableObjectId) -> Path:
        return self.folder / f"{id._hex}.sqlite3"


class DurableObjectStub:
    """A stub: `await stub.fetch(request)` and `await stub.<method>(...)` (RPC)."""

    __slots__ = ("_ns", "id")

    def __init__(self, ns: LocalDurableObjectNamespace, id: DurableObjectId) -> None:
        self._ns = ns
        self.id = id

    @property
    def name(self) -> str | None:
        return self.id.name

    async def fetch(
        self,
        request: Request | str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> Response:
        if isinstance(request, str):
            request = Request(request, method, headers, body)
        return await self._ns.fetch(self.id, request)

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("__"):
            raise AttributeError(method)
        ns, id = self._ns, self.id

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await ns.rpc(id, method, args, kwargs)

        call.__name__ = method
        return call

    def __repr__(self) -> str:
        return f"<DurableObjectStub {self._ns.class_name} {self.id}>"

    def __copy__(self) -> DurableObjectStub:
        return self  # a stub is a reference: passing it over RPC passes the reference

    def __deepcopy__(self, memo: dict[int, Any]) -> DurableObjectStub:
        return self


# -- one object's runtime record -----------------------------------------------------------
class _Actor:
    """What the runtime keeps for one id: the instance (if in memory), its storage, the
    input gate, and what survives hibernation (WebSockets, auto-response)."""

    def __init__(self, ns: LocalDurableObjectNamespace, id: DurableObjectId) -> None:
        self.ns = ns
        self.id = id
        self.instance: DurableObject | None = None
        self.state: LocalDurableObjectState | None = None
        self._storage: LocalStorage | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.closers = 0
        self.inflight = 0
        self.waiting = 0
        self.last_used = time.monotonic()
        self.sockets: list[WebSocket] = []
        self.auto_response: WebSocketRequestResponsePair | None = None
        self.alarm_running: int | None = None
        self.background: set[asyncio.Future[Any]] = set()
        self.generation = 0
        self.reset_reason: str | None = None

    def construct(self) -> None:
        cls = self.ns._class()
        self.state = LocalDurableObjectState(self)
        self.instance = cls(self.state, self.ns.runtime.env)
        self.ns.constructed += 1

    def storage(self) -> LocalStorage:
        if self._storage is None:
            self.ns.wait_closed(self.id._hex)
            self.ns.runtime.opening()
            try:
                self._storage = LocalStorage(self)
            except BaseException:
                self.ns.runtime.open_count -= 1
                raise
        return self._storage

    def close_gate(self) -> None:
        self.closers += 1
        self.gate.clear()

    def open_gate(self) -> None:
        self.closers -= 1
        if self.closers == 0:
            self.gate.set()

    def busy(self) -> bool:
        return bool(
            self.inflight
            or self.waiting
            or self.closers
            or self.alarm_running is not None
            or self.background
            or any(ws._tail is not None and not ws._tail.done() for ws in self.sockets)
        )

    def reset(self, reason: str) -> None:
        """Drop the instance (as Cloudflare does after an error in block_concurrency_while)."""
        self.instance = None
        self.state = None
        self.generation += 1
        self.reset_reason = reason

    def evict(self) -> None:
        self.instance = None
        self.state = None
        if self._storage is not None:
            self.ns.close_later(self.id._hex, self._storage)
            self._storage = None
            self.ns.runtime.open_count -= 1
        self.sockets = [ws for ws in self.sockets if ws.ready_state == WebSocket.OPEN]


# -- ctx -------------------------------------------------------------------------------------
class LocalDurableObjectState:
    """`ctx` as the object sees it (see `DurableObjectState` in platform.durable_objects)."""

    def __init__(self, actor: _Actor) -> None:
        self._actor = actor
        self.id = actor.id

    @property
    def storage(self) -> LocalStorage:
        return self._actor.storage()

    def block_concurrency_while(self, fn: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Hold every other event until `fn()` completes. Returns an awaitable, so it can
        be awaited in a method or just called from `__init__` (the gate closes at once)."""
        actor = self._actor
        actor.close_gate()
        generation = actor.generation
        timeout = actor.ns.runtime.block_timeout

        async def run() -> T:
            try:
                return await asyncio.wait_for(fn(), timeout)
            except BaseException as e:
                if actor.generation == generation:
                    what = "timed out" if isinstance(e, TimeoutError) else f"raised {e!r}"
                    actor.reset(f"block_concurrency_while() {what}")
                if isinstance(e, TimeoutError):
                    raise DurableObjectError(
                        f"block_concurrency_while() did not complete within {timeout:g} s; "
                        "the object was reset"
                    ) from None
                raise
            finally:
                actor.open_gate()

        task = asyncio.ensure_future(run())
        task.add_done_callback(_retrieve)
        return task

    def wait_until(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._actor.background.add(task)
        task.add_done_callback(self._actor.background.discard)
        task.add_done_callback(_retrieve)

    def abort(self, reason: str | None = None) -> None:
        self._actor.reset(reason or "ctx.abort()")

    # WebSockets (hibernation API)
    def accept_web_socket(self, ws: WebSocket, tags: Sequence[str] | None = None) -> None:
        actor = self._actor
        tag_list = list(tags or [])
        if len(tag_list) > MAX_TAGS:
            raise StorageLimitExceeded(
                f"a WebSocket may have at most {MAX_TAGS} tags; got {len(tag_list)}"
            )
        for tag in tag_list:
            if not isinstance(tag, str):
                raise TypeError("WebSocket tags must be strings")
            if len(tag) > MAX_TAG_CHARS:
                raise StorageLimitExceeded(
                    f"a WebSocket tag may be at most {MAX_TAG_CHARS} characters; got {len(tag)}"
                )
        if not isinstance(ws, WebSocket):
            raise TypeError("accept_web_socket() takes a WebSocket (an end of a WebSocketPair)")
        if ws in actor.sockets or ws._listener is not None:
            raise DurableObjectError("This WebSocket has already been accepted.")
        if ws.ready_state != WebSocket.OPEN:
            raise DurableObjectError("Can't accept a WebSocket that is already closed.")
        open_sockets = [s for s in actor.sockets if s.ready_state == WebSocket.OPEN]
        if len(open_sockets) >= MAX_WEB_SOCKETS:
            raise StorageLimitExceeded(
                f"a Durable Object may accept at most {MAX_WEB_SOCKETS:,} WebSockets"
            )
        ws._tags = tag_list
        actor.sockets = [*open_sockets, ws]
        ns = actor.ns
        ws._listener = lambda event: ns.socket_event(actor, ws, event)

    def get_web_sockets(self, tag: str | None = None) -> list[WebSocket]:
        return [
            ws
            for ws in self._actor.sockets
            if ws.ready_state == WebSocket.OPEN and (tag is None or tag in ws._tags)
        ]

    def get_tags(self, ws: WebSocket) -> list[str]:
        if ws not in self._actor.sockets:
            raise DurableObjectError("getTags() takes a WebSocket accepted by this object")
        return list(ws._tags)

    def set_web_socket_auto_response(
        self, pair: WebSocketRequestResponsePair | None = None
    ) -> None:
        self._actor.auto_response = pair

    def get_web_socket_auto_response(self) -> WebSocketRequestResponsePair | None:
        return self._actor.auto_response

    def get_web_socket_auto_response_timestamp(self, ws: WebSocket) -> datetime | None:
        return ws._auto_response_at


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


# -- storage --------------------------------------------------------------------------------
_CF_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_UPDATE,
        sqlite3.SQLITE_INSERT,
        sqlite3.SQLITE_DELETE,
        sqlite3.SQLITE_CREATE_TABLE,
        sqlite3.SQLITE_DROP_TABLE,
        sqlite3.SQLITE_ALTER_TABLE,
        sqlite3.SQLITE_CREATE_INDEX,
        sqlite3.SQLITE_DROP_INDEX,
        sqlite3.SQLITE_CREATE_TRIGGER,
        sqlite3.SQLITE_DROP_TRIGGER,
        sqlite3.SQLITE_CREATE_VIEW,
    }
)


def _transaction_refused() -> DurableObjectError:
    return DurableObjectError(f"{TRANSACTION_MESSAGE}: SQLITE_AUTH")


def _sql_error(exc: BaseException, guard: Guard) -> DurableObjectError:
    message = str(to_d1_error(exc, guard))
    for prefix in ("D1_ERROR: ", "D1_TYPE_ERROR: "):
        message = message.removeprefix(prefix)
    return DurableObjectError(message)


class LocalStorage:
    """`ctx.storage` on one SQLite file: `sql`, the key-value API, transactions, alarms."""

    def __init__(self, actor: _Actor) -> None:
        self._actor = actor
        ns = actor.ns
        ns.folder.mkdir(parents=True, exist_ok=True)
        path = ns.object_path(actor.id)
        new = _create_database(path)
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        # One process owns an object, as one machine does on Cloudflare: holding the file's
        # lock spares each transaction its lock calls (DO RPC +13-16% measured).
        self._conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        # A new file's first write, which starts its WAL, need not wait for the disk:
        # nothing acknowledged is in it (a new object: 1.9 ms -> 0.4 ms).
        self._guard = configure_connection(self._conn, synchronous="OFF" if new else "NORMAL")
        self._conn.set_authorizer(self._authorize)
        self._savepoints = 0
        self._txn_lock = asyncio.Lock()
        self._sql = LocalSqlStorage(self)
        if new:  # start the WAL; from then on, commits are as durable as D1's
            self._run("PRAGMA user_version=0")
            self._run("PRAGMA synchronous=NORMAL")
        if new or actor.id.name is not None:
            ns.register_object(actor.id)

    # plumbing ---------------------------------------------------------------------------------
    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, trig: str | None
    ) -> int:
        guard = self._guard
        if guard.internal:
            return sqlite3.SQLITE_OK
        verdict = guard.authorize(action, arg1, arg2, db, trig)
        if verdict != sqlite3.SQLITE_OK:
            return verdict
        if action in _CF_ACTIONS:
            for name in (arg1, arg2):
                if name and name[:4].lower() == _RESERVED_PREFIX.lower():
                    guard.refused = f"access to {arg1}{'.' + arg2 if arg2 else ''} is prohibited"
                    return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def _run(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        guard = self._guard
        guard.internal = True
        guard.deadline = math.inf
        try:
            return self._conn.execute(sql, params)
        finally:
            guard.internal = False

    def close(self) -> None:
        self._conn.close()

    @property
    def sql(self) -> LocalSqlStorage:
        if not self._actor.ns.sql_enabled:
            raise DurableObjectError(
                "SQL is not enabled for this Durable Object class; declare it in "
                "new_sqlite_classes of a [[migrations]] entry"
            )
        return self._sql

    # key-value API ------------------------------------------------------------------------------
    @staticmethod
    def _keys(keys: Sequence[str], op: str) -> list[str]:
        out = list(keys)
        if len(out) > MAX_KEYS_PER_CALL:
            raise StorageLimitExceeded(
                f"{op}() may be called with at most {MAX_KEYS_PER_CALL} keys; got {len(out)}"
            )
        for key in out:
            if not isinstance(key, str):
                raise TypeError(f"Durable Object storage keys must be strings, not {type(key)}")
        return out

    async def get(self, key: str | Sequence[str]) -> Any:
        if isinstance(key, str):
            row = self._run("SELECT value FROM _cf_KV WHERE key = ?", (key,)).fetchone()
            return None if row is None else pickle.loads(row[0])
        keys = self._keys(key, "get")
        rows = self._run(
            "SELECT key, value FROM _cf_KV WHERE key IN (SELECT value FROM json_each(?)) "
            "ORDER BY key",
            (_json_list(keys),),
        ).fetchall()
        return {k: pickle.loads(v) for k, v in rows}

    async def put(self, key: str | Mapping[str, Any], value: Any = None) -> None:
        if isinstance(key, str):
            entries: list[tuple[str, Any]] = [(key, value)]
        elif isinstance(key, Mapping):
            entries = list(key.items())
            self._keys([k for k, _ in entries], "put")
        else:
            raise TypeError("put() takes a key and a value, or a mapping of entries")
        rows = []
        for k, v in entries:
            if not isinstance(k, str):
                raise TypeError("Durable Object storage keys must be strings")
            blob = pickle.dumps(v, protocol=5)
            size = len(k.encode()) + len(blob)
            if size > MAX_ENTRY_BYTES:
                raise StorageLimitExceeded(
                    f"key + value of {size:,} bytes exceeds the {MAX_ENTRY_BYTES:,}-byte "
                    "limit of Durable Object storage"
                )
            rows.append((k, blob))
        big = any(len(k) + len(b) > MAX_ENTRY_BYTES - 1000 for k, b in rows)
        if big:  # the row limit of sql.exec must not cut an entry that is within 2 MB
            self._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_ENTRY_BYTES + 10_000)
        try:
            if len(rows) == 1:
                self._run("INSERT OR REPLACE INTO _cf_KV VALUES (?, ?)", rows[0])
            else:
                self._atomic(
                    lambda: self._conn_many("INSERT OR REPLACE INTO _cf_KV VALUES (?, ?)", rows)
                )
        finally:
            if big:
                self._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_ENTRY_BYTES)

    async def delete(self, key: str | Sequence[str]) -> bool | int:
        if isinstance(key, str):
            return self._run("DELETE FROM _cf_KV WHERE key = ?", (key,)).rowcount > 0
        keys = self._keys(key, "delete")
        return int(
            self._run(
                "DELETE FROM _cf_KV WHERE key IN (SELECT value FROM json_each(?))",
                (_json_list(keys),),
            ).rowcount
        )

    async def list(
        self,
        *,
        start: str | None = None,
        start_after: str | None = None,
        end: str | None = None,
        prefix: str | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> dict[str, Any]:
        where: list[str] = []
        params: list[Any] = []
        if start is not None:
            where.append("key >= ?")
            params.append(start)
        if start_after is not None:
            where.append("key > ?")
            params.append(start_after)
        if end is not None:
            where.append("key < ?")
            params.append(end)
        if prefix:
            where.append("key >= ? AND substr(key, 1, ?) = ?")
            params += [prefix, len(prefix), prefix]
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise DurableObjectError("list() limit must be a positive integer")
        sql = "SELECT key, value FROM _cf_KV"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY key" + (" DESC" if reverse else "")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return {k: pickle.loads(v) for k, v in self._run(sql, params).fetchall()}

    async def delete_all(self) -> None:
        """Delete every key and every SQL table, index, view and trigger (not the alarm)."""
        names = self._run(
            "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view', 'trigger') "
            "AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        ).fetchall()
        self._run("PRAGMA foreign_keys = OFF")
        try:

            def drop() -> None:
                for kind, name in names:
                    quoted = '"' + name.replace('"', '""') + '"'
                    self._run(f"DROP {kind.upper()} IF EXISTS {quoted}")
                self._run("DELETE FROM _cf_KV")

            self._atomic(drop)
        finally:
            self._run("PRAGMA foreign_keys = ON")

    async def sync(self) -> None:
        """Every write is already durable when it returns."""

    # transactions -------------------------------------------------------------------------------
    def _atomic(self, fn: Callable[[], T]) -> T:
        self._savepoints += 1
        name = f"flarebase_sp_{self._savepoints}"
        self._run(f"SAVEPOINT {name}")
        try:
            result = fn()
        except BaseException:
            self._run(f"ROLLBACK TO {name}")
            self._run(f"RELEASE {name}")
            raise
        self._run(f"RELEASE {name}")
        return result

    def _conn_many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        guard = self._guard
        guard.internal = True
        guard.deadline = math.inf
        try:
            self._conn.executemany(sql, rows)
        finally:
            guard.internal = False

    async def transaction(self, fn: Callable[[LocalTransaction], Awaitable[T]]) -> T:
        """Run `await fn(txn)` atomically: an exception or `txn.rollback()` undoes every
        write made inside it (SQL included). No other event runs meanwhile."""
        nested = _in_transaction.get()
        actor = self._actor
        actor.close_gate()
        try:
            if nested:
                return await self._transaction(fn)
            async with self._txn_lock:
                token = _in_transaction.set(True)
                try:
                    return await self._transaction(fn)
                finally:
                    _in_transaction.reset(token)
        finally:
            actor.open_gate()

    async def _transaction(self, fn: Callable[[LocalTransaction], Awaitable[T]]) -> T:
        self._savepoints += 1
        name = f"flarebase_txn_{self._savepoints}"
        self._run(f"SAVEPOINT {name}")
        txn = LocalTransaction(self)
        try:
            result = await fn(txn)
        except BaseException:
            self._run(f"ROLLBACK TO {name}")
            self._run(f"RELEASE {name}")
            raise
        if txn.rolled_back:
            self._run(f"ROLLBACK TO {name}")
        self._run(f"RELEASE {name}")
        return result

    def transaction_sync(self, fn: Callable[[], T]) -> T:
        """Run `fn()` atomically: if it raises, its writes are rolled back."""
        return self._atomic(fn)

    # alarms ---------------------------------------------------------------------------------
    def alarm_ms(self) -> int | None:
        row = self._run("SELECT value FROM _cf_METADATA WHERE key = 'alarm'").fetchone()
        return None if row is None else int(row[0])

    def clear_alarm(self) -> None:
        self._run("DELETE FROM _cf_METADATA WHERE key = 'alarm'")

    async def get_alarm(self) -> int | None:
        at = self.alarm_ms()
        if at is not None and self._actor.alarm_running == at:
            return None  # as on Cloudflare: no alarm is pending while it runs
        return at

    async def set_alarm(self, scheduled_time: datetime | int | float) -> None:
        at = to_epoch_ms(scheduled_time)
        self._actor.ns.alarm_written(self._actor.id._hex, at)
        self._run("INSERT OR REPLACE INTO _cf_METADATA (key, value) VALUES ('alarm', ?)", (at,))

    async def delete_alarm(self) -> None:
        self.clear_alarm()  # a stale wake-up entry is dropped when it comes due

    @property
    def database_size(self) -> int:
        return self._sql.database_size


class LocalTransaction:
    """The `txn` passed to `storage.transaction(fn)`: the storage API plus `rollback()`."""

    def __init__(self, storage: LocalStorage) -> None:
        self.rolled_back = False
        self.sql = storage._sql
        self.get = storage.get
        self.put = storage.put
        self.delete = storage.delete
        self.list = storage.list
        self.get_alarm = storage.get_alarm
        self.set_alarm = storage.set_alarm
        self.delete_alarm = storage.delete_alarm

    def rollback(self) -> None:
        self.rolled_back = True


class LocalSqlStorage:
    """`ctx.storage.sql`."""

    def __init__(self, storage: LocalStorage) -> None:
        self._storage = storage

    def exec(self, query: str, *bindings: Any) -> SqlStorageCursor:
        """Run `query` (several statements allowed; bindings go to the last one)."""
        if not isinstance(query, str):
            raise TypeError("sql.exec() takes a query string")
        conn = self._storage._conn
        guard = self._storage._guard
        try:
            params = check_bindable(bindings)
        except D1Error as e:
            raise DurableObjectError(str(e).removeprefix("D1_TYPE_ERROR: ")) from None
        guard.arm()
        before = conn.total_changes
        # Several statements need a semicolon between them (a script is split first).
        statements = script_statements(query) if ";" in query.rstrip(" \t\r\n;") else [query]
        try:
            if any(is_transaction(statement) for statement in statements):
                raise _transaction_refused()
            for statement in statements[:-1]:
                conn.execute(statement)
            cur = conn.execute(statements[-1] if statements else "", params)
            rows = cur.fetchall()
        except (sqlite3.Error, OverflowError) as e:
            raise _sql_error(e, guard) from None
        columns = [d[0] for d in cur.description] if cur.description else []
        return SqlStorageCursor(columns, rows, conn.total_changes - before)

    @property
    def database_size(self) -> int:
        page_count = self._storage._run("PRAGMA page_count").fetchone()[0]
        page_size = self._storage._run("PRAGMA page_size").fetchone()[0]
        return int(page_count * page_size)


def _json_list(items: list[str]) -> str:
    return json.dumps(items)


# -- inspection (for the CLI: `flarebase do list`) -----------------------------------------
@dataclass(frozen=True, slots=True)
class ObjectInfo:
    class_name: str
    id: str
    name: str | None
    size_bytes: int  # the SQLite file and its WAL
    alarm_ms: int | None


def list_objects(state_dir: str | Path, class_name: str | None = None) -> list[ObjectInfo]:
    """Stored objects by class (those that ever opened their storage), with sizes."""
    root = Path(state_dir) / "do"
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if class_name is not None and folder.name != class_name:
            continue
        names: dict[str, str | None] = {}
        index = folder / "_index.sqlite3"
        if index.exists():
            with _connection(index) as conn:
                names = dict(conn.execute("SELECT id, name FROM objects").fetchall())
        for path in sorted(folder.glob("*.sqlite3")):
            if path.name.startswith("_"):
                continue
            size = sum(f.stat().st_size for f in (path, Path(f"{path}-wal")) if f.exists())
            with _connection(path) as conn:
                row = conn.execute("SELECT value FROM _cf_METADATA WHERE key = 'alarm'").fetchone()
            alarm = None if row is None else int(row[0])
            out.append(ObjectInfo(folder.name, path.stem, names.get(path.stem), size, alarm))
    return out


class _connection:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=5)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
