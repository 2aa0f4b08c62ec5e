"""Supabase auth: `auth.users` and `auth.identities` into the server's `users` and
`accounts` tables (0001_accounts.sql: Auth.js's D1 adapter columns plus role, type,
password_hash, created_at).

bcrypt hashes (`encrypted_password`, `$2a$...`) are copied as they are, so users
sign in with their old passwords. Only the target's existing columns are written,
with upserts by id: re-running updates the same rows and never duplicates them.

| users column    | from auth.users                                            |
|-----------------|------------------------------------------------------------|
| id              | id                                                         |
| name            | raw_user_meta_data ->> 'full_name', else ->> 'name'        |
| email           | email                                                      |
| emailVerified   | email_confirmed_at, ISO 8601 with milliseconds (Auth.js)   |
| image           | raw_user_meta_data ->> 'avatar_url', else ->> 'picture'    |
| role            | raw_app_meta_data ->> 'role', else 'user'                  |
| type            | 'guest' for anonymous users, else 'regular'                |
| password_hash   | encrypted_password (NULL when empty: OAuth-only users)     |
| created_at      | created_at, ISO 8601 with milliseconds                     |

`accounts` rows come from `auth.identities` of OAuth providers (type 'oauth',
provider, providerAccountId = the provider's user id); email identities need none.
Soft-deleted users (`deleted_at`) are left out and counted in the report.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model import TablePlan

if TYPE_CHECKING:
    from .postgres import _Planner

SERVER_TABLES = ("users", "accounts")
_ISO_MS = """to_char(({c}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


async def accounts_columns(db: Any) -> dict[str, list[str]] | None:
    """The columns of `users` and `accounts` in a D1 binding, or None without `users`."""
    columns: dict[str, list[str]] = {}
    for table in SERVER_TABLES:
        rows = await db.prepare(f"PRAGMA table_info({table})").raw()
        if rows:
            columns[table] = [r[1] for r in rows]
    return columns if "users" in columns else None


def accounts_columns_from_migrations(*folders: Path) -> dict[str, list[str]] | None:
    """The same, from D1 migration files (applied to a scratch in-memory database)."""
    from ...platform.d1 import split_statements
    from ...platform.migrations import migration_files

    for folder in folders:
        conn = sqlite3.connect(":memory:")
        try:
            for path in migration_files(folder):
                for statement in split_statements(path.read_text(encoding="utf-8")):
                    try:
                        conn.execute(statement)
                    except sqlite3.Error:
                        continue
            columns = {
                t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in SERVER_TABLES
            }
        finally:
            conn.close()
        if columns["users"]:
            return {t: c for t, c in columns.items() if c}
    return None


def server_migrations() -> Path:
    """The migrations folder shipped with the server (0001_accounts.sql, ...)."""
    return Path(__file__).resolve().parents[2] / "server" / "migrations"


def has_auth_users(planner: _Planner) -> bool:
    rows = planner.q(
        """SELECT 1 FROM information_schema.columns
           WHERE table_schema = 'auth' AND table_name = 'users'
             AND column_name = 'encrypted_password'"""
    )
    return bool(rows)


def plan_auth(planner: _Planner, target: dict[str, list[str]]) -> None:
    """Add the stages users <- auth.users and accounts <- auth.identities."""
    if not has_auth_users(planner):
        return
    clash = [t for t in planner.plan_.tables if t.name in SERVER_TABLES]
    for table in clash:
        from .postgres import SourceError

        raise SourceError(
            f"source table {table.source} would be written into the server's {table.name} "
            f"table, which Supabase's auth.users fills: --exclude {table.source}, or --no-auth"
        )
    source_cols = _columns(planner, "users")
    deleted = "deleted_at" in source_cols
    where = "deleted_at IS NULL" if deleted else None
    if deleted:
        n = planner.q("SELECT count(*) FROM auth.users WHERE deleted_at IS NOT NULL")[0][0]
        if n:
            planner.issue("auth.users", f"{n} soft-deleted users (deleted_at) are not migrated")
    guest = "CASE WHEN is_anonymous THEN 'guest' ELSE 'regular' END"
    exprs = {
        "id": "id::text",
        "name": "COALESCE(raw_user_meta_data ->> 'full_name', raw_user_meta_data ->> 'name')",
        "email": "email::text",
        "emailVerified": _ISO_MS.format(c="email_confirmed_at"),
        "image": "COALESCE(raw_user_meta_data ->> 'avatar_url', raw_user_meta_data ->> 'picture')",
        "role": "COALESCE(raw_app_meta_data ->> 'role', 'user')",
        "type": guest if "is_anonymous" in source_cols else "'regular'",
        "password_hash": "NULLIF(encrypted_password, '')::text",
        "created_at": _ISO_MS.format(c="COALESCE(created_at, now())"),
    }
    users = [c for c in exprs if c in target["users"]]
    _add(planner, "users", "auth.users", users, [exprs[c] for c in users], "uuid", where)
    if "accounts" not in target or not _columns(planner, "identities"):
        return
    identity_cols = _columns(planner, "identities")
    account_id = "provider_id" if "provider_id" in identity_cols else "id"
    accounts = {
        "id": "id::text",
        "userId": "user_id::text",
        "type": "'oauth'",
        "provider": "provider",
        "providerAccountId": f"{account_id}::text",
    }
    cols = [c for c in accounts if c in target["accounts"]]
    _add(
        planner,
        "accounts",
        "auth.identities",
        cols,
        [accounts[c] for c in cols],
        "uuid" if "provider_id" in identity_cols else "text",
        "provider <> 'email'"
        + (
            " AND user_id IN (SELECT id FROM auth.users WHERE deleted_at IS NULL)"
            if deleted
            else ""
        ),
    )


def _columns(planner: _Planner, table: str) -> list[str]:
    return [
        r[0]
        for r in planner.q(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'auth' AND table_name = %s",
            table,
        )
    ]


def _add(
    planner: _Planner,
    name: str,
    source: str,
    columns: list[str],
    select: list[str],
    key_type: str,
    where: str | None,
) -> None:
    count = f"SELECT count(*) FROM {source}" + (f" WHERE {where}" if where else "")
    plan = TablePlan(
        name=name,
        source=source,
        columns=columns,
        key=["id"],
        create_sql=None,
        rows=int(planner.q(count)[0][0]),
        upsert=True,
    )
    plan.extra.update(
        select=select,
        first_pass=select,
        convert=None,
        key_sql=["id"],
        key_types=[key_type],
        where=where,
        **{"from": source},
    )
    planner.plan_.tables.append(plan)
