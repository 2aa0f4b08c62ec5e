"""Where a migration writes: a D1 binding (any provider) or an SQL file for wrangler.

`D1Target` writes each batch of rows in one `batch()` together with the stage's
progress in `_flarebase_migrate`: the rows and the record of them commit or roll
back together, which is what makes a resumed migration exactly-once. `SqlFileTarget`
appends SQL that `wrangler d1 execute DB --file` imports in one transaction.

Both are readable by verification through `TableReader` (`D1Reader` over a binding,
or over an SQLite file such as wrangler's local state via `SqliteFileDB`).

Other products fit the same two protocols: a KV, R2 or Vectorize target takes each
stage's rows (key, value, metadata, ...) with idempotent writes (put, upsert) and
`records_progress = False`, so the checkpoint file, written after the writes, is the
record and a replayed batch rewrites the same values; its reader lists and gets them
back for verification.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..platform.d1 import D1Result
from ..platform.errors import FlarebaseError
from .checkpoint import StageState
from .load import (
    MAX_PARAMS,
    MAX_ROW_BYTES,
    bound_inserts,
    literal_inserts,
    row_bytes,
    update_sql,
)
from .model import Plan, Row, TablePlan, quote
from .translate import sql_literal

MARKER = "_flarebase_migrate"


class TargetError(FlarebaseError):
    code = "MIGRATE_TARGET"


class Target(Protocol):
    description: str
    one_transaction: bool  # the whole load commits at once (deferred FKs need no fixup)
    records_progress: bool  # stage states are committed with the rows (see checkpoint)

    async def begin(self, saved: dict[str, Any] | None) -> None: ...
    async def committed(self) -> dict[str, StageState]: ...
    async def existing(self, tables: Sequence[str]) -> list[str]: ...
    async def create(self, plan: Plan, replace: bool, state: StageState) -> None: ...
    async def write(self, table: TablePlan, rows: list[Row], state: StageState) -> list[Row]: ...
    async def update(self, table: TablePlan, rows: list[Row], state: StageState) -> None: ...
    async def mark(self, stage: str, state: StageState) -> None: ...
    async def finish(self, plan: Plan) -> None: ...
    async def durable(self) -> dict[str, Any]: ...
    async def cleanup(self) -> None: ...


class D1Target:
    """A D1 binding: `env.DB` of any provider."""

    one_transaction = False
    records_progress = True

    def __init__(self, db: Any, description: str = "D1") -> None:
        self.db = db
        self.description = description

    async def begin(self, saved: dict[str, Any] | None) -> None:
        pass

    async def committed(self) -> dict[str, StageState]:
        if not await self.existing([MARKER]):
            return {}
        rows = await self.db.prepare(f"SELECT stage, state FROM {MARKER}").raw()
        return {stage: StageState.from_json(json.loads(state)) for stage, state in rows}

    async def existing(self, tables: Sequence[str]) -> list[str]:
        found = []
        for start in range(0, len(tables), MAX_PARAMS):
            names = list(tables[start : start + MAX_PARAMS])
            marks = ", ".join("?" * len(names))
            sql = f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})"
            found += [r[0] for r in await self.db.prepare(sql).bind(*names).raw()]
        return found

    def _mark(self, stage: str, state: StageState) -> Any:
        return self.db.prepare(
            f"INSERT INTO {MARKER} (stage, state) VALUES (?, ?) "
            "ON CONFLICT (stage) DO UPDATE SET state = excluded.state"
        ).bind(stage, json.dumps(state.to_json()))

    async def create(self, plan: Plan, replace: bool, state: StageState) -> None:
        """Tables, and the progress table marked with this migration (`state`)."""
        statements = [self.db.prepare("PRAGMA defer_foreign_keys = on")]
        if replace:
            for view in _view_names(plan.finish_sql):
                statements.append(self.db.prepare(f"DROP VIEW IF EXISTS {quote(view)}"))
            for table in reversed(plan.tables):
                if table.create_sql:
                    statements.append(self.db.prepare(f"DROP TABLE IF EXISTS {quote(table.name)}"))
        statements += [self.db.prepare(sql) for sql in plan.schema_sql()]
        marker = f"CREATE TABLE IF NOT EXISTS {MARKER} (stage TEXT PRIMARY KEY, state TEXT)"
        statements.append(self.db.prepare(marker))
        statements.append(self.db.prepare(f"DELETE FROM {MARKER}"))  # an abandoned run's
        statements.append(self._mark("schema", state))
        await self._batch(statements, "creating the schema")

    async def write(self, table: TablePlan, rows: list[Row], state: StageState) -> list[Row]:
        """Insert rows and record `state`, atomically. Returns the rows too large for D1."""
        upsert = table.key if table.upsert else None
        statements = [self.db.prepare("PRAGMA defer_foreign_keys = on")]
        for sql, params in bound_inserts(table.name, table.columns, rows, upsert):
            statements.append(self.db.prepare(sql).bind(*params))
        statements.append(self._mark(table.stage, state))
        try:
            await self.db.batch(statements)
            return []
        except Exception as e:  # D1Error; a provider may let a driver's error through
            too_big = [r for r in rows if row_bytes(r) > MAX_ROW_BYTES]
            if not too_big:
                raise TargetError(
                    f"writing {table.name} (rows after {_first_key(table, rows)}): {e}"
                ) from None
        fitting = [r for r in rows if row_bytes(r) <= MAX_ROW_BYTES]
        statements = statements[:1]
        for sql, params in bound_inserts(table.name, table.columns, fitting, upsert):
            statements.append(self.db.prepare(sql).bind(*params))
        statements.append(self._mark(table.stage, state))
        await self._batch(statements, f"writing {table.name}")
        return too_big

    async def update(self, table: TablePlan, rows: list[Row], state: StageState) -> None:
        """Second pass of a table in a foreign-key cycle: rows are (key..., deferred...)."""
        n = len(table.key)
        sql = update_sql(table.name, table.key, table.deferred)
        stmt = self.db.prepare(sql)
        statements = [self.db.prepare("PRAGMA defer_foreign_keys = on")]
        statements += [stmt.bind(*row[n:], *row[:n]) for row in rows]
        statements.append(self._mark(f"fixup:{table.name}", state))
        await self._batch(statements, f"setting foreign keys of {table.name}")

    async def mark(self, stage: str, state: StageState) -> None:
        await self._batch([self._mark(stage, state)], "recording progress")

    async def finish(self, plan: Plan) -> None:
        statements = [self.db.prepare(sql) for sql in plan.finish_sql]
        for table, seq in plan.sequences.items():
            statements.append(
                self.db.prepare("DELETE FROM sqlite_sequence WHERE name = ?").bind(table)
            )
            statements.append(
                self.db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)").bind(
                    table, seq
                )
            )
        statements.append(self._mark("finish", StageState(done=True)))
        await self._batch(statements, "creating indexes and views")

    async def durable(self) -> dict[str, Any]:
        return {}

    async def cleanup(self) -> None:
        await self.db.exec(f"DROP TABLE IF EXISTS {MARKER}")

    async def _batch(self, statements: list[Any], what: str) -> list[D1Result]:
        try:
            return list(await self.db.batch(statements))
        except Exception as e:  # D1Error; a provider may let a driver's error through
            raise TargetError(f"{what}: {e}") from None


class SqlFileTarget:
    """An SQL file that `wrangler d1 execute DB --file FILE` imports (one transaction)."""

    one_transaction = True
    records_progress = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.description = f"SQL file {self.path}"
        self._file: Any = None

    async def begin(self, saved: dict[str, Any] | None) -> None:
        """Start the file, or cut it back to what the checkpoint recorded as synced."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        offset = (saved or {}).get("offset")
        if offset is not None and not self.path.exists():
            raise TargetError(
                f"{self.path} is gone but the checkpoint continues it: run with --restart"
            )
        if offset is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - held for the whole run
        else:
            self._file = open(self.path, "r+b")  # noqa: SIM115
            self._file.truncate(offset)
            self._file.seek(offset)

    def _write(self, *statements: str) -> None:
        self._file.write(("\n".join(statements) + "\n").encode("utf-8"))

    async def committed(self) -> dict[str, StageState]:
        return {}

    async def existing(self, tables: Sequence[str]) -> list[str]:
        return []

    async def create(self, plan: Plan, replace: bool, state: StageState) -> None:
        self._write(
            f"-- flarebase migrate: {plan.source} -> D1 (wrangler d1 execute DB --file)",
            "PRAGMA defer_foreign_keys = true;",
        )
        if replace:
            for view in _view_names(plan.finish_sql):
                self._write(f"DROP VIEW IF EXISTS {quote(view)};")
            for table in reversed(plan.tables):
                if table.create_sql:
                    self._write(f"DROP TABLE IF EXISTS {quote(table.name)};")
        self._write(*(sql + ";" for sql in plan.schema_sql()))

    async def write(self, table: TablePlan, rows: list[Row], state: StageState) -> list[Row]:
        too_big = [r for r in rows if row_bytes(r) > MAX_ROW_BYTES]
        if too_big:
            rows = [r for r in rows if row_bytes(r) <= MAX_ROW_BYTES]
        if table.upsert:
            for row in rows:
                values = ", ".join(map(sql_literal, row))
                cols = ", ".join(quote(c) for c in table.columns)
                sets = [
                    f"{quote(c)} = excluded.{quote(c)}" for c in table.columns if c not in table.key
                ]
                action = f"DO UPDATE SET {', '.join(sets)}" if sets else "DO NOTHING"
                keys = ", ".join(quote(k) for k in table.key)
                self._write(
                    f"INSERT INTO {quote(table.name)} ({cols}) VALUES ({values}) "
                    f"ON CONFLICT ({keys}) {action};"
                )
        else:
            self._write(*literal_inserts(table.name, table.columns, rows, table.key))
        return too_big

    async def update(self, table: TablePlan, rows: list[Row], state: StageState) -> None:
        raise TargetError("an SQL file loads in one transaction: no second pass is needed")

    async def mark(self, stage: str, state: StageState) -> None:
        pass

    async def finish(self, plan: Plan) -> None:
        self._write(*(sql + ";" for sql in plan.finish_sql))
        for table, seq in plan.sequences.items():
            name = sql_literal(table)
            self._write(
                f"DELETE FROM sqlite_sequence WHERE name = {name};",
                f"INSERT INTO sqlite_sequence (name, seq) VALUES ({name}, {seq});",
            )

    async def durable(self) -> dict[str, Any]:
        if self._file is None:
            return {}
        self._file.flush()
        os.fsync(self._file.fileno())
        return {"offset": self._file.tell()}

    async def cleanup(self) -> None:
        if self._file is not None:
            self._file.close()


