"""Migration tests run against a real PostgreSQL 15 (started here, stopped at the end)
and the local D1 provider; the `--sql-out` test also runs npm wrangler (Miniflare's D1).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from typer.testing import CliRunner

from flarebase.cli import app

from .pg import PostgresServer, postgres_server

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SERVER_MIGRATIONS = ROOT / "src" / "flarebase" / "server" / "migrations"
FLAREBASE = Path(sys.executable).with_name("flarebase")
PASSWORDS = {"ann@example.com": "correct horse 1", "ben@example.com": "correct horse 2"}


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def chat_sql() -> str:
    """schema.sql + data.sql, with bcrypt hashes as Supabase stores them ($2a$)."""
    hashes = [
        bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2a$", 1)
        for p in PASSWORDS.values()
    ]
    data = (HERE / "data.sql").read_text(encoding="utf-8")
    data = data.replace(":'hash1'", f"'{hashes[0]}'").replace(":'hash2'", f"'{hashes[1]}'")
    return (HERE / "schema.sql").read_text(encoding="utf-8") + data


@pytest.fixture(scope="session")
def chat_url(pg: PostgresServer) -> str:
    """The chat app's database (read-only for tests: make another to change one)."""
    return pg.create_database("chat", chat_sql())


@dataclass
class Project:
    """A wrangler project whose D1 binding DB is the migration target."""

    root: Path
    migrations: Path

    @property
    def config(self) -> Path:
        return self.root / "wrangler.toml"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def database(self) -> Path:
        return self.state / "d1" / "app.sqlite3"

    def cli(self, *args: str, code: int = 0) -> Any:
        """Run `flarebase <args>` here; assert the exit status."""
        old = Path.cwd()
        os.chdir(self.root)
        try:
            result = CliRunner().invoke(app, list(args))
        finally:
            os.chdir(old)
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        return result

    def migrate(self, kind: str, source: str, *args: str, code: int = 0) -> Any:
        base = ["migrate", kind, source, "--config", str(self.config)]
        return self.cli(*base, "--state-dir", str(self.state), *args, code=code)

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.database)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            return [tuple(r) for r in conn.execute(query, params).fetchall()]
        finally:
            conn.close()


def make_project(root: Path, migrations: Path | None = None, vars: str = "") -> Project:
    """`migrations`: the D1 migrations folder (default: only the server's accounts)."""
    root.mkdir(parents=True, exist_ok=True)
    if migrations is None:
        migrations = root / "migrations"
        migrations.mkdir(exist_ok=True)
        shutil.copy(SERVER_MIGRATIONS / "0001_accounts.sql", migrations)
    (root / "wrangler.toml").write_text(
        f"""name = "migrate-test"
compatibility_date = "2025-09-29"
{vars}
[[d1_databases]]
binding = "DB"
database_name = "app"
database_id = "00000000-0000-0000-0000-000000000000"
migrations_dir = "{migrations}"
""",
        encoding="utf-8",
    )
    return Project(root, migrations)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project")


def pg_rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(query, params or None).fetchall()]
