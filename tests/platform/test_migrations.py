"""D1 migrations: flarebase and `wrangler d1 migrations apply --local` must agree."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flarebase.cli import app
from flarebase.platform import D1Error, open_env
from flarebase.platform.migrations import apply_migrations, create_migration, list_migrations

ROOT = Path(__file__).resolve().parents[2]
WRANGLER = ROOT / "bridge" / "node_modules" / ".bin" / "wrangler"

CONFIG = """name = "m"
compatibility_date = "2025-09-29"
[[d1_databases]]
binding = "DB"
database_name = "app"
database_id = "00000000-0000-0000-0000-000000000000"
"""
MIGRATIONS = {
    "0001_init.sql": """-- Migration number: 0001
CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, created_at INTEGER);
CREATE INDEX users_created ON users(created_at);
""",
    "0002_chats.sql": """CREATE TABLE chats (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  title TEXT DEFAULT 'New chat; untitled'
);
CREATE TRIGGER chats_title AFTER INSERT ON chats WHEN NEW.title IS NULL
BEGIN UPDATE chats SET title = 'untitled' WHERE id = NEW.id; END;
CREATE VIEW chat_counts AS SELECT user_id, count(*) AS n FROM chats GROUP BY user_id;
INSERT INTO users VALUES ('u1', 'a@example.com', 0);
INSERT INTO chats (user_id) VALUES ('u1');
""",
    "0003_fts.sql": "CREATE VIRTUAL TABLE notes USING fts5(body);\n-- trailing comment\n",
}


def project(tmp_path: Path) -> Path:
    (tmp_path / "migrations").mkdir(parents=True)
    for name, sql in MIGRATIONS.items():
        (tmp_path / "migrations" / name).write_text(sql)
    (tmp_path / "wrangler.toml").write_text(CONFIG)
    return tmp_path / "wrangler.toml"


def schema_and_records(path: Path) -> tuple[list[tuple[str, str, str]], list[tuple[int, str]]]:
    conn = sqlite3.connect(path)
    try:
        schema = conn.execute(
            "SELECT type, name, sql FROM sqlite_master "
            "WHERE name NOT LIKE '_cf_%' ORDER BY type, name"
        ).fetchall()
        records = conn.execute("SELECT id, name FROM d1_migrations ORDER BY id").fetchall()
        data = conn.execute("SELECT * FROM chats").fetchall()
    finally:
        conn.close()
    return schema, [*records, *data]


def test_same_rows_and_schema_as_wrangler(tmp_path: Path) -> None:
    assert WRANGLER.exists(), "npm packages missing: run `npm ci` in bridge/ (scripts/test does)"
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    config_ours = project(ours)
    project(theirs)
    result = CliRunner().invoke(app, ["db", "migrations", "apply", "DB", "-c", str(config_ours)])
    assert result.exit_code == 0, result.output
    assert "applied 3 migration(s)" in result.output
    subprocess.run(
        [str(WRANGLER), "d1", "migrations", "apply", "app", "--local"],
        cwd=theirs,
        check=True,
        capture_output=True,
        env={**os.environ, "CI": "true", "WRANGLER_SEND_METRICS": "false"},
        timeout=120,
    )
    [wrangler_db] = [
        p
        for p in (theirs / ".wrangler/state/v3/d1/miniflare-D1DatabaseObject").glob("*.sqlite")
        if p.name != "metadata.sqlite"
    ]
    ours_schema, ours_rows = schema_and_records(ours / ".flarebase/state/d1/app.sqlite3")
    theirs_schema, theirs_rows = schema_and_records(wrangler_db)
    assert ours_rows == theirs_rows
    assert ours_rows[:3] == [(1, "0001_init.sql"), (2, "0002_chats.sql"), (3, "0003_fts.sql")]
    assert ours_schema == theirs_schema


async def test_apply_is_idempotent_and_atomic(tmp_path: Path) -> None:
    config = project(tmp_path)
    bad = tmp_path / "migrations" / "0004_bad.sql"
    bad.write_text("CREATE TABLE half (x);\nINSERT INTO missing VALUES (1);\n")
    async with open_env(config, state_dir=tmp_path / "s") as env:
        folder = tmp_path / "migrations"
        with pytest.raises(D1Error, match="no such table: missing"):
            await apply_migrations(env.DB, folder)
        status = {m.name: m.applied for m in await list_migrations(env.DB, folder)}
        assert status == {
            "0001_init.sql": True,
            "0002_chats.sql": True,
            "0003_fts.sql": True,
            "0004_bad.sql": False,
        }
        # The failed file left nothing behind: its first statement was rolled back.
        tables = await env.DB.prepare("SELECT name FROM sqlite_master WHERE name = 'half'").all()
        assert tables.results == []
        bad.write_text("CREATE TABLE half (x);\n")
        assert await apply_migrations(env.DB, folder) == ["0004_bad.sql"]
        assert await apply_migrations(env.DB, folder) == []


def test_create_numbers_files_like_wrangler(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    first = create_migration(folder, "add users table")
    second = create_migration(folder, "two")
    assert (first.name, second.name) == ("0001_add_users_table.sql", "0002_two.sql")
    assert first.read_text().startswith("-- Migration number: 0001 \t ")
    with pytest.raises(Exception, match="invalid migration name"):
        create_migration(folder, "../escape")


def test_cli_create_list_and_execute(tmp_path: Path) -> None:
    config = str(project(tmp_path))
    runner = CliRunner()
    created = runner.invoke(app, ["db", "migrations", "create", "DB", "more", "-c", config])
    assert created.exit_code == 0 and "0004_more.sql" in created.output
    listed = runner.invoke(app, ["db", "migrations", "list", "-c", config])
    assert listed.exit_code == 0
    assert listed.output.count("pending") == 4
    applied = runner.invoke(app, ["db", "migrations", "apply", "-c", config])
    assert "applied 4 migration(s)" in applied.output
    rows = runner.invoke(
        app, ["db", "execute", "DB", "--command", "SELECT email FROM users", "-c", config]
    )
    assert rows.exit_code == 0 and '"email": "a@example.com"' in rows.output
    bad = runner.invoke(app, ["db", "execute", "DB", "--command", "SELEC 1", "-c", config])
    assert bad.exit_code == 1 and "syntax error" in bad.output
    both = runner.invoke(app, ["db", "execute", "DB", "-c", config])
    assert both.exit_code == 2
    missing = runner.invoke(app, ["db", "migrations", "list", "NOPE", "-c", config])
    assert missing.exit_code == 1 and "no D1 database with binding or name 'NOPE'" in missing.output


def test_cli_dev_reports_bindings_and_applies_migrations(tmp_path: Path) -> None:
    config = str(project(tmp_path))
    result = CliRunner().invoke(app, ["dev", "--no-serve", "-c", config])
    assert result.exit_code == 0, result.output
    assert "applied 0001_init.sql, 0002_chats.sql, 0003_fts.sql" in result.output
    assert "DB" in result.output and "D1" in result.output
