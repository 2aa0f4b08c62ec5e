"""What the generated Worker entry point (`src/entry.py`) runs: the ASGI app behind
`fetch`, flarebase's queue consumers behind `queue`, and flarebase's Durable Object
classes hosted on the runtime's `DurableObject`.

Nothing here does I/O at import time (a Python Worker's imports are snapshotted at
deploy): the app is created on the first request, consumers and classes are
imported by their "module:name" the first time they are needed.

Durable Objects: `DurableObjectHost` builds the flarebase object (a subclass of
`flarebase.platform.durable_objects.DurableObject`) with `WorkersDurableObjectState`,
which gives the runtime's `ctx` the Python API the local provider gives:
`storage.sql.exec(...)` (synchronous, as in Workers), `storage.get/put/delete/list`,
alarms, `block_concurrency_while` and `wait_until`. Not yet adapted: WebSockets
(the hibernation API) and `storage.transaction()`; they raise DurableObjectError.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..durable_objects import (
    DurableObjectId,
    Request,
    SqlStorageCursor,
    list_options,
    to_epoch_ms,
)
from ..errors import DurableObjectError
from ._ffi import JsException, attr, require_runtime, to_bytes, to_js_bytes, to_js_value, to_py
from .d1 import _js_value as _sql_value
from .durable_objects import WorkersDurableObjectId
from .env import WorkersEnv, wrap_env
from .errors import durable_object_error
from .queues import dispatch_batch


def load(target: str | Callable[..., Any]) -> Any:
    """`"package.module:name"` -> the object (callables pass through)."""
    if not isinstance(target, str):
        return target
    module, sep, name = target.partition(":")
    if not sep:
        raise ValueError(f"{target!r}: expected 'module:name'")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


# -- fetch ----------------------------------------------------------------------------------------


class App:
    """The ASGI app, made by `factory(env)` on the first request (not at import)."""

    def __init__(self, factory: str | Callable[[Any], Any], kinds: Mapping[str, str]) -> None:
        self._factory = factory
        self._kinds = dict(kinds)
        self._app: Any = None
        self._env: WorkersEnv | None = None

    def env(self, js_env: Any) -> WorkersEnv:
        if self._env is None or self._env.raw is not _raw(js_env):
            self._env = wrap_env(js_env, self._kinds)
        return self._env

    def app(self, env: WorkersEnv) -> Any:
        if self._app is None:
            self._app = load(self._factory)(env)
        return self._app

    async def fetch(self, request: Any, js_env: Any, ctx: Any = None) -> Any:
        """Hand the request to the app through the runtime's ASGI adapter; the wrapped
        env is the app's and `request.scope["env"]`. With the entrypoint's `ctx`, an
        adapter that takes it streams the body (a chat's SSE) instead of buffering
        the whole response."""
        import asgi  # type: ignore[import-not-found]  # the Python Workers runtime's adapter

        env = self.env(js_env)
        args = [self.app(env), getattr(request, "js_object", request), env]
        if ctx is not None and _takes_ctx(asgi.fetch):
            args.append(ctx)
        return await asgi.fetch(*args)


@functools.cache  # (once, not on every request)
def _takes_ctx(fetch: Callable[..., Any]) -> bool:
    return "ctx" in inspect.signature(fetch).parameters


def _raw(js_env: Any) -> Any:
    from .env import unwrap

    return unwrap(js_env)


# -- queue ----------------------------------------------------------------------------------------


async def serve_queue(
    batch: Any,
    js_env: Any,
    consumers: Mapping[str, str | Callable[..., Any]],
    kinds: Mapping[str, str] | None = None,
) -> None:
    """Dispatch a batch to the consumer registered for its queue (by queue name)."""
    queue = str(attr(batch, "queue", ""))
    target = consumers.get(queue)
    if target is None:
        raise LookupError(
            f"no consumer for queue {queue!r}; consumers: {', '.join(consumers) or 'none'}"
        )
    env = wrap_env(js_env, kinds)
    await dispatch_batch(batch, env, load(target))


# -- Durable Objects -----------------------------------------------------------------------------


class WorkersSqlStorage:
    """`ctx.storage.sql`: `exec(query, *bindings)` -> the shared SqlStorageCursor."""

    def __init__(self, js_sql: Any) -> None:
        self._js = js_sql

    def exec(self, query: str, *bindings: Any) -> SqlStorageCursor:
        args = [_sql_value(b) for b in bindings]
        try:
            cursor = self._js.exec(query, *args)
            columns = [str(c) for c in cursor.columnNames]
            rows = [tuple(to_py(row)) for row in cursor.raw()]  # BLOBs: bytes
            written = int(attr(cursor, "rowsWritten", 0))
        except JsException as e:
            raise durable_object_error(e) from None
        return SqlStorageCursor(columns, rows, written)

    @property
    def database_size(self) -> int:
        return int(attr(self._js, "databaseSize", 0))


class WorkersStorage:
    """`ctx.storage`: the key-value API, SQL and alarms of the runtime's storage."""

    def __init__(self, js_storage: Any) -> None:
        self._js = js_storage
        self.sql = WorkersSqlStorage(js_storage.sql)

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._js, method)(*args)
        except JsException as e:
            raise durable_object_error(e) from None

    async def get(self, key: str | Sequence[str]) -> Any:
        if isinstance(key, str):
            return to_py(await self._call("get", key))
        return to_py(await self._call("get", to_js_value(list(key))))

    async def put(self, key: str | Mapping[str, Any], value: Any = None) -> None:
        if isinstance(key, Mapping):
            await self._call("put", to_js_value(dict(key)))
        else:
            await self._call("put", key, to_js_value(value))

    async def delete(self, key: str | Sequence[str]) -> bool | int:
        if isinstance(key, str):
            return bool(await self._call("delete", key))
        return int(await self._call("delete", to_js_value(list(key))))

    async def delete_all(self) -> None:
        await self._call("deleteAll")

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
        options = list_options(start, start_after, end, prefix, reverse, limit)
        result = await self._call("list", to_js_value(options))
        return dict(to_py(result) or {})

    async def transaction(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        raise DurableObjectError(
            "storage.transaction() is not supported by the workers adapter yet; "
            "use SQL (each exec is atomic) or transaction_sync()"
        )

    def transaction_sync(self, fn: Callable[[], Any]) -> Any:
        from pyodide.ffi import create_once_callable  # type: ignore[import-not-found]

        result: list[Any] = []

        def run() -> None:
            result.append(fn())

        try:
            self._js.transactionSync(create_once_callable(run))
        except JsException as e:
            raise durable_object_error(e) from None
        return result[0] if result else None

    async def get_alarm(self) -> int | None:
        value = to_py(await self._call("getAlarm"))
        return None if value is None else int(value)

    async def set_alarm(self, scheduled_time: datetime | int | float) -> None:
        await self._call("setAlarm", to_epoch_ms(scheduled_time))

    async def delete_alarm(self) -> None:
        await self._call("deleteAlarm")


class WorkersDurableObjectState:
    """The runtime's `ctx`, with the Python API of flarebase's DurableObjectState."""

    def __init__(self, js_ctx: Any) -> None:
        self._js = js_ctx
        self.id: DurableObjectId = WorkersDurableObjectId(js_ctx.id, attr(js_ctx.id, "name"))
        self.storage = WorkersStorage(js_ctx.storage)

    def block_concurrency_while(self, fn: Callable[[], Awaitable[Any]]) -> Awaitable[Any]:
        from pyodide.ffi import create_once_callable

        return self._js.blockConcurrencyWhile(  # type: ignore[no-any-return]
            create_once_callable(lambda: asyncio.ensure_future(fn()))
        )

    def wait_until(self, awaitable: Awaitable[Any]) -> None:
        self._js.waitUntil(asyncio.ensure_future(awaitable))

    def abort(self, reason: str | None = None) -> None:
        self._js.abort(reason) if reason is not None else self._js.abort()

    def _no_web_sockets(self, *args: Any, **kwargs: Any) -> Any:
        raise DurableObjectError(
            "WebSockets (the hibernation API) are not supported by the workers adapter yet"
        )

    accept_web_socket = _no_web_sockets
    get_web_sockets = _no_web_sockets
    get_tags = _no_web_sockets
    set_web_socket_auto_response = _no_web_sockets
    get_web_socket_auto_response = _no_web_sockets
    get_web_socket_auto_response_timestamp = _no_web_sockets


def rpc_methods(cls: type) -> list[str]:
    """The methods of a flarebase DurableObject class callable over RPC (public, not events)."""
    from ..durable_objects import RESERVED_METHODS

    return [
        name
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name not in RESERVED_METHODS
    ]


class DurableObjectHost:
    """Hosts one flarebase Durable Object on the runtime's `DurableObject` (see entry.py)."""

    def __init__(
        self,
        cls: str | type,
        js_ctx: Any,
        js_env: Any,
        kinds: Mapping[str, str] | None = None,
    ) -> None:
        self.obj = load(cls)(WorkersDurableObjectState(js_ctx), wrap_env(js_env, kinds))

    async def call(self, method: str, args: Sequence[Any]) -> Any:
        result = getattr(self.obj, method)(*[to_py(a) for a in args])
        if inspect.isawaitable(result):
            result = await result
        return to_js_value(result)

    async def fetch(self, js_request: Any) -> Any:
        js_request = getattr(js_request, "js_object", js_request)
        body = to_bytes(await js_request.arrayBuffer())
        headers = {str(p[0]): str(p[1]) for p in js_request.headers.entries()}
        request = Request(str(js_request.url), str(js_request.method), headers, body)
        response = await self.obj.fetch(request)
        runtime = require_runtime()
        init = to_js_value({"status": response.status, "headers": dict(response.headers)})
        return runtime.Response.new(to_js_bytes(response.body) if response.body else None, init)

    async def alarm(self, *args: Any) -> None:
        from ..durable_objects import AlarmInvocationInfo

        info = to_py(args[0]) if args else None
        if isinstance(info, dict):
            alarm_info = AlarmInvocationInfo(
                retry_count=int(info.get("retryCount", 0)), is_retry=bool(info.get("isRetry"))
            )
            await self.obj.alarm(alarm_info)
        else:
            await self.obj.alarm()