def _view_names(finish_sql: list[str]) -> list[str]:
    names = []
    for sql in finish_sql:
        m = re.match(r'CREATE VIEW (?:IF NOT EXISTS )?"((?:[^"]|"")*)"', sql)
        if m:
            names.append(m.group(1).replace('""', '"'))
    return names


def _first_key(table: TablePlan, rows: list[Row]) -> str:
    if not rows or not table.key:
        return "?"
    idx = [table.columns.index(k) for k in table.key]
    return ", ".join(f"{table.columns[i]}={rows[0][i]!r}" for i in idx)


# -- reading for verification ---------------------------------------------------------------
class TableReader(Protocol):
    description: str

    def scan(self, table: TablePlan, page: int = 2000) -> AsyncIterator[list[Row]]: ...
    async def lookup(self, table: TablePlan, keys: list[tuple[Any, ...]]) -> dict[Any, Row]: ...
    async def contains(self, table: TablePlan, row: Row) -> bool: ...


class D1Reader:
    """Reads tables of a D1 binding (or of `SqliteFileDB`) page by page."""

    def __init__(self, db: Any, description: str = "D1") -> None:
        self.db = db
        self.description = description

    async def scan(self, table: TablePlan, page: int = 2000) -> AsyncIterator[list[Row]]:
        cols = ", ".join(quote(c) for c in table.columns)
        name = quote(table.name)
        if table.key:
            # Keyset over the key: works for WITHOUT ROWID tables too.
            keys = ", ".join(quote(k) for k in table.key)
            first = f"SELECT {cols} FROM {name} ORDER BY {keys} LIMIT {page}"
            marks = ", ".join("?" * len(table.key))
            nxt = (
                f"SELECT {cols} FROM {name} WHERE ({keys}) > ({marks}) ORDER BY {keys} LIMIT {page}"
            )
            idx = [table.columns.index(k) for k in table.key]
            rows = await self.db.prepare(first).raw()
            while rows:
                yield [tuple(r) for r in rows]
                if len(rows) < page:
                    return
                last = rows[-1]
                rows = await self.db.prepare(nxt).bind(*(last[i] for i in idx)).raw()
        else:
            sql = f"SELECT rowid, {cols} FROM {name} WHERE rowid > ? ORDER BY rowid LIMIT {page}"
            position = -(2**63)
            while True:
                rows = await self.db.prepare(sql).bind(position).raw()
                if not rows:
                    return
                yield [tuple(r[1:]) for r in rows]
                if len(rows) < page:
                    return
                position = rows[-1][0]

    async def lookup(self, table: TablePlan, keys: list[tuple[Any, ...]]) -> dict[Any, Row]:
        """Rows by key (key tuples in D1 values)."""
        cols = ", ".join(quote(c) for c in table.columns)
        idx = [table.columns.index(k) for k in table.key]
        width = len(table.key)
        found: dict[Any, Row] = {}
        per = max(1, MAX_PARAMS // width)
        for start in range(0, len(keys), per):
            chunk = keys[start : start + per]
            if width == 1:
                cond = f"{quote(table.key[0])} IN ({', '.join('?' * len(chunk))})"
            else:
                tuple_ = "(" + ", ".join("?" * width) + ")"
                keycols = ", ".join(quote(k) for k in table.key)
                cond = f"({keycols}) IN (VALUES {', '.join([tuple_] * len(chunk))})"
            params = [v for key in chunk for v in key]
            sql = f"SELECT {cols} FROM {quote(table.name)} WHERE {cond}"
            for row in await self.db.prepare(sql).bind(*params).raw():
                found[tuple(row[i] for i in idx)] = tuple(row)
        return found

    async def contains(self, table: TablePlan, row: Row) -> bool:
        cond = " AND ".join(f"{quote(c)} IS ?" for c in table.columns)
        sql = f"SELECT 1 FROM {quote(table.name)} WHERE {cond} LIMIT 1"
        return bool(await self.db.prepare(sql).bind(*row).raw())


class SqliteFileDB:
    """A read-only SQLite file behind the small part of the D1 API verification uses
    (e.g. wrangler's local state after `wrangler d1 execute --local --file`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)

    def prepare(self, sql: str) -> _FileStatement:
        return _FileStatement(self._conn, sql, ())

    async def aclose(self) -> None:
        self._conn.close()


class _FileStatement:
    def __init__(self, conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
        self.conn, self.sql, self.params = conn, sql, params

    def bind(self, *params: Any) -> _FileStatement:
        return _FileStatement(self.conn, self.sql, params)

    async def raw(self) -> list[list[Any]]:
        return [list(r) for r in self.conn.execute(self.sql, self.params).fetchall()]
