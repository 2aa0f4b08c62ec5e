"""Durable Object storage through the bridge: the storage of the bridge's own object
class, `FlarebaseObject` (bound as BRIDGE_OBJECTS in bridge/wrangler.toml), one object
per name, driven from Python.

    storage = BridgeObjectStorage(provider.client, "room:lobby")
    await storage.put("topic", "hello")
    cursor = await storage.sql("SELECT count(*) AS n FROM messages")
    await storage.atomically([("put", "a", 1), ("delete", "b")])

Calls mirror `ctx.storage` (get/put/delete/delete_all/list, alarms, `sql.exec`), except
that every call is awaited: the storage is across the network, so `sql` cannot be the
synchronous `sql.exec` of an object's own storage, and a transaction is a list of calls
sent together (`atomically`) rather than a callback. Values are what JSON carries, plus
bytes. Python Durable Object classes themselves run in the local provider.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ..durable_objects import (
    SqlStorageCursor,
    UnreachableNamespace,
    list_options,
    to_epoch_ms,
)
from ..errors import DurableObjectError
from .client import BridgeClient, OpError


class BridgeDurableObjectNamespace(UnreachableNamespace):
    """A `[[durable_objects.bindings]]` entry seen through the bridge: its classes are
    Workers' own (or Python classes hosted by the local provider), which the bridge does
    not reach; using it says so. The bridge's own storage is `BridgeObjectStorage`."""

    def __init__(self, binding: str, class_name: str) -> None:
        super().__init__(
            binding,
            class_name,
            "the bridge provider does not reach Durable Object classes (Python classes run "
            "in the local provider); it exposes the storage of its own FlarebaseObject class "
            "as BridgeObjectStorage",
        )


def do_error(error: OpError) -> DurableObjectError:
    return DurableObjectError(error.message)


class BridgeObjectStorage:
    """The storage of one `FlarebaseObject`, named `name` (or with the 64-hex `id`)."""

    def __init__(
        self,
        client: BridgeClient,
        name: str | None = None,
        *,
        id: str | None = None,
        binding: str = "BRIDGE_OBJECTS",
    ) -> None:
        if (name is None) == (id is None):
            raise DurableObjectError("give the object's name or its id, not both")
        self._client = client
        self.binding = binding
        self.name = name
        self.id = id

    async def _calls(
        self, calls: builtins.list[dict[str, Any]], transaction: bool = False
    ) -> builtins.list[Any]:
        op: dict[str, Any] = {"op": "do.storage", "binding": self.binding, "calls": calls}
        op |= {"name": self.name} if self.name is not None else {"id": self.id}
        if transaction:
            op["transaction"] = True
        try:
            # Storage writes are idempotent (put/delete of the same keys), SQL may not be.
            idempotent = all(c["method"] != "sql" for c in calls)
            results: builtins.list[Any] = await self._client.call(
                op, do_error, idempotent=idempotent
            )
        except (TypeError, ValueError) as e:
            message = f"Durable Object storage values must be JSON or bytes: {e}"
            raise DurableObjectError(message) from None
        return results

    async def _one(self, method: str, *args: Any) -> Any:
        [result] = await self._calls([{"method": method, "args": list(args)}])
        return result

    # -- the key-value API ---------------------------------------------------------------------
    async def get(self, key: str | Sequence[str]) -> Any:
        """The value of `key` (None if absent); for a list of keys, a dict of those present."""
        return await self._one("get", key if isinstance(key, str) else list(key))

    async def put(self, key: str | Mapping[str, Any], value: Any = None) -> None:
        if isinstance(key, Mapping):
            await self._one("put", dict(key))
        else:
            await self._one("put", key, value)

    async def delete(self, key: str | Sequence[str]) -> bool | int:
        result: bool | int = await self._one("delete", key if isinstance(key, str) else list(key))
        return result

    async def delete_all(self) -> None:
        await self._one("deleteAll")

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
        entries = await self._one("list", options)
        return {key: value for key, value in entries}

    # -- alarms --------------------------------------------------------------------------------
    async def get_alarm(self) -> int | None:
        result: int | None = await self._one("getAlarm")
        return result

    async def set_alarm(self, scheduled_time: datetime | int | float) -> None:
        await self._one("setAlarm", to_epoch_ms(scheduled_time))

    async def delete_alarm(self) -> None:
        await self._one("deleteAlarm")

    # -- SQL and transactions ------------------------------------------------------------------
    async def sql(self, query: str, *bindings: Any) -> SqlStorageCursor:
        """`ctx.storage.sql.exec(query, *bindings)`, awaited."""
        raw = await self._one("sql", query, *bindings)
        return _cursor(raw)

    async def atomically(self, calls: Sequence[tuple[Any, ...]]) -> builtins.list[Any]:
        """Run calls such as ("put", key, value), ("delete", key), ("get", key) or
        ("sql", query, *bindings) in one storage transaction: all of them or none."""
        wire = []
        for call in calls:
            method, *args = call
            if method == "delete_all":
                raise DurableObjectError("delete_all cannot run inside a transaction")
            wire.append({"method": method, "args": args})
        results = await self._calls(wire, transaction=True)
        return [
            _cursor(r) if call[0] == "sql" else r for call, r in zip(calls, results, strict=True)
        ]


def _cursor(raw: dict[str, Any]) -> SqlStorageCursor:
    cursor = SqlStorageCursor(
        list(raw["columns"]), [tuple(row) for row in raw["rows"]], int(raw["rowsWritten"])
    )
    cursor.rows_read = int(raw["rowsRead"])
    return cursor
