"""SQLite, LibSQL and Turso databases (a file, or a `.dump`) as a migration source.

D1 is SQLite, so the schema moves as it is written (CREATE statements from
sqlite_schema); the work is in what D1 refuses and in keeping the data exact:

- a `.dump` (sqlite3, `turso db shell .dump`, `wrangler d1 export`) is first loaded
  into a scratch SQLite file, so its BEGIN/COMMIT, PRAGMAs and oversize statements
  never reach D1: rows are re-read and written in batches within D1's limits;
- values are copied with their storage classes (a TEXT '1' stays text), and rowids
  are kept (tables without an INTEGER PRIMARY KEY get theirs written explicitly);
- internal tables are left out (sqlite_stat*, LibSQL's libsql_*, D1's _cf_*),
  virtual tables are recreated and refilled, and AUTOINCREMENT positions are kept.
"""

from __future__ import annotations

import re
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model import Issue, Key, Plan, TablePlan, quote
from ..order import load_order
from ..source import Batch
from .postgres import SourceError

MAGIC = b"SQLite format 3\x00"
INTERNAL = re.compile(r"^(sqlite_|_cf_|libsql_|_litestream_|_flarebase_migrate$)", re.I)
SHADOW_SUFFIXES = {
    "fts5": ("_data", "_idx", "_content", "_docsize", "_config"),
    "fts4": ("_content", "_segments", "_segdir", "_docsize", "_stat"),
    "fts3": ("_content", "_segments", "_segdir", "_docsize", "_stat"),
    "rtree": ("_node", "_rowid", "_parent"),
}


@dataclass
class SqliteOptions:
    tables: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)
    batch_rows: int = 1000

    def to_json(self) -> dict[str, Any]:
        return {"tables": self.tables, "exclude": self.exclude, "where": self.where}


