"""Rows into D1 statements that respect D1's limits.

Bound statements (a D1 binding): multi-row INSERTs of at most 100 bound
parameters each. SQL text (`--sql-out`): multi-row INSERTs of literals up to
100,000 bytes each; a row whose literals alone exceed that is inserted with its
large values empty and completed by `UPDATE ... SET c = c || <chunk>` statements.
Rows over D1's 2,000,000-byte row limit cannot be stored at all: the caller
reports them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

from .model import Row, quote
from .translate import sql_literal

MAX_PARAMS = 100
MAX_SQL_BYTES = 100_000
MAX_ROW_BYTES = 2_000_000
SQL_BUDGET = 90_000  # room for the statement's own text around the values
CHUNK = 40_000  # characters (or bytes) of one large value per UPDATE statement


def value_bytes(value: Any) -> int:
    if type(value) is str:
        return len(value) if value.isascii() else len(value.encode("utf-8"))
    if type(value) is bytes:
        return len(value)
    return 8


def row_bytes(row: Row) -> int:
    return sum(value_bytes(v) for v in row)


def rows_per_statement(columns: int) -> int:
    return max(1, MAX_PARAMS // max(1, columns))


def insert_sql(
    table: str, columns: Sequence[str], rows: int, upsert_key: Sequence[str] | None = None
) -> str:
    marks = "(" + ", ".join("?" * len(columns)) + ")"
    sql = (
        f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES {', '.join([marks] * rows)}"
    )
    if upsert_key:
        updates = [f"{quote(c)} = excluded.{quote(c)}" for c in columns if c not in upsert_key]
        action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
        sql += f" ON CONFLICT ({', '.join(quote(k) for k in upsert_key)}) {action}"
    return sql


def bound_inserts(
    table: str, columns: Sequence[str], rows: Sequence[Row], upsert_key: Sequence[str] | None = None
) -> Iterator[tuple[str, list[Any]]]:
    """(sql, params) pairs, each within D1's 100 bound parameters."""
    per = rows_per_statement(len(columns))
    full = insert_sql(table, columns, per, upsert_key)
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        sql = full if len(chunk) == per else insert_sql(table, columns, len(chunk), upsert_key)
        yield sql, list(chain.from_iterable(chunk))


def update_sql(table: str, key: Sequence[str], columns: Sequence[str]) -> str:
    sets = ", ".join(f"{quote(c)} = ?" for c in columns)
    where = " AND ".join(f"{quote(k)} = ?" for k in key)
    return f"UPDATE {quote(table)} SET {sets} WHERE {where}"


def literal_inserts(
    table: str, columns: Sequence[str], rows: Sequence[Row], key: Sequence[str] = ()
) -> Iterator[str]:
    """INSERT statements of literals, each under D1's 100,000-byte statement limit."""
    head = f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) VALUES "
    pending: list[str] = []
    size = len(head)
    for row in rows:
        text = "(" + ", ".join(map(sql_literal, row)) + ")"
        n = len(text) if text.isascii() else len(text.encode("utf-8"))
        if n + len(head) > SQL_BUDGET:
            if pending:
                yield head + ", ".join(pending) + ";"
                pending, size = [], len(head)
            yield from _split_row(table, columns, row, key)
            continue
        if size + n + 2 > SQL_BUDGET and pending:
            yield head + ", ".join(pending) + ";"
            pending, size = [], len(head)
        pending.append(text)
        size += n + 2
    if pending:
        yield head + ", ".join(pending) + ";"


def _split_row(table: str, columns: Sequence[str], row: Row, key: Sequence[str]) -> Iterator[str]:
    """One oversize row: INSERT with large values empty, then append them in chunks."""
    large = {
        i for i, v in enumerate(row) if type(v) in (str, bytes) and len(sql_literal(v)) > CHUNK
    }
    first = [
        ("''" if type(v) is str else "X''") if i in large else sql_literal(v)
        for i, v in enumerate(row)
    ]
    cols = ", ".join(quote(c) for c in columns)
    yield f"INSERT INTO {quote(table)} ({cols}) VALUES ({', '.join(first)});"
    if key:
        idx = [list(columns).index(k) for k in key]
        where = " AND ".join(f"{quote(columns[i])} = {sql_literal(row[i])}" for i in idx)
    else:
        where = "rowid = last_insert_rowid()"
    for i in sorted(large):
        col = quote(columns[i])
        value = row[i]
        if type(value) is bytes:
            for start in range(0, len(value), CHUNK // 2):
                piece = value[start : start + CHUNK // 2].hex()
                yield (
                    f"UPDATE {quote(table)} SET {col} = CAST({col} || X'{piece}' AS BLOB) "
                    f"WHERE {where};"
                )
        else:
            for start in range(0, len(value), CHUNK // 4):
                piece = sql_literal(value[start : start + CHUNK // 4])
                yield f"UPDATE {quote(table)} SET {col} = {col} || {piece} WHERE {where};"
