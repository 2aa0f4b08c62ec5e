"""D1 through the REST API: the same API and result types as the local D1.

Each call is one request: `all()`/`run()`/`first()` and `batch()` POST to
`/accounts/{account}/d1/database/{id}/query` (a batch as `{"batch": [{sql, params},
...]}`, which D1 runs as one transaction, as the binding's `batch()`), `raw()` to
`/raw`, and `exec()` sends its statements as one `sql` text. Results are D1's, mapped
onto `D1Result`/`D1Meta`.

Differences from the binding, all from the wire:
- parameters travel as JSON: booleans are sent as 1/0 (as D1 stores them), bytes
  cannot be bound (bind a hex string and use `unhex(?)`), and integers beyond 2**53
  are refused, because D1's JavaScript would round them silently (bind them as a
  string: an INTEGER column converts it exactly);
- results are JSON too: BLOB columns come back as D1's REST API encodes them, and
  integers beyond 2**53 arrive rounded;
- `exec()` errors carry Cloudflare's message without the failing line number, and
  `dump()` does not exist (use `wrangler d1 export`).
Limits (SQL length, bound parameters, query time) are D1's own, behind the API.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from .. import invocation
from ..d1 import D1ExecResult, D1Meta, D1Result, split_statements
from ..errors import D1Error
from .client import ApiClient, ApiFailure

MAX_SAFE_INTEGER = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER
_CODE = re.compile(r"^(D1_[A-Z_]+):")
# Statements that only read: safe to repeat after a lost answer.
_READ_ONLY = re.compile(r"^\s*(SELECT|VALUES|EXPLAIN)\b", re.IGNORECASE)


def d1_error(failure: ApiFailure, code: str = "D1_ERROR") -> D1Error:
    """Cloudflare's message, with D1's `D1_*:` prefix as the binding words it."""
    text = failure.describe()
    match = _CODE.match(text)
    if match:
        return D1Error(text, code=match.group(1))
    return D1Error(f"{code}: {text}", code=code)


def _type_error(message: str) -> D1Error:
    return D1Error(f"D1_TYPE_ERROR: {message}", code="D1_TYPE_ERROR")


def to_param(value: Any) -> Any:
    """A bound value as JSON carries it to D1 without changing it, or D1_TYPE_ERROR."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise _type_error(
                f"integer {value} is beyond 2**53 and would be rounded on its way to D1 "
                "through the REST API; bind it as a string"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _type_error(f"{value} cannot be sent through the REST API (JSON)")
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        raise _type_error(
            "the REST API cannot bind bytes; bind bytes.hex() and write unhex(?) in the SQL"
        )
    raise _type_error(f"Type '{type(value).__name__}' not supported for value {value!r}")


def _meta(raw: Any) -> D1Meta:
    m = raw or {}
    return D1Meta(
        duration=float(m.get("duration") or 0.0),
        changes=int(m.get("changes") or 0),
        last_row_id=int(m.get("last_row_id") or 0),
        changed_db=bool(m.get("changed_db")),
        size_after=int(m.get("size_after") or 0),
        rows_read=int(m.get("rows_read") or 0),
        rows_written=int(m.get("rows_written") or 0),
        served_by=str(m.get("served_by") or m.get("served_by_colo") or ""),
    )


def to_result(raw: Any) -> D1Result:
    """One item of the `/query` answer's `result` list."""
    data = raw if isinstance(raw, dict) else {}
    rows = list(data.get("results") or [])
    return D1Result(rows, bool(data.get("success", True)), _meta(data.get("meta")))