class SqliteSource:
    """An SQLite/LibSQL database file, or a `.dump` of one."""

    def __init__(self, path: str | Path, options: SqliteOptions | None = None) -> None:
        self.path = Path(path)
        self.options = options or SqliteOptions()
        self.description = f"sqlite:{self.path}"
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if str(self.path).startswith(("libsql://", "https://", "http://", "wss://")):
            raise SourceError(
                f"{self.path}: remote LibSQL/Turso databases are read from a file: "
                "`turso db shell NAME .dump > dump.sql`, then migrate dump.sql"
            )
        if not self.path.exists():
            raise SourceError(f"no such file: {self.path}")
        with open(self.path, "rb") as f:
            is_database = f.read(16) == MAGIC
        if is_database:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        else:
            conn = self._load_dump()
        conn.text_factory = str
        self._conn = conn
        return conn

    def _load_dump(self) -> sqlite3.Connection:
        """A `.dump` into a scratch database: SQLite itself runs its BEGIN/COMMIT."""
        self._scratch = tempfile.TemporaryDirectory(prefix="flarebase-dump-")
        scratch = Path(self._scratch.name) / "dump.sqlite3"
        conn = sqlite3.connect(scratch, isolation_level=None)
        try:
            conn.executescript(self.path.read_text(encoding="utf-8"))
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise SourceError(
                f"{self.path}: not a database file or a loadable .dump: {e}"
            ) from None
        finally:
            if conn.in_transaction:  # a dump cut short: keep what it committed
                conn.execute("ROLLBACK")
            conn.close()
        # Reopened: a dump writes virtual tables into sqlite_schema directly
        # (writable_schema), which only a new connection reads.
        return sqlite3.connect(f"file:{scratch}?mode=ro", uri=True)

    async def plan(self) -> Plan:
        conn = self._connect()
        plan = Plan(source=self.description, options=self.options.to_json())
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
        ).fetchall()
        virtual = {
            name: m.group(1).lower()
            for kind, name, _, sql in objects
            if kind == "table"
            and sql
            and (m := re.search(r"USING\s+(\w+)", sql, re.I))
            and sql.upper().startswith("CREATE VIRTUAL")
        }
        shadows = {
            f"{name}{suffix}"
            for name, module in virtual.items()
            for suffix in SHADOW_SUFFIXES.get(module, ())
        }
        tables = [
            (name, sql)
            for kind, name, _, sql in objects
            if kind == "table" and not INTERNAL.match(name) and name not in shadows
        ]
        for wanted in [*self.options.tables, *self.options.exclude, *self.options.where]:
            if wanted not in {n for n, _ in tables}:
                raise SourceError(f"{self.description}: no table {wanted!r}")
        if self.options.tables:
            tables = [(n, s) for n, s in tables if n in self.options.tables]
        tables = [(n, s) for n, s in tables if n not in self.options.exclude]
        chosen = {n for n, _ in tables}
        edges: dict[str, set[str]] = {n: set() for n in chosen}
        for name in chosen:
            for fk in conn.execute(f"PRAGMA foreign_key_list({quote(name)})"):
                if fk[2] in chosen:
                    edges[name].add(fk[2])
                else:
                    plan.issue(
                        f"foreign key {name}.{fk[3]}",
                        f"references {fk[2]}, which is not migrated: dropped by D1 at insert",
                        "error",
                    )
        self._check_foreign_keys(conn, chosen)
        order, cyclic = load_order(edges)
        sql_of = dict(tables)
        for name in order:
            plan.tables.append(self._table(conn, plan, name, sql_of[name], virtual, cyclic))
        self._finish(conn, plan, objects, chosen, virtual)
        return plan

    def _check_foreign_keys(self, conn: sqlite3.Connection, chosen: set[str]) -> None:
        """SQLite leaves foreign keys unchecked unless asked; D1 always checks them. Rows
        that reference nothing would make D1 refuse the load: name them now."""
        problems = []
        for table, rowid, parent, fkid in conn.execute("PRAGMA foreign_key_check"):
            if table not in chosen:
                continue
            fk = [
                r for r in conn.execute(f"PRAGMA foreign_key_list({quote(table)})") if r[0] == fkid
            ]
            cols = ", ".join(r[3] for r in fk)
            problems.append(f"{table} rowid {rowid}: {cols} -> {parent} (no such row)")
        if problems:
            shown = "; ".join(problems[:10])
            more = f" and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise SourceError(
                f"{self.description}: {len(problems)} row(s) reference rows that do not exist "
                f"({shown}{more}); D1 enforces foreign keys: fix or delete them first"
            )

    def _table(
        self,
        conn: sqlite3.Connection,
        plan: Plan,
        name: str,
        create: str,
        virtual: dict[str, str],
        cyclic: set[str],
    ) -> TablePlan:
        info = conn.execute(f"PRAGMA table_xinfo({quote(name)})").fetchall()
        # hidden: 1 = a virtual table's hidden column, 2/3 = generated (recomputed by D1)
        columns = [r[1] for r in info if r[6] == 0]
        generated = [r[1] for r in info if r[6] in (2, 3)]
        if generated:
            plan.issue(f"table {name}", f"generated columns {', '.join(generated)} are recomputed")
        pk = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        without_rowid = bool(re.search(r"\)\s*WITHOUT\s+ROWID\s*;?\s*$", create, re.I))
        integer_pk = len(pk) == 1 and _is_integer_pk(info, pk[0])
        if name in virtual:
            key = ["rowid"]
            columns = ["rowid", *columns]
            if virtual[name] not in ("fts5", "fts4", "fts3", "rtree"):
                plan.issue(f"virtual table {name}", f"module {virtual[name]}: D1 may not have it")
        elif without_rowid or integer_pk:
            key = pk
        else:
            alias = next(a for a in ("rowid", "_rowid_", "oid") if a not in columns)
            key = [alias]
            columns = [alias, *columns]  # keep rowids: FTS content tables and apps use them
        where = self.options.where.get(name)
        count_sql = f"SELECT count(*) FROM {quote(name)}" + (f" WHERE ({where})" if where else "")
        try:
            rows = conn.execute(count_sql).fetchone()[0]
        except sqlite3.Error as e:
            raise SourceError(f"{self.description}: {name}: {e}") from None
        deferred: list[str] = []
        depends: list[str] = []
        for fk in conn.execute(f"PRAGMA foreign_key_list({quote(name)})").fetchall():
            parent, column = fk[2], fk[3]
            if parent != name:
                depends.append(parent)
            if name in cyclic and parent in cyclic:
                nullable = any(r[1] == column and not r[3] for r in info)
                if nullable and column not in deferred:
                    deferred.append(column)
        table = TablePlan(
            name=name,
            source=name,
            columns=columns,
            key=key,
            create_sql=create,
            rows=int(rows),
            deferred=deferred,
            depends_on=depends,
        )
        table.extra["where"] = where
        return table

    def _finish(
        self,
        conn: sqlite3.Connection,
        plan: Plan,
        objects: list[tuple[Any, ...]],
        chosen: set[str],
        virtual: dict[str, str],
    ) -> None:
        for kind, _, table, sql in objects:
            ours = kind in ("index", "trigger") and table in chosen
            if sql and (ours or kind == "view"):
                plan.finish_sql.append(sql)
        has_sequence = any(o[1] == "sqlite_sequence" for o in objects)
        if has_sequence:
            for name, seq in conn.execute("SELECT name, seq FROM sqlite_sequence"):
                if name in chosen:
                    plan.sequences[name] = int(seq)
        for kind, name, _, _ in objects:
            if kind == "table" and name.startswith("sqlite_stat"):
                plan.issues.append(
                    Issue(f"table {name}", "statistics: run ANALYZE (or PRAGMA optimize) in D1")
                )

    def _query(
        self, table: TablePlan, columns: list[str], after: Key | None, deferred: bool
    ) -> tuple[str, list[Any]]:
        keys = ", ".join(quote(k) for k in table.key)
        conditions = []
        params: list[Any] = []
        if table.extra.get("where"):
            conditions.append(f"({table.extra['where']})")
        if deferred:
            conditions.append(
                "(" + " OR ".join(f"{quote(c)} IS NOT NULL" for c in table.deferred) + ")"
            )
        if after is not None:
            conditions.append(f"({keys}) > ({', '.join('?' * len(table.key))})")
            params = [_decode(v) for v in after]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        cols = ", ".join(quote(c) for c in columns)
        return f"SELECT {cols} FROM {quote(table.name)}{where} ORDER BY {keys}", params

    async def _stream(
        self, table: TablePlan, columns: list[str], after: Key | None, deferred: bool
    ) -> AsyncIterator[Batch]:
        conn = self._connect()
        sql, params = self._query(table, columns, after, deferred)
        idx = [columns.index(k) for k in table.key]
        cur = conn.execute(sql, params)
        try:
            while True:
                rows = cur.fetchmany(self.options.batch_rows)
                if not rows:
                    return
                position = [_encode(rows[-1][i]) for i in idx]
                yield rows, position
        finally:
            cur.close()

    def rows(self, table: TablePlan, after: Key | None = None) -> AsyncIterator[Batch]:
        if table.nulls_deferred:
            return self._nulling(table, after)
        return self._stream(table, table.columns, after, False)

    async def _nulling(self, table: TablePlan, after: Key | None) -> AsyncIterator[Batch]:
        """First pass of a table in a foreign-key cycle: deferred columns as NULL."""
        idx = {table.columns.index(c) for c in table.deferred}
        async for rows, position in self._stream(table, table.columns, after, False):
            yield [tuple(None if i in idx else v for i, v in enumerate(r)) for r in rows], position

    def deferred_rows(self, table: TablePlan, after: Key | None = None) -> AsyncIterator[Batch]:
        return self._stream(table, table.key + table.deferred, after, True)

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None


def _is_integer_pk(info: list[tuple[Any, ...]], column: str) -> bool:
    for row in info:
        if row[1] == column:
            return str(row[2]).upper() == "INTEGER"
    return False


def _encode(value: Any) -> Any:
    """Keyset positions go into a JSON checkpoint: bytes are wrapped."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "hex" in value:
        return bytes.fromhex(value["hex"])
    return value
