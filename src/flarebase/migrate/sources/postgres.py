"""Postgres (Neon, Supabase, any 12+) as a migration source.

The plan is read from the catalog (tables, columns, defaults, keys, foreign keys,
indexes, checks, enums, identity/serial columns, views) and translated by
`..translate`; what cannot be translated (triggers, functions, extensions, RLS
policies, ...) becomes an `Issue`. Rows are read in key order with server-side
cursors inside one REPEATABLE READ, READ ONLY transaction, so memory stays flat
and every table comes from the same snapshot. Values are converted to their D1
form by the SELECT itself where Postgres can (to_char, to_json, ::text), and in
Python otherwise (NaN, numeric as REAL, epoch milliseconds).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ...platform.errors import FlarebaseError
from ..model import Issue, Key, Plan, Row, TablePlan, quote
from ..order import load_order
from ..source import Batch
from ..translate import (
    NOW_SQL,
    UUID_SQL,
    ColumnDDL,
    ExprContext,
    Mapping,
    PgColumn,
    Untranslatable,
    create_table_sql,
    default_sql,
    map_column,
    sql_literal,
    translate_expr,
)


class SourceError(FlarebaseError):
    code = "MIGRATE_SOURCE"


@dataclass
class PostgresOptions:
    tables: list[str] = field(default_factory=list)  # only these ("orders", "public.orders")
    exclude: list[str] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)  # table -> SQL condition
    schemas: list[str] = field(default_factory=lambda: ["public"])
    timestamps: str = "iso"  # iso | epoch-ms
    numeric: str = "text"  # text | real
    batch_rows: int = 1000
    # Supabase auth.users -> the server's users/accounts tables, given their D1
    # columns ({"users": [...], "accounts": [...]}); None leaves auth alone.
    accounts: dict[str, list[str]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": self.tables,
            "exclude": self.exclude,
            "where": self.where,
            "schemas": self.schemas,
            "timestamps": self.timestamps,
            "numeric": self.numeric,
            "auth": self.accounts is not None,
        }


def redact(url: str) -> str:
    """The URL without its password (for reports, checkpoints and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- the catalog -------------------------------------------------------------------------
_TABLES = """
SELECT c.oid, n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND n.nspname = ANY(%s)
ORDER BY n.nspname, c.relname
"""
_COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '', a.attgenerated <> '',
       t.typtype, COALESCE(b.oid, t.oid), format_type(COALESCE(b.oid, t.oid), NULL),
       COALESCE(b.typcategory, t.typcategory),
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       CASE WHEN t.typtype = 'd' THEN format_type(t.oid, NULL) END
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
_ENUMS = "SELECT enumtypid, enumlabel FROM pg_enum ORDER BY enumtypid, enumsortorder"
_CONSTRAINTS = """
SELECT con.conrelid, con.conname, con.contype, con.conkey, con.confrelid, con.confkey,
       con.confupdtype, con.confdeltype, con.condeferrable, con.condeferred,
       pg_get_constraintdef(con.oid), pg_get_expr(con.conbin, con.conrelid), con.conindid
FROM pg_constraint con WHERE con.conrelid = ANY(%s)
ORDER BY con.conrelid, con.contype, con.conname
"""
_INDEXES = """
SELECT i.indrelid, ic.relname, i.indisunique, am.amname, i.indnkeyatts,
       pg_get_expr(i.indpred, i.indrelid), i.indoption::int2[],
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
             FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
       EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid
               AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x')),
       pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
WHERE i.indrelid = ANY(%s)
ORDER BY i.indrelid, ic.relname
"""
_TRIGGERS = """
SELECT t.tgrelid, t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t WHERE NOT t.tgisinternal AND t.tgrelid = ANY(%s) ORDER BY t.tgname
"""
_FUNCTIONS = """
SELECT n.nspname, p.proname, p.prokind
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = ANY(%s)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""
_POLICIES = """
SELECT pol.polrelid, pol.polname FROM pg_policy pol WHERE pol.polrelid = ANY(%s)
"""
_VOLATILITY = "SELECT proname, max(provolatile) FROM pg_proc WHERE proname = ANY(%s) GROUP BY 1"
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_NEXTVAL = re.compile(r"nextval\('([^']+)'(?:::regclass)?\)")

EXTENSION_REASONS = {
    "vector": "pgvector: vector columns are kept as JSON text; Vectorize is their target",
    "pgcrypto": "its gen_random_uuid() defaults are translated; other functions are not",
    "uuid-ossp": "its uuid_generate_v4() defaults are translated; other functions are not",
    "citext": "citext columns become TEXT COLLATE NOCASE (ASCII case folding only)",
}
FK_ACTIONS = {"a": None, "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass
class _Table:
    oid: int
    schema: str
    name: str
    kind: str
    d1: str = ""
    columns: list[PgColumn] = field(default_factory=list)
    mappings: list[Mapping] = field(default_factory=list)
    constraints: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def sql_name(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"

    def column(self, attnum: int) -> PgColumn:
        return self.columns[attnum - 1]


class PostgresSource:
    """Reads a Postgres database: its plan, then its rows in key order."""

    def __init__(self, url: str, options: PostgresOptions | None = None) -> None:
        self.url = url
        self.options = options or PostgresOptions()
        self.description = redact(url)
        self._aconn: Any = None
        self._cursors = 0

    # -- planning ----------------------------------------------------------------------
    async def plan(self) -> Plan:
        import psycopg

        try:
            conn = psycopg.connect(self.url, autocommit=True)
        except psycopg.Error as e:
            raise SourceError(f"cannot connect to {self.description}: {e}") from None
        try:
            _session(conn)
            return _Planner(conn, self.options, self.description).plan()
        except psycopg.Error as e:
            raise SourceError(f"{self.description}: {e}") from None
        finally:
            conn.close()

    # -- rows ----------------------------------------------------------------------------
    async def _connection(self) -> Any:
        if self._aconn is None:
            import psycopg

            try:
                self._aconn = await psycopg.AsyncConnection.connect(self.url)
            except psycopg.Error as e:
                raise SourceError(f"cannot connect to {self.description}: {e}") from None
            await self._aconn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            await self._aconn.set_read_only(True)
            for statement in _SESSION:
                await self._aconn.execute(statement)
        return self._aconn

    def rows(self, table: TablePlan, after: Key | None = None) -> AsyncIterator[Batch]:
        select = table.extra["first_pass" if table.nulls_deferred else "select"]
        return self._stream(table, select, after)

    def deferred_rows(self, table: TablePlan, after: Key | None = None) -> AsyncIterator[Batch]:
        return self._stream(table, table.extra["deferred_select"], after, deferred=True)

    async def _stream(
        self,
        table: TablePlan,
        select: list[str],
        after: Key | None,
        deferred: bool = False,
    ) -> AsyncIterator[Batch]:
        import psycopg

        x = table.extra
        key_sql: list[str] = x["key_sql"]  # source expressions of the keyset
        key_types: list[str] = x["key_types"]
        key_index: list[int] | None = x.get("key_index")
        if deferred and key_index is not None:
            key_index = list(range(len(key_sql)))  # (key..., deferred...) rows
        conditions = [x["where"]] if x.get("where") else []
        if deferred:
            conditions.append(x["deferred_filter"])
        params: list[Any] = []
        if after is not None:
            left = ", ".join(key_sql)
            right = ", ".join(f"%s::{t}" for t in key_types)
            conditions.append(f"({left}) > ({right})")
            params = list(after)
        where = f" WHERE {' AND '.join(f'({c})' for c in conditions)}" if conditions else ""
        # Output names c0.. k0.. keep ORDER BY on the table's own columns.
        outputs = [f"{e} AS c{i}" for i, e in enumerate(select)]
        if key_index is None:
            outputs += [f"({k})::text AS k{i}" for i, k in enumerate(key_sql)]
        sql = f"SELECT {', '.join(outputs)} FROM {x['from']}{where} ORDER BY {', '.join(key_sql)}"
        convert: Callable[[Row], Row] | None = x["deferred_convert" if deferred else "convert"]
        width = len(select)
        conn = await self._connection()
        self._cursors += 1
        try:
            async with conn.cursor(name=f"flarebase_{self._cursors}") as cur:
                await cur.execute(sql, params)
                while True:
                    fetched = await cur.fetchmany(self.options.batch_rows)
                    if not fetched:
                        break
                    if key_index is None:
                        position = list(fetched[-1][width:])
                        rows = [r[:width] for r in fetched]
                    else:
                        position = [fetched[-1][i] for i in key_index]
                        rows = fetched
                    if convert is not None:
                        rows = [convert(r) for r in rows]
                    yield rows, position
        except psycopg.Error as e:
            raise SourceError(f"{self.description}: reading {table.source}: {e}") from None

    async def aclose(self) -> None:
        if self._aconn is not None:
            await self._aconn.close()
            self._aconn = None


_SESSION = [
    "SET TIME ZONE 'UTC'",
    "SET intervalstyle = 'iso_8601'",
    "SET datestyle = 'ISO, YMD'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
]


def _session(conn: Any) -> None:
    for statement in _SESSION:
        conn.execute(statement)


def _converter(mappings: list[Mapping]) -> Callable[[Row], Row] | None:
    steps = [(i, m.convert) for i, m in enumerate(mappings) if m.convert is not None]
    if not steps:
        return None

    def convert(row: Row) -> Row:
        values = list(row)
        for i, fn in steps:
            if values[i] is not None:
                values[i] = fn(values[i])
        return tuple(values)

    return convert


class _Planner:
    """Reads the catalog once and builds the Plan."""

    def __init__(self, conn: Any, options: PostgresOptions, description: str) -> None:
        self.conn = conn
        self.opt = options
        self.plan_ = Plan(source=description, options=options.to_json())
        self._volatility: dict[str, str] = {}

    def q(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, params or None).fetchall())

    def issue(self, obj: str, reason: str, severity: str = "warning") -> None:
        self.plan_.issues.append(Issue(obj, reason, severity))

    # -- the whole plan --------------------------------------------------------------------
    def plan(self) -> Plan:
        schemas = list(dict.fromkeys(self.opt.schemas))
        rows = self.q(_TABLES, schemas)
        everything = [_Table(oid, s, n, k) for oid, s, n, k in rows]
        for t in everything:
            t.d1 = t.name if t.schema == "public" or len(schemas) == 1 else f"{t.schema}_{t.name}"
        tables = [t for t in everything if t.kind in ("r", "p", "f")]
        self._report_relations(everything)
        tables = self._select(tables)
        by_oid = {t.oid: t for t in tables}
        self._columns(by_oid)
        self._constraints(by_oid)
        names = {t.d1 for t in tables}
        self.ctx_tables = {}
        for t in tables:
            self.ctx_tables[t.qualified] = t.d1
            self.ctx_tables.setdefault(t.name, t.d1)
        order, cyclic = _load_order(tables, by_oid)
        for t in order:
            self.plan_.tables.append(self._table(t, by_oid, cyclic))
        self._indexes(by_oid)
        self._views([t for t in everything if t.kind == "v"], names)
        self._report_objects(schemas, list(by_oid))
        if self.opt.accounts is not None:
            from .supabase import plan_auth

            plan_auth(self, self.opt.accounts)
        self._check_where()
        return self.plan_

    def _check_where(self) -> None:
        copied = [t for t in self.plan_.tables if t.create_sql is not None]
        planned = {t.name for t in copied} | {t.source for t in copied}
        for name in self.opt.where:
            if name not in planned:
                raise SourceError(f"--where names {name!r}, which is not a migrated table")

    def _select(self, tables: list[_Table]) -> list[_Table]:
        def named(t: _Table, names: Iterable[str]) -> bool:
            return any(n in (t.d1, t.name, t.qualified) for n in names)

        for n in [*self.opt.tables, *self.opt.exclude]:
            if not any(named(t, [n]) for t in tables):
                raise SourceError(f"no table {n!r} in schema(s) {', '.join(self.opt.schemas)}")
        if self.opt.tables:
            tables = [t for t in tables if named(t, self.opt.tables)]
        return [t for t in tables if not named(t, self.opt.exclude)]

    def _report_relations(self, everything: list[_Table]) -> None:
        for t in everything:
            if t.kind == "m":
                self.issue(
                    f"materialized view {t.qualified}",
                    "D1 has no materialized views; recreate it as a table or a view",
                )
            elif t.kind == "f":
                self.issue(f"foreign table {t.qualified}", "its rows are copied as a table")

    # -- columns and constraints -------------------------------------------------------------
    def _columns(self, by_oid: dict[int, _Table]) -> None:
        enums: dict[int, list[str]] = {}
        for typid, label in self.q(_ENUMS):
            enums.setdefault(typid, []).append(label)
        for row in self.q(_COLUMNS, list(by_oid)):
            relid, name, type_, not_null, default, identity, generated = row[:7]
            _, base_oid, base, category, typmod, domain = row[7:]
            precision = scale = None
            if base == "numeric" and typmod is not None and typmod >= 4:
                precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
            col = PgColumn(
                name=name,
                type=type_,
                base=base.split(".")[-1].strip('"'),
                category=category,
                not_null=not_null,
                default=default,
                identity=identity,
                generated=default if generated else None,
                enum_labels=enums.get(base_oid, []),
                precision=precision,
                scale=scale,
                domain=domain,
            )
            by_oid[relid].columns.append(col)
        for t in by_oid.values():
            t.mappings = [map_column(c, self.opt.timestamps, self.opt.numeric) for c in t.columns]
            for c, m in zip(t.columns, t.mappings, strict=True):
                if m.note:
                    self.issue(f"column {t.qualified}.{c.name}", m.note)
                if c.domain:
                    self.issue(
                        f"column {t.qualified}.{c.name}",
                        f"domain {c.domain}: stored as its base type {c.base}; "
                        "the domain's constraints are not carried over",
                    )
                if c.generated:
                    self.issue(
                        f"column {t.qualified}.{c.name}",
                        f"generated column ({c.generated}): its values are copied; "
                        "D1 will not recompute them",
                    )
            if len(t.columns) > 100:
                raise SourceError(
                    f"table {t.qualified} has {len(t.columns)} columns; D1 allows 100"
                )

    def _constraints(self, by_oid: dict[int, _Table]) -> None:
        for row in self.q(_CONSTRAINTS, list(by_oid)):
            by_oid[row[0]].constraints.append(row)

    def _table(self, t: _Table, by_oid: dict[int, _Table], cyclic: set[str]) -> TablePlan:
        pairs = list(zip(t.columns, t.mappings, strict=True))
        cols = [ColumnDDL(c.name, m.d1_type, c.not_null) for c, m in pairs]
        for ddl, m in zip(cols, t.mappings, strict=True):
            if m.check:
                ddl.checks.append(m.check.format(c=quote(ddl.name)))
            ddl.collate = m.collate
        numeric = {c.name for c, m in pairs if m.kind == "numeric-text"}
        ctx = ExprContext(
            self.opt.timestamps, self.literal, numeric_columns=numeric, tables=self.ctx_tables
        )
        constraints: list[str] = []
        pk: list[str] = []
        depends: list[str] = []
        deferred: list[str] = []
        unique_keys: list[list[str]] = []
        for row in t.constraints:
            _, name, kind, conkey, confrelid, confkey, upd, dele, deferrable, initially = row[:10]
            definition, check_expr = row[10], row[11]
            names = [t.column(k).name for k in conkey or []]
            label = f"constraint {name} on {t.qualified}"
            if kind == "p":
                pk = names
            elif kind == "u":
                if "NULLS NOT DISTINCT" in definition:
                    self.issue(label, "NULLS NOT DISTINCT: SQLite treats NULLs as distinct")
                constraints.append(f"CONSTRAINT {quote(name)} UNIQUE ({_cols(names)})")
                if all(t.column(k).not_null for k in conkey):
                    unique_keys.append(names)
            elif kind == "c":
                try:
                    expr = translate_expr(check_expr, ctx)
                    constraints.append(f"CONSTRAINT {quote(name)} CHECK ({expr})")
                except Untranslatable as e:
                    self.issue(label, f"CHECK {check_expr} not translated: {e}")
            elif kind == "f":
                parent = by_oid.get(confrelid)
                if parent is None:
                    self.issue(label, f"{definition}: the referenced table is not migrated")
                    continue
                ref = [parent.column(k).name for k in confkey]
                clause = (
                    f"FOREIGN KEY ({_cols(names)}) REFERENCES {quote(parent.d1)} ({_cols(ref)})"
                )
                for verb, action in (("UPDATE", upd), ("DELETE", dele)):
                    if FK_ACTIONS.get(action):
                        clause += f" ON {verb} {FK_ACTIONS[action]}"
                if deferrable:
                    clause += " DEFERRABLE INITIALLY " + ("DEFERRED" if initially else "IMMEDIATE")
                constraints.append(f"CONSTRAINT {quote(name)} {clause}")
                if parent.d1 != t.d1:
                    depends.append(parent.d1)
                if t.d1 in cyclic and parent.d1 in cyclic:
                    if all(not t.column(k).not_null for k in conkey):
                        deferred += [n for n in names if n not in deferred]
                    else:
                        self.issue(
                            label,
                            "NOT NULL foreign key in a cycle: rows are loaded in key order "
                            "and a row whose parent comes later fails",
                        )
            elif kind == "x":
                self.issue(label, f"exclusion constraint {definition}: D1 has none")
            elif kind == "t":
                self.issue(label, "constraint trigger: D1 has none")
        # Rows are read and found by the primary key, else by a NOT NULL unique key.
        key = pk or (unique_keys[0] if unique_keys else [])
        self._defaults(t, cols, pk, ctx)
        if pk and not any(ddl.primary_key for ddl in cols):
            constraints.insert(0, f"PRIMARY KEY ({_cols(pk)})")
        create = create_table_sql(t.d1, cols, constraints)
        return self._table_plan(t, cols, key, create, depends, deferred)

    def _defaults(self, t: _Table, cols: list[ColumnDDL], pk: list[str], ctx: ExprContext) -> None:
        for c, m, ddl in zip(t.columns, t.mappings, cols, strict=True):
            serial = c.identity or bool(c.default and _NEXTVAL.search(c.default))
            if serial:
                if pk == [c.name] and m.d1_type == "INTEGER":
                    ddl.primary_key = "PRIMARY KEY AUTOINCREMENT"
                    ddl.not_null = False
                    self._sequence(t, c)
                else:
                    self.issue(
                        f"default of {t.qualified}.{c.name}",
                        "sequence (serial/identity) outside an INTEGER primary key: values "
                        "are copied; D1 will not generate new ones",
                    )
                continue
            if c.default is None or c.generated:
                continue
            try:
                ddl.default = self.default(c, m, t, ctx)
            except Untranslatable as e:
                more = " (the column is NOT NULL: inserts must give it)" if c.not_null else ""
                self.issue(
                    f"default of {t.qualified}.{c.name}",
                    f"DEFAULT {c.default} not translated: {e}{more}",
                )
        if len(pk) == 1 and not any(ddl.primary_key for ddl in cols):
            i = [c.name for c in t.columns].index(pk[0])
            if t.mappings[i].d1_type == "INTEGER" and t.mappings[i].kind == "integer":
                cols[i].primary_key = "PRIMARY KEY"  # the rowid: fastest lookups
                cols[i].not_null = False

    def default(self, c: PgColumn, m: Mapping, t: _Table, ctx: ExprContext) -> str:
        text = c.default or ""
        flat = re.sub(r"::[a-z ]+(\[\])?", "", text.lower()).replace(" ", "")
        flat = flat.removeprefix("(").removesuffix(")") if flat.count("(") > 1 else flat
        now_forms = {
            "now()",
            "current_timestamp",
            "localtimestamp",
            "transaction_timestamp()",
            "statement_timestamp()",
            "clock_timestamp()",
            "timezone('utc',now())",
            "(now()attimezone'utc')",
            "now()attimezone'utc'",
            "current_date",
        }
        if flat in now_forms:
            if m.kind in ("timestamptz", "timestamp", "date"):
                return NOW_SQL[(self.opt.timestamps, m.kind)]
            raise Untranslatable(f"the current time into a {m.d1_type} column")
        if flat.split(".")[-1] in ("gen_random_uuid()", "uuid_generate_v4()"):
            return UUID_SQL
        calls = {name.lower() for name in _CALL.findall(text)}
        if all(self.volatility(name) == "i" for name in calls):
            return self.evaluate(f"({text})::{c.type}", m)
        return default_sql(translate_expr(text, ctx))

    def volatility(self, name: str) -> str:
        if name not in self._volatility:
            rows = self.q(_VOLATILITY, [name])
            # Not a function (a keyword such as COALESCE): immutable.
            self._volatility[name] = rows[0][1] if rows else "i"
        return self._volatility[name]

    def evaluate(self, expr: str, m: Mapping) -> str:
        """The D1 literal of a constant Postgres expression, converted like the data."""
        value = self.q(f"SELECT {m.select.format(c=f'({expr})')}")[0][0]
        if value is not None and m.convert is not None:
            value = m.convert(value)
        return sql_literal(value)

    def literal(self, text: str, type_name: str) -> str:
        """For the translator: a typed Postgres literal as the D1 literal of its value."""
        col = self._describe_type(type_name)
        return self.evaluate(
            f"{text}::{type_name}", map_column(col, self.opt.timestamps, self.opt.numeric)
        )

    def _describe_type(self, type_name: str) -> PgColumn:
        rows = self.q(
            """SELECT format_type(COALESCE(b.oid, t.oid), NULL),
                      COALESCE(b.typcategory, t.typcategory), COALESCE(b.oid, t.oid)
               FROM pg_type t LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype
               WHERE t.oid = %s::regtype""",
            type_name,
        )
        base, category, oid = rows[0]
        labels = [r[0] for r in self.q("SELECT enumlabel FROM pg_enum WHERE enumtypid = %s", oid)]
        return PgColumn(
            "value", type_name, base.split(".")[-1].strip('"'), category, enum_labels=labels
        )

    def _sequence(self, t: _Table, c: PgColumn) -> None:
        seq = self.q("SELECT pg_get_serial_sequence(%s, %s)", t.sql_name, c.name)[0][0]
        if seq is None:
            return
        last, called = self.q(f"SELECT last_value, is_called FROM {seq}")[0]
        self.plan_.sequences[t.d1] = int(last) if called else int(last) - 1

    def _table_plan(
        self,
        t: _Table,
        cols: list[ColumnDDL],
        key: list[str],
        create: str,
        depends: list[str],
        deferred: list[str],
    ) -> TablePlan:
        names = [c.name for c in t.columns]
        source_from = ("ONLY " if t.kind == "r" else "") + t.sql_name
        where = self.opt.where.get(t.d1) or self.opt.where.get(t.qualified)
        where = where or self.opt.where.get(t.name)
        if not key and t.kind in ("p", "f"):
            kind = "partitioned" if t.kind == "p" else "foreign"
            raise SourceError(
                f"{kind} table {t.qualified} has no primary key or NOT NULL unique key to "
                f"read it in order by: add one, or --exclude {t.qualified}"
            )
        if not key:
            self.issue(
                f"table {t.qualified}",
                "no primary key or NOT NULL unique key: rows are read in physical (ctid) "
                "order and the target has no key to look rows up by",
            )
        rows = self._scan(t, source_from, where)
        select = [
            m.select.format(c=quote(c.name)) for c, m in zip(t.columns, t.mappings, strict=True)
        ]
        plan = TablePlan(
            name=t.d1,
            source=t.qualified,
            columns=names,
            key=key,
            create_sql=create,
            rows=rows,
            deferred=deferred if key else [],
            depends_on=depends,
        )
        # Keyset positions come from the rows themselves when the key's D1 values are
        # also its Postgres text (integers, text, uuids, enums); else from extra columns.
        same = ("integer", "text", "uuid", "enum")
        key_index = [names.index(k) for k in key]
        if not key or any(t.mappings[i].kind not in same for i in key_index):
            key_index = None  # type: ignore[assignment]
        phase1 = [("NULL" if n in plan.deferred else s) for n, s in zip(names, select, strict=True)]
        plan.extra.update(
            select=select,
            first_pass=phase1,
            convert=_converter(t.mappings),
            key_sql=[quote(k) for k in key] or ["ctid"],
            key_types=[t.columns[names.index(k)].type for k in key] or ["tid"],
            key_index=key_index,
            where=where,
            **{"from": source_from},
        )
        if plan.deferred:
            idx = [names.index(n) for n in key + plan.deferred]
            plan.extra.update(
                deferred_select=[select[i] for i in idx],
                deferred_convert=_converter([t.mappings[i] for i in idx]),
                deferred_filter=" OR ".join(f"{quote(n)} IS NOT NULL" for n in plan.deferred),
            )
        return plan

    def _scan(self, t: _Table, source_from: str, where: str | None) -> int:
        """One pass over the table: its row count, the NaNs of its float columns (which
        need a conversion in Python) and the values a chosen representation rounds
        (numeric as REAL, epoch milliseconds), which the report counts."""
        tests: list[tuple[int, str, str]] = []
        for i, (c, m) in enumerate(zip(t.columns, t.mappings, strict=True)):
            name = quote(c.name)
            if m.kind == "float":
                tests.append((i, f"{name} = 'NaN'", "nan"))
            elif m.kind == "numeric-real":
                what = "numeric values rounded to REAL (--numeric real)"
                tests.append((i, f"{name}::float8::text::numeric <> {name}", what))
            elif self.opt.timestamps == "epoch-ms" and m.kind in ("timestamptz", "timestamp"):
                what = "timestamps with microseconds cut to milliseconds (--timestamps epoch-ms)"
                tests.append((i, f"extract(microseconds FROM {name})::bigint % 1000 <> 0", what))
        counts = [f"count(*) FILTER (WHERE {test})" for _, test, _ in tests]
        sql = f"SELECT {', '.join(['count(*)', *counts])} FROM {source_from}"
        result = self.q(sql + (f" WHERE ({where})" if where else ""))[0]
        for (i, _, what), n in zip(tests, result[1:], strict=True):
            if what == "nan":
                if not n:  # no NaN: Postgres turns -0 into 0 (as SQLite stores it)
                    t.mappings[i] = Mapping("REAL", "({c} + 0)", kind="float")
            elif n:
                self.issue(f"column {t.qualified}.{t.columns[i].name}", f"{n} {what}")
        return int(result[0])

    # -- indexes, views and the rest ----------------------------------------------------------
    def _indexes(self, by_oid: dict[int, _Table]) -> None:
        for row in self.q(_INDEXES, list(by_oid)):
            relid, name, unique, am, _, predicate, options, keys, constraint, full = row
            if constraint:
                continue  # primary keys and unique constraints are in CREATE TABLE
            t = by_oid[relid]
            label = f"index {t.schema}.{name}"
            if am not in ("btree", "hash"):
                self.issue(label, f"{am.upper()} index: D1 has B-tree indexes only ({full})")
                continue
            pairs = zip(t.columns, t.mappings, strict=True)
            numeric = {c.name for c, m in pairs if m.kind == "numeric-text"}
            ctx = ExprContext(
                self.opt.timestamps, self.literal, numeric_columns=numeric, tables=self.ctx_tables
            )
            try:
                parts = []
                for i, key in enumerate(keys):
                    names = [c.name for c in t.columns]
                    bare = key.strip('"').replace('""', '"')
                    expr = quote(bare) if bare in names else f"({translate_expr(key, ctx)})"
                    if options and options[i] & 1:
                        expr += " DESC"
                    parts.append(expr)
                sql = (
                    f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {quote(name)} "
                    f"ON {quote(t.d1)} ({', '.join(parts)})"
                )
                if predicate:
                    sql += f" WHERE {translate_expr(predicate, ctx)}"
            except Untranslatable as e:
                self.issue(label, f"{full}: not translated: {e}")
                continue
            self.plan_.finish_sql.append(sql)

    def _views(self, views: list[_Table], names: set[str]) -> None:
        ctx = ExprContext(self.opt.timestamps, self.literal, tables=self.ctx_tables)
        for v in views:
            definition = self.q("SELECT pg_get_viewdef(%s, true)", v.oid)[0][0]
            name = v.d1
            if name in names:
                self.issue(f"view {v.qualified}", f"its name is taken by a table ({name})")
                continue
            try:
                body = translate_expr(definition, ctx)
            except Untranslatable as e:
                self.issue(f"view {v.qualified}", f"not translated: {e}")
                continue
            self.plan_.finish_sql.append(f"CREATE VIEW IF NOT EXISTS {quote(name)} AS {body}")

    def _report_objects(self, schemas: list[str], oids: list[int]) -> None:
        for _, name, definition in self.q(_TRIGGERS, oids):
            self.issue(
                f"trigger {name}",
                f"{definition}: PL/pgSQL trigger functions cannot run in D1; "
                "rewrite as SQLite triggers or application code",
            )
        for schema, name, kind in self.q(_FUNCTIONS, schemas):
            what = {"p": "procedure", "a": "aggregate", "w": "window function"}.get(
                kind, "function"
            )
            self.issue(f"{what} {schema}.{name}", "D1 cannot run Postgres functions")
        for _, name in self.q(_POLICIES, oids):
            self.issue(
                f"policy {name}", "row-level security: D1 has none; enforce it in the server"
            )
        for (ext,) in self.q("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'"):
            reason = EXTENSION_REASONS.get(ext, "D1 cannot load Postgres extensions")
            self.issue(f"extension {ext}", reason)
        owned = """SELECT n.nspname, c.relname FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind = 'S' AND n.nspname = ANY(%s) AND NOT EXISTS
                   (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))"""
        for schema, name in self.q(owned, schemas):
            self.issue(f"sequence {schema}.{name}", "standalone sequence: D1 has no sequences")


def _cols(names: list[str]) -> str:
    return ", ".join(quote(n) for n in names)


def _load_order(tables: list[_Table], by_oid: dict[int, _Table]) -> tuple[list[_Table], set[str]]:
    edges: dict[str, set[str]] = {t.d1: set() for t in tables}
    for t in tables:
        for row in t.constraints:
            if row[2] == "f" and row[4] in by_oid:
                edges[t.d1].add(by_oid[row[4]].d1)
    order, cyclic = load_order(edges)
    named = {t.d1: t for t in tables}
    return [named[n] for n in order], cyclic