class ApiD1:
    """The `D1Database` binding for the database `database_id`."""

    def __init__(self, client: ApiClient, database_id: str) -> None:
        self._client = client
        self.database_id = database_id

    def prepare(self, query: str) -> ApiStatement:
        if not isinstance(query, str):
            raise _type_error(f"query must be a string, not {type(query).__name__}")
        return ApiStatement(self, query, ())

    async def batch(self, statements: Iterable[ApiStatement]) -> list[D1Result]:
        """Run statements in one transaction on D1; any failure rolls back all of them."""
        statements = list(statements)
        for stmt in statements:
            if not isinstance(stmt, ApiStatement) or stmt._db is not self:
                raise _type_error("batch() takes statements prepared on this database")
        if not statements:
            return []
        invocation.count("d1", len(statements))
        batch = [{"sql": s.single_sql(), "params": list(s.params)} for s in statements]
        idempotent = all(_READ_ONLY.match(s.sql) for s in statements)
        return [to_result(r) for r in await self._call("query", idempotent, batch=batch)]

    async def exec(self, query: str) -> D1ExecResult:
        """Run one or more statements without bindings (D1's `exec`)."""
        if not isinstance(query, str):
            raise _type_error("query must be a string")
        count = len(split_statements(query))
        invocation.count("d1", count)
        try:
            results = [to_result(r) for r in await self._call("query", False, sql=query)]
        except D1Error as e:
            message = str(e).removeprefix("D1_ERROR: ")
            raise D1Error(f"D1_EXEC_ERROR: {message}", code="D1_EXEC_ERROR") from None
        return D1ExecResult(count=len(results), duration=sum(r.meta.duration for r in results))

    async def dump(self) -> bytes:
        raise D1Error(
            "D1_ERROR: dump() is not available through the REST API; "
            "use `wrangler d1 export` (an SQL file) instead"
        )

    async def aclose(self) -> None:
        pass  # the client is the provider's

    async def _call(self, endpoint: str, idempotent: bool, **body: Any) -> list[Any]:
        """The answer's `result`: one item per statement run."""
        path = self._client.account_path("d1", "database", quote(self.database_id, safe=""))
        result = await self._client.post(
            f"{path}/{endpoint}", body, d1_error, idempotent=idempotent
        )
        if not isinstance(result, list) or not result:
            raise D1Error(f"D1_ERROR: unexpected answer from the D1 REST API: {result!r}")
        return result


class ApiStatement:
    """A `D1PreparedStatement`: immutable; `bind` returns a new statement."""

    __slots__ = ("_db", "params", "sql")

    def __init__(self, db: ApiD1, sql: str, params: tuple[Any, ...]) -> None:
        self._db = db
        self.sql = sql
        self.params = params

    def bind(self, *values: Any) -> ApiStatement:
        return ApiStatement(self._db, self.sql, tuple(to_param(v) for v in values))

    def single_sql(self) -> str:
        """The SQL, refused if it holds several statements: the REST API would run them
        all, where the binding's prepared statement is one statement."""
        if len(split_statements(self.sql)) > 1:
            raise D1Error(
                "D1_ERROR: A prepared SQL statement must contain only one statement.: SQLITE_ERROR"
            )
        return self.sql

    async def _query(self, endpoint: str = "query") -> Any:
        invocation.count("d1")
        sql = self.single_sql()
        idempotent = bool(_READ_ONLY.match(sql))
        results = await self._db._call(endpoint, idempotent, sql=sql, params=list(self.params))
        return results[0]

    async def all(self) -> D1Result:
        return to_result(await self._query())

    async def run(self) -> D1Result:
        return to_result(await self._query())

    async def first(self, column: str | None = None) -> Any:
        rows = to_result(await self._query()).results
        if not rows:
            return None
        row = rows[0]
        if column is None:
            return row
        if column not in row:
            raise D1Error(
                f"D1_COLUMN_NOTFOUND: Column not found ({column})", code="D1_COLUMN_NOTFOUND"
            )
        return row[column]

    async def raw(self, column_names: bool = False) -> list[list[Any]]:
        item = await self._query("raw")
        results = (item.get("results") if isinstance(item, dict) else None) or {}
        rows = [list(row) for row in results.get("rows") or []]
        return [list(results.get("columns") or []), *rows] if column_names else rows
