"""D1 through the bridge: the same API and result types as the local D1.

Results are the binding's own, passed through by the Worker (numbers are
JavaScript doubles there, so integers beyond 2**53 come back rounded, as in a
Worker). Arguments are checked here only where Python and JavaScript differ: a
value JSON cannot carry faithfully (an int beyond 64 bits, which JavaScript would
silently turn into a float) is refused with D1's D1_TYPE_ERROR.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from .. import invocation
from ..d1 import D1ExecResult, D1Meta, D1Result
from ..errors import D1Error
from .client import BridgeClient, OpError

_META_FIELDS = frozenset(f.name for f in fields(D1Meta))
_CODE = re.compile(r"^(D1_[A-Z_]+):")
# Statements that only read: safe to repeat after a lost answer.
_READ_ONLY = re.compile(r"^\s*(SELECT|VALUES|EXPLAIN)\b", re.IGNORECASE)


def d1_error(error: OpError) -> D1Error:
    """D1's message unchanged; `code` is its D1_* prefix."""
    match = _CODE.match(error.message)
    code = match.group(1) if match else ("D1_TYPE_ERROR" if error.name == "TypeError" else None)
    message = error.message if match else f"D1_ERROR: {error.message}"
    return D1Error(message, code=code or "D1_ERROR")


def _bindable(value: Any) -> Any:
    if value is None or isinstance(value, bool | float | str | bytes):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise D1Error(
                f"D1_TYPE_ERROR: integer {value} does not fit in 64 bits", code="D1_TYPE_ERROR"
            )
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise D1Error(
        f"D1_TYPE_ERROR: Type '{type(value).__name__}' not supported for value {value!r}",
        code="D1_TYPE_ERROR",
    )


def _result(raw: dict[str, Any]) -> D1Result:
    meta = {k: v for k, v in (raw.get("meta") or {}).items() if k in _META_FIELDS}
    return D1Result(raw.get("results") or [], bool(raw.get("success", True)), D1Meta(**meta))


class BridgeD1:
    """The `D1Database` binding of the bridge Worker named `binding`."""

    def __init__(self, client: BridgeClient, binding: str) -> None:
        self._client = client
        self.binding = binding

    def prepare(self, query: str) -> BridgeStatement:
        if not isinstance(query, str):
            raise D1Error(
                f"D1_TYPE_ERROR: query must be a string, not {type(query).__name__}",
                code="D1_TYPE_ERROR",
            )
        return BridgeStatement(self, query, ())

    async def batch(self, statements: Iterable[BridgeStatement]) -> list[D1Result]:
        """Run statements in one transaction on D1; any failure rolls back all of them."""
        statements = list(statements)
        for stmt in statements:
            if not isinstance(stmt, BridgeStatement) or stmt._db is not self:
                raise D1Error(
                    "D1_TYPE_ERROR: batch() takes statements prepared on this database",
                    code="D1_TYPE_ERROR",
                )
        invocation.count("d1", len(statements))
        op = {
            "op": "d1.batch",
            "binding": self.binding,
            "statements": [{"sql": s.sql, "params": s.params} for s in statements],
        }
        idempotent = all(_READ_ONLY.match(s.sql) for s in statements)
        results = await self._call(op, idempotent)
        return [_result(r) for r in results]

    async def exec(self, query: str) -> D1ExecResult:
        """Run one or more statements without bindings (D1's `exec`)."""
        if not isinstance(query, str):
            raise D1Error("D1_TYPE_ERROR: query must be a string", code="D1_TYPE_ERROR")
        invocation.count("d1")
        raw = await self._call({"op": "d1.exec", "binding": self.binding, "sql": query}, False)
        return D1ExecResult(count=int(raw["count"]), duration=float(raw["duration"]))

    async def dump(self) -> bytes:
        """The database as an SQLite file image (deprecated by Cloudflare)."""
        data = await self._call({"op": "d1.dump", "binding": self.binding}, True)
        return bytes(data)

    async def aclose(self) -> None:
        pass  # the client is the provider's

    async def _call(self, op: dict[str, Any], idempotent: bool) -> Any:
        try:
            return await self._client.call(op, d1_error, idempotent=idempotent)
        except ValueError as e:  # not representable as JSON (NaN, lone surrogates)
            raise D1Error(f"D1_TYPE_ERROR: {e}", code="D1_TYPE_ERROR") from None


class BridgeStatement:
    """A `D1PreparedStatement`: immutable; `bind` returns a new statement."""

    __slots__ = ("_db", "params", "sql")

    def __init__(self, db: BridgeD1, sql: str, params: tuple[Any, ...]) -> None:
        self._db = db
        self.sql = sql
        self.params = params

    def bind(self, *values: Any) -> BridgeStatement:
        return BridgeStatement(self._db, self.sql, tuple(_bindable(v) for v in values))

    def _op(self, name: str, **extra: Any) -> dict[str, Any]:
        return {
            "op": name,
            "binding": self._db.binding,
            "sql": self.sql,
            "params": self.params,
            **extra,
        }

    async def _run(self, op: dict[str, Any]) -> Any:
        invocation.count("d1")
        return await self._db._call(op, bool(_READ_ONLY.match(self.sql)))

    async def first(self, column: str | None = None) -> Any:
        if column is None:
            return await self._run(self._op("d1.first"))
        return await self._run(self._op("d1.first", column=column))

    async def all(self) -> D1Result:
        return _result(await self._run(self._op("d1.all")))

    async def run(self) -> D1Result:
        return _result(await self._run(self._op("d1.run")))

    async def raw(self, column_names: bool = False) -> list[list[Any]]:
        rows: list[list[Any]] = await self._run(self._op("d1.raw", columnNames=column_names))
        return rows
