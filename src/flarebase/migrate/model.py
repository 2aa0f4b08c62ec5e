"""The plan of a migration: what each source table becomes in D1, and what cannot move.

A source (Postgres, SQLite, ...) reads its catalog into a `Plan`; the engine copies
the tables in plan order into a target, then runs the plan's finishing SQL. Rows are
tuples of D1 values (None, int, float, str, bytes) in the order of `TablePlan.columns`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Row = tuple[Any, ...]
Key = list[Any]  # a keyset position, JSON-serializable (stored in checkpoints)


@dataclass
class Issue:
    """Something the migration did not carry over as it was, and why. Never silent."""

    object: str  # "trigger public.audit", "default of public.orders.code", ...
    reason: str
    severity: str = "warning"  # "warning": translated differently or left out; "error": data

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TablePlan:
    """One stage of rows: a source table (or query) written into one D1 table."""

    name: str  # the D1 table
    source: str  # how the source names it, for reports ("public.orders")
    columns: list[str]  # D1 columns, in row order
    key: list[str] = field(default_factory=list)  # D1 columns identifying a row ([] = none)
    create_sql: str | None = None  # None: the table exists already (e.g. the server's users)
    rows: int = 0  # rows the source holds (after --where), for progress and the report
    # Columns written NULL on the first pass and set by a second pass, because they
    # reference rows that may come later (foreign-key cycles, self-references).
    deferred: list[str] = field(default_factory=list)
    # For tables that exist already: on a key conflict, update these columns (upsert).
    upsert: bool = False
    # Tables that must be loaded before this one (foreign keys), for ordering.
    depends_on: list[str] = field(default_factory=list)
    # Source-specific reading instructions (queries, converters); not serialized.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def stage(self) -> str:
        return f"copy:{self.name}"

    def complete(self) -> TablePlan:
        """This table read with its deferred columns (as verification and one-transaction
        targets read it)."""
        if not self.deferred:
            return self
        return TablePlan(**{**self.__dict__, "extra": {**self.extra, "complete": True}})

    @property
    def nulls_deferred(self) -> bool:
        """Whether reading this table yields NULL for its deferred columns (first pass)."""
        return bool(self.deferred) and not self.extra.get("complete")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "columns": self.columns,
            "key": self.key,
            "rows": self.rows,
            "deferred": self.deferred,
            "existing_table": self.create_sql is None,
        }


@dataclass
class Plan:
    """Everything a migration will do, decided before it writes anything."""

    source: str  # a description without secrets
    tables: list[TablePlan] = field(default_factory=list)  # in load order
    finish_sql: list[str] = field(default_factory=list)  # indexes, views, triggers
    sequences: dict[str, int] = field(default_factory=dict)  # AUTOINCREMENT table -> last value
    issues: list[Issue] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str) -> TablePlan:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    def schema_sql(self) -> list[str]:
        return [t.create_sql for t in self.tables if t.create_sql]

    def issue(self, object: str, reason: str, severity: str = "warning") -> None:
        self.issues.append(Issue(object, reason, severity))

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "options": self.options,
            "tables": [t.to_json() for t in self.tables],
            "schema": self.schema_sql(),
            "finish": self.finish_sql,
            "sequences": self.sequences,
            "issues": [i.to_json() for i in self.issues],
        }


def quote(name: str) -> str:
    """An SQL identifier, double-quoted (as both Postgres and SQLite read it)."""
    return '"' + name.replace('"', '""') + '"'
