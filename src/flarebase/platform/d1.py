"""D1 result shapes, shared by every provider (Cloudflare's names, snake_case)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class D1Meta:
    duration: float = 0.0  # milliseconds
    changes: int = 0
    last_row_id: int = 0
    changed_db: bool = False
    size_after: int = 0
    rows_read: int = 0
    rows_written: int = 0
    served_by: str = "flarebase.local"


@dataclass(slots=True)
class D1Result:
    results: list[dict[str, Any]] = field(default_factory=list)
    success: bool = True
    meta: D1Meta = field(default_factory=D1Meta)


@dataclass(slots=True)
class D1ExecResult:
    count: int
    duration: float  # milliseconds


def split_statements(sql: str) -> list[str]:
    """Split SQL text into complete statements (semicolons in strings and triggers kept)."""
    import sqlite3  # lazily: Pyodide loads sqlite3 only on demand

    statements, pending = [], ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \t\r\n;"):
        statements.append(pending.strip().removesuffix(";"))
    return statements


def script_statements(sql: str) -> list[str]:
    """The statements of an SQL file, comment-only ones left out: what `wrangler d1
    execute --file` and `migrations apply` send as one batch."""
    return [s for s in split_statements(sql) if not _only_comments(s)]


def _only_comments(statement: str) -> bool:
    lines = (line.strip() for line in statement.splitlines())
    return all(not line or line.startswith("--") or line == ";" for line in lines)
