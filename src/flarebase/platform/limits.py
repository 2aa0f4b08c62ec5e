"""Cloudflare's documented limits, in one place (see shared/reference/cloudflare-limits.md)."""

from __future__ import annotations

import sqlite3

# D1 (and SQLite-backed Durable Objects). Applied as SQLite's own run-time limits,
# which is how workerd enforces them: no per-query cost.
D1_MAX_DATABASE_BYTES = 10 * 1000**3  # Paid plan; Free is 500 MB
D1_QUERY_SECONDS = 30
D1_SQLITE_LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: 2_000_000,  # row / string / BLOB (docs; workerd: 4 MiB)
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 100_000,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 100,
    sqlite3.SQLITE_LIMIT_COLUMN: 100,
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 32,  # docs; workerd: 127
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 50,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 5,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 100,
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 10,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
}
