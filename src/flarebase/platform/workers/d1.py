"""D1 inside a Python Worker: the runtime's `D1Database` binding, with the `local` API.

`WorkersD1.prepare(sql).bind(...).all() / first() / run() / raw()`, `batch` and
`exec` return the same `D1Result`/`D1Meta`/`D1ExecResult` as every provider.

Values are checked in Python before they cross, because the JS binding cannot
tell what they were: None is sent as `null` (not `undefined`), bytes as a
Uint8Array, and integers beyond 2**53 - 1 (which would become BigInts or lose
digits as JS numbers) are refused with a D1_TYPE_ERROR. BLOB columns, which come
back as lists of byte values, are returned as bytes.

A statement keeps its SQL and parameters in Python and builds the JS statement
when it runs, so `bind` costs nothing and a statement can be rebound freely.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..d1 import D1ExecResult, D1Meta, D1Result
from ..errors import D1Error
from ..invocation import count
from ._ffi import (
    JSNULL,
    JsException,
    is_safe_integer,
    js_int,
    to_js_array,
    to_js_bytes,
    to_js_object,
    to_py,
)
from .errors import d1_error

_META_FIELDS = (
    "duration",
    "changes",
    "last_row_id",
    "changed_db",
    "size_after",
    "rows_read",
    "rows_written",
    "served_by",
)


def _type_error(message: str) -> D1Error:
    return D1Error(f"D1_TYPE_ERROR: {message}", code="D1_TYPE_ERROR")


def _js_value(value: Any) -> Any:
    """One bound parameter as the JS value D1 expects; refuse what would change silently."""
    if value is None:
        return JSNULL  # None itself would cross as `undefined`, which D1 refuses
    if isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        if not is_safe_integer(value):
            raise _type_error(
                f"integer {value} is beyond JavaScript's safe integer range (2**53 - 1): "
                "D1 in a Worker cannot bind it exactly; bind it as a string or a float"
            )
        return js_int(value)
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as e:
            raise _type_error(
                f"string parameter has a lone surrogate at index {e.start} and no UTF-8 form; "
                "Cloudflare would store U+FFFD instead"
            ) from None
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return to_js_bytes(value)
    raise _type_error(f"Type '{type(value).__name__}' not supported for value {value!r}")


def _cell(value: Any) -> Any:
    """A result cell: BLOBs arrive as lists of byte values."""
    return bytes(value) if type(value) is list else value


def _row(row: dict[str, Any]) -> dict[str, Any]:
    for k, v in row.items():
        if type(v) is list:
            row[k] = bytes(v)
    return row


def _result(data: dict[str, Any]) -> D1Result:
    rows = data.get("results") or []
    for row in rows:
        _row(row)
    raw_meta = data.get("meta") or {}
    meta = D1Meta(**{k: raw_meta[k] for k in _META_FIELDS if raw_meta.get(k) is not None})
    return D1Result(rows, bool(data.get("success", True)), meta)


class WorkersD1:
    """The `D1Database` binding of a Worker, with the `local` provider's Python API."""

    def __init__(self, binding: Any) -> None:
        self._js = binding

    def prepare(self, query: str) -> WorkersStatement:
        if not isinstance(query, str):
            raise _type_error(f"query must be a string, not {type(query).__name__}")
        return WorkersStatement(self, query, ())

    async def batch(self, statements: Iterable[WorkersStatement]) -> list[D1Result]:
        """Run statements in one transaction; any failure rolls back all of them."""
        statements = list(statements)
        for stmt in statements:
            if not isinstance(stmt, WorkersStatement) or stmt._db is not self:
                raise _type_error("batch() takes statements prepared on this database")
        count("d1", len(statements))
        try:
            results = await self._js.batch(to_js_array([s._build() for s in statements]))
        except JsException as e:
            raise d1_error(e) from None
        return [_result(r) for r in to_py(results)]

    async def exec(self, query: str) -> D1ExecResult:
        """Run one or more statements without bindings (D1's `exec`)."""
        if not isinstance(query, str):
            raise _type_error(f"query must be a string, not {type(query).__name__}")
        count("d1")
        try:
            data = to_py(await self._js.exec(query))
        except JsException as e:
            raise d1_error(e) from None
        return D1ExecResult(count=int(data.get("count") or 0), duration=data.get("duration") or 0.0)

    async def dump(self) -> bytes:
        """The database as an SQLite file image (deprecated in D1; not on new databases)."""
        try:
            return bytes(to_py(await self._js.dump()))
        except JsException as e:
            raise d1_error(e) from None

    async def aclose(self) -> None:
        """Nothing to close: the runtime owns the binding."""


class WorkersStatement:
    """A `D1PreparedStatement`: immutable; `bind` returns a new statement."""

    __slots__ = ("_args", "_built", "_db", "params", "sql")

    def __init__(self, db: WorkersD1, sql: str, params: tuple[Any, ...]) -> None:
        self._db = db
        self.sql = sql
        self.params = params
        self._args = [_js_value(v) for v in params]
        self._built: Any = None

    def bind(self, *values: Any) -> WorkersStatement:
        return WorkersStatement(self._db, self.sql, values)

    def _build(self) -> Any:
        """The JS statement, made once (a D1 statement can run any number of times)."""
        if self._built is None:
            stmt = self._db._js.prepare(self.sql)
            self._built = stmt.bind(*self._args) if self._args else stmt
        return self._built

    async def first(self, column: str | None = None) -> Any:
        count("d1")
        try:
            stmt = self._build()
            value = await (stmt.first() if column is None else stmt.first(column))
        except JsException as e:
            raise d1_error(e) from None
        value = to_py(value)
        if column is None:
            return None if value is None else _row(value)
        return _cell(value)

    async def all(self) -> D1Result:
        count("d1")
        try:
            data = await self._build().all()
        except JsException as e:
            raise d1_error(e) from None
        return _result(to_py(data))

    async def run(self) -> D1Result:
        count("d1")
        try:
            data = await self._build().run()
        except JsException as e:
            raise d1_error(e) from None
        return _result(to_py(data))

    async def raw(self, column_names: bool = False) -> list[list[Any]]:
        count("d1")
        try:
            stmt = self._build()
            rows = await (
                stmt.raw(to_js_object({"columnNames": True})) if column_names else stmt.raw()
            )
        except JsException as e:
            raise d1_error(e) from None
        out = to_py(rows)
        for row in out[1:] if column_names else out:
            for i, v in enumerate(row):
                if type(v) is list:
                    row[i] = bytes(v)
        return out
