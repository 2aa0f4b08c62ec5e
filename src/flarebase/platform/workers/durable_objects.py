"""Durable Object namespaces and stubs inside a Python Worker, with the `local` API.

`env.ROOMS.id_from_name("lobby")`, `new_unique_id()`, `id_from_string(hex)`,
`get(id)` and `get_by_name(name)` give stubs; `await stub.fetch(url_or_request)`
returns flarebase's `Response`, and `await stub.<method>(...)` calls the object over
RPC. Namespaces and stubs may be raw JS objects or the Workers SDK's wrappers
(which convert dicts to Maps): the adapter unwraps them and converts itself, so
RPC arguments are plain objects (dicts as Objects, bytes as Uint8Arrays, None as
null) and results come back as plain Python, nulls as None.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..durable_objects import DurableObjectId, Request, Response
from ..errors import DurableObjectError
from ._ffi import JsException, attr, require_runtime, to_bytes, to_js_bytes, to_js_value, to_py
from .env import unwrap
from .errors import durable_object_error


class WorkersDurableObjectId(DurableObjectId):
    """A DurableObjectId that keeps the runtime's id object."""

    __slots__ = ("_js",)

    def __init__(self, js_id: Any, name: str | None = None) -> None:
        super().__init__(str(js_id.toString()), name)
        self._js = js_id


class WorkersDurableObjectNamespace:
    """A `DurableObjectNamespace` binding of a Worker."""

    def __init__(self, binding: Any) -> None:
        self._js = unwrap(binding)

    def id_from_name(self, name: str) -> WorkersDurableObjectId:
        if not isinstance(name, str):
            raise TypeError("id_from_name() takes a string")
        return WorkersDurableObjectId(self._call("idFromName", name), name)

    def new_unique_id(self, jurisdiction: str | None = None) -> WorkersDurableObjectId:
        options = to_js_value({"jurisdiction": jurisdiction}) if jurisdiction else None
        js_id = self._call("newUniqueId", options) if options else self._call("newUniqueId")
        return WorkersDurableObjectId(js_id)

    def id_from_string(self, hex_id: str) -> WorkersDurableObjectId:
        if not isinstance(hex_id, str):
            raise TypeError("id_from_string() takes a string")
        return WorkersDurableObjectId(self._call("idFromString", hex_id))

    def get(
        self, id: DurableObjectId, location_hint: str | None = None
    ) -> WorkersDurableObjectStub:
        if not isinstance(id, DurableObjectId):
            raise TypeError("get() takes a DurableObjectId (use id_from_name or id_from_string)")
        js_id = (
            id._js
            if isinstance(id, WorkersDurableObjectId)
            else self._call("idFromString", str(id))
        )
        if location_hint is not None:
            stub = self._call("get", js_id, to_js_value({"locationHint": location_hint}))
        else:
            stub = self._call("get", js_id)
        return WorkersDurableObjectStub(stub, id)

    def get_by_name(self, name: str) -> WorkersDurableObjectStub:
        return self.get(self.id_from_name(name))

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._js, method)(*args)
        except JsException as e:
            raise durable_object_error(e) from None


def _js_request(request: Request) -> Any:
    runtime = require_runtime()
    init = to_js_value({"method": request.method, "headers": dict(request.headers)})
    if request.body and request.method not in ("GET", "HEAD"):
        init.body = to_js_bytes(request.body)
    return runtime.Request.new(request.url, init)


async def _response(js_response: Any) -> Response:
    headers = {str(pair[0]): str(pair[1]) for pair in js_response.headers.entries()}
    body = to_bytes(await js_response.arrayBuffer())
    if attr(js_response, "webSocket") is not None:
        raise DurableObjectError(
            "WebSocket upgrades through a stub are not supported by the workers adapter yet"
        )
    return Response(body, int(js_response.status), headers)


class WorkersDurableObjectStub:
    """A stub: `await stub.fetch(request)` and `await stub.<method>(...)` (RPC)."""

    __slots__ = ("_js", "id")

    def __init__(self, js_stub: Any, id: DurableObjectId) -> None:
        self._js = unwrap(js_stub)
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
        try:
            js_response = await self._js.fetch(_js_request(request))
            return await _response(js_response)
        except JsException as e:
            raise durable_object_error(e) from None

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)
        js_stub = self._js

        async def call(*args: Any, **kwargs: Any) -> Any:
            if kwargs:
                raise TypeError(
                    f"{method}(): Workers RPC takes positional arguments only; "
                    "pass a dict for named values"
                )
            try:
                js_args = [to_js_value(a) for a in args]
            except (TypeError, ValueError) as e:
                raise DurableObjectError(
                    f"{method}(): argument cannot be sent over RPC: {e}"
                ) from None
            try:
                result = await getattr(js_stub, method)(*js_args)
            except JsException as e:
                raise durable_object_error(e) from None
            return to_py(result)

        call.__name__ = method
        return call

    def __repr__(self) -> str:
        return f"<WorkersDurableObjectStub {self.id}>"
