"""Postgres -> D1: the migrated database answers like the original, keeps its
constraints and defaults, lists what it could not carry over, and proves it."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from .conftest import PASSWORDS, Project, make_project, pg_rows

# Queries both databases answer with the same SQL text.
SAME_SQL = [
    "SELECT id, email, name FROM members WHERE active ORDER BY id",
    "SELECT id, mood FROM members WHERE mood IS NOT NULL ORDER BY id",
    "SELECT id, small, whole FROM members WHERE small IS NOT NULL ORDER BY id",
    "SELECT user_id, chats FROM chat_counts ORDER BY user_id",
    "SELECT id, email FROM active_members ORDER BY id",
    "SELECT count(*) FROM messages WHERE parts->0->>'type' = 'text'",
    "SELECT id, prefs->>'theme' FROM members WHERE id <= 4 ORDER BY id",
    "SELECT tag, count(*) FROM chat_tags GROUP BY tag ORDER BY tag",
    "SELECT m.id, c.title FROM messages m JOIN chats c ON c.id = m.chat_id "
    "WHERE m.parent_id > m.id ORDER BY m.id",
    "SELECT m.id, p.role FROM messages m JOIN messages p ON p.id = m.parent_id "
    "WHERE m.id % 97 = 0 ORDER BY m.id",
    "SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind NULLS FIRST",
    "SELECT id FROM members WHERE id >= 5 ORDER BY created_at DESC, id LIMIT 25",
    "SELECT visibility, count(*) FROM chats GROUP BY visibility ORDER BY visibility",
]
# (Postgres, D1) pairs where the representation differs (documented in translate.py).
PAIRS = [
    (
        "SELECT id, balance::text, big::text FROM members WHERE id <= 4 ORDER BY id",
        "SELECT id, balance, big FROM members WHERE id <= 4 ORDER BY id",
    ),
    (
        "SELECT id::text FROM chats WHERE created_at >= '2024-02-01 01:00:00+00' ORDER BY id",
        "SELECT id FROM chats WHERE created_at >= '2024-02-01T01:00:00.000000Z' ORDER BY id",
    ),
    ("SELECT id, uid::text FROM members ORDER BY id", "SELECT id, uid FROM members ORDER BY id"),
    (
        "SELECT id, active::int, to_json(tags)::text FROM members ORDER BY id",
        "SELECT id, active, tags FROM members ORDER BY id",
    ),
    (
        "SELECT id, encode(avatar, 'hex') FROM members WHERE avatar IS NOT NULL ORDER BY id",
        "SELECT id, lower(hex(avatar)) FROM members WHERE avatar IS NOT NULL ORDER BY id",
    ),
    (
        "SELECT id, score FROM members WHERE score <> 'NaN' ORDER BY id",
        "SELECT id, score FROM members WHERE typeof(score) = 'real' ORDER BY id",
    ),
    (
        "SELECT id, to_char(birthday, 'YYYY-MM-DD') FROM members WHERE isfinite(birthday) "
        "ORDER BY id",
        "SELECT id, birthday FROM members WHERE birthday <> 'infinity' ORDER BY id",
    ),
]


@pytest.fixture(scope="module")
def migrated(chat_url: str, tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = make_project(tmp_path_factory.mktemp("migrated"))
    project.migrate("postgres", chat_url, "--d1", "DB", "--report", "report.json")
    return project


def report_of(project: Project, name: str = "report.json") -> dict[str, Any]:
    return json.loads((project.root / name).read_text())


def test_migrated_database_answers_the_same_queries(chat_url: str, migrated: Project) -> None:
    for query in SAME_SQL:
        assert migrated.sql(query) == pg_rows(chat_url, query), query
    for pg_query, d1_query in PAIRS:
        expected = pg_rows(chat_url, pg_query)
        assert expected, pg_query
        assert migrated.sql(d1_query) == expected, d1_query


def test_report_says_verified_and_lists_what_was_not_carried_over(migrated: Project) -> None:
    report = report_of(migrated)
    assert report["status"] == "verified" and report["ok"]
    checks = {t["table"]: t for t in report["verification"]["tables"]}
    assert checks["messages"]["source_rows"] == checks["messages"]["target_rows"] == 3000
    assert checks["events"]["target_rows"] == 1200  # keyless, with duplicate rows
    assert all(t["source_checksum"] == t["target_checksum"] for t in checks.values())
    objects = {i["object"]: i["reason"] for i in report["issues"]}
    assert "PL/pgSQL" in objects["trigger members_touch"]
    assert "function public.touch" in objects
    assert "GIN" in objects["index public.members_prefs"]
    assert "inet" in objects["column public.members.ip"]
    assert "domain" in objects["column public.members.email"]
    assert "ctid" in objects["table public.events"]
    assert any(o.startswith("extension pgcrypto") for o in objects)


def test_values_have_the_documented_representation(migrated: Project) -> None:
    ada, bob, carol = migrated.sql(
        "SELECT created_at, updated_at, birthday, wake_up, trial, prefs, tags, scores, score, "
        "ratio, big, avatar, active, mood FROM members WHERE id <= 3 ORDER BY id"
    )
    assert ada[:5] == (
        "2024-01-02T03:04:05.123456Z",
        "2024-01-02T03:04:05.000000",
        "1815-12-10",
        "07:30:00",
        "P1DT2H",
    )
    assert json.loads(ada[5]) == {"theme": "dark", "n": [1, 2.5, None]}
    assert json.loads(ada[6]) == ["a", "b c", None, "q'uote"]
    assert ada[7] == "[1,2,3]" and ada[8] == 0.1
    assert ada[10] == "123456789012345678901234567890.123456789"  # exact
    assert ada[11] == b"\x00\xff\x00" and ada[12] == 1 and ada[13] == "happy"
    assert bob[:3] == ("infinity", "-infinity", "infinity")
    assert bob[7] == "[[1,2],[3,4]]" and bob[8] == "NaN" and bob[9] == 0.0 and bob[10] == "NaN"
    assert bob[11] == b"" and bob[12] == 0 and bob[13] == "it's complicated"
    assert carol[0] == "0044-03-15 12:00:00+00 BC" and carol[8] == float("-inf")


def test_constraints_defaults_and_sequences_hold_in_d1(migrated: Project) -> None:
    conn = sqlite3.connect(migrated.database)
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        new_id = conn.execute("INSERT INTO members (email) VALUES ('eve@example.com') RETURNING id")
        assert new_id.fetchone()[0] == 1001  # Postgres's sequence was at 1000
        row = conn.execute(
            "SELECT uid, active, mood, balance, prefs, tags, created_at FROM members "
            "WHERE id = 1001"
        ).fetchone()
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", row[0]
        )
        assert row[1:6] == (1, "happy", "0.00", "{}", "[]")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row[6])
        chat = conn.execute(
            "INSERT INTO chats (user_id) VALUES (1001) RETURNING id, title, visibility"
        )
        chat_id, *rest = chat.fetchone()
        assert rest == ["New chat", "private"]
        conn.execute("INSERT INTO chat_tags (chat_id, tag) VALUES (?, 'new')", (chat_id,))
        refused = [
            "INSERT INTO chats (user_id, visibility) VALUES (1, 'secret')",
            "INSERT INTO messages (chat_id, role, parts) "
            "VALUES ((SELECT id FROM chats LIMIT 1), 'robot', '[]')",
            "INSERT INTO members (email, mood) VALUES ('x@example.com', 'angry')",
            "INSERT INTO members (email, active) VALUES ('y@example.com', 2)",
            "INSERT INTO members (email, balance) VALUES ('z@example.com', '-1')",
            "INSERT INTO members (email, name) VALUES ('w@example.com', '')",
            "INSERT INTO chats (user_id) VALUES (999999)",
            "INSERT INTO members (email) VALUES ('ADA@EXAMPLE.COM')",  # unique lower(email)
            "INSERT INTO chat_tags (chat_id, tag) SELECT chat_id, tag FROM chat_tags LIMIT 1",
        ]
        for sql in refused:
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(sql)
        # ON DELETE CASCADE came along (members -> chats -> chat_tags)
        conn.execute("DELETE FROM members WHERE id = 1001")
        assert conn.execute(
            "SELECT count(*) FROM chat_tags WHERE chat_id = ?", (chat_id,)
        ).fetchone() == (0,)
        # ... and so did NO ACTION: a message still answered by another cannot go
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("DELETE FROM messages WHERE id = 15")
        conn.rollback()
        indexes = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
        assert "WHERE active" in indexes["members_active_created"]
        assert "IN ('happy', 'sad')" in indexes["members_mood"]
        assert "lower(email)" in indexes["members_email_lower"]
        assert (
            conn.execute(
                "SELECT name FROM sqlite_master WHERE name = '_flarebase_migrate'"
            ).fetchall()
            == []
        )
    finally:
        conn.close()


def test_supabase_users_keep_their_passwords(migrated: Project) -> None:
    import bcrypt

    users = {
        r[0]: r
        for r in migrated.sql(
            'SELECT email, name, image, role, type, password_hash, "emailVerified", created_at '
            "FROM users"
        )
    }
    assert set(users) == {"ann@example.com", "ben@example.com", None}
    ann = users["ann@example.com"]
    assert ann[1:5] == ("Ann Example", "https://example.com/ann.png", "admin", "regular")
    assert ann[5].startswith("$2a$")
    assert ann[6:] == ("2024-01-05T10:00:00.000Z", "2024-01-01T00:00:00.000Z")
    for email, password in PASSWORDS.items():
        assert bcrypt.checkpw(password.encode(), users[email][5].encode())
        assert not bcrypt.checkpw(b"wrong password", users[email][5].encode())
    assert users[None][4] == "guest" and users[None][5] is None
    accounts = migrated.sql('SELECT "userId", type, provider, "providerAccountId" FROM accounts')
    assert accounts == [("22222222-2222-4222-8222-222222222222", "oauth", "github", "4242")]


async def test_users_sign_in_to_the_server_with_their_old_passwords(
    chat_url: str, tmp_path: Path
) -> None:
    import httpx

    from flarebase.migrate import D1Reader, D1Target, PostgresOptions, PostgresSource, migrate
    from flarebase.migrate.sources.supabase import accounts_columns
    from flarebase.platform import open_env
    from flarebase.platform.migrations import apply_migrations
    from flarebase.server import create_app

    from .conftest import SERVER_MIGRATIONS

    vars = (
        '[vars]\nAUTH_SECRET = "test-secret-0123456789abcdefghijklmnop"\nAUTH_BCRYPT_ROUNDS = 4\n'
    )
    project = make_project(tmp_path, SERVER_MIGRATIONS, vars)
    async with open_env(project.config, state_dir=project.state) as env:
        await apply_migrations(env.DB, SERVER_MIGRATIONS)
        options = PostgresOptions(tables=["members"], accounts=await accounts_columns(env.DB))
        source = PostgresSource(chat_url, options)
        try:
            report = await migrate(
                source, D1Target(env.DB), tmp_path / "ck.json", reader=D1Reader(env.DB)
            )
        finally:
            await source.aclose()
        assert report.ok and {t.name for t in report.plan.tables} == {
            "members",
            "users",
            "accounts",
        }
        transport = httpx.ASGITransport(app=create_app(env))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for email, password in PASSWORDS.items():
                ok = await client.post(
                    "/api/auth/signin", json={"email": email, "password": password}
                )
                assert ok.status_code == 200, ok.text
                assert ok.json()["user"]["email"] == email
            wrong = await client.post(
                "/api/auth/signin", json={"email": "ann@example.com", "password": "correct horse 2"}
            )
            assert wrong.status_code == 401


def test_epoch_ms_and_numeric_real_report_what_they_round(chat_url: str, project: Project) -> None:
    project.migrate(
        "postgres",
        chat_url,
        "--d1",
        "DB",
        "--timestamps",
        "epoch-ms",
        "--numeric",
        "real",
        "--tables",
        "members",
        "--no-auth",
        "--report",
        "report.json",
    )
    row = project.sql("SELECT created_at, birthday, balance, big, whole FROM members WHERE id = 1")
    assert row == [(1704164645123, -4861728000000, 12.5, 1.2345678901234568e29, 1234567890)]
    assert project.sql("SELECT created_at, big FROM members WHERE id = 2") == [("infinity", "NaN")]
    report = report_of(project)
    assert report["ok"] and report["status"] == "verified"
    issues = {i["object"]: i["reason"] for i in report["issues"]}
    assert "cut to milliseconds" in issues["column public.members.created_at"]
    assert "rounded to REAL" in issues["column public.members.big"]
    assert "column public.members.balance" not in issues  # 2 decimals survive as REAL
    assert project.sql("SELECT name FROM sqlite_master WHERE name = 'users'") == []  # --no-auth


def test_tables_exclude_and_where(chat_url: str, project: Project) -> None:
    project.migrate(
        "postgres",
        chat_url,
        "--d1",
        "DB",
        "--tables",
        "members,chats,chat_tags",
        "--exclude",
        "chat_tags",
        "--where",
        "chats=visibility = 'public'",
        "--no-auth",
        "--report",
        "report.json",
    )
    tables = {r[0] for r in project.sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"members", "chats"} <= tables and not tables & {"messages", "events", "chat_tags"}
    public = pg_rows(chat_url, "SELECT id::text FROM chats WHERE visibility = 'public' ORDER BY id")
    assert project.sql("SELECT id FROM chats ORDER BY id") == public
    assert report_of(project)["ok"]


def test_dry_run_prints_the_plan_and_writes_nothing(chat_url: str, project: Project) -> None:
    result = project.migrate("postgres", chat_url, "--d1", "DB", "--dry-run")
    assert 'CREATE TABLE "members"' in result.output and "CREATE VIEW" in result.output
    assert "dry-run" in result.output
    assert (
        not project.database.exists()
        or project.sql("SELECT name FROM sqlite_master WHERE name = 'members'") == []
    )


def test_verify_catches_a_changed_row(migrated: Project, chat_url: str, tmp_path: Path) -> None:
    copy = make_project(tmp_path / "tampered")
    copy.database.parent.mkdir(parents=True)
    source = sqlite3.connect(migrated.database)
    target = sqlite3.connect(copy.database)
    source.backup(target)
    source.close()
    target.execute("UPDATE chats SET title = 'tampered' WHERE id = (SELECT min(id) FROM chats)")
    target.execute("DELETE FROM events WHERE rowid = 7")
    target.commit()
    target.close()
    args = ["migrate", "verify", chat_url, "--d1", "DB", "--config", str(copy.config)]
    args += ["--state-dir", str(copy.state), "--report", str(tmp_path / "verify.json")]
    result = copy.cli(*args, code=1)
    assert "tampered" in result.output and "DIFFERENT" in result.output
    report = json.loads((tmp_path / "verify.json").read_text())
    assert report["ok"] is False
    checks = {t["table"]: t for t in report["verification"]["tables"]}
    assert not checks["chats"]["ok"] and not checks["events"]["ok"] and checks["members"]["ok"]
    (changed,) = checks["chats"]["differences"]
    assert changed["kind"] == "changed" and changed["columns"]["title"]["target"] == "tampered"
    assert checks["events"]["target_rows"] == 1199
    assert checks["events"]["differences"][0]["kind"] == "missing"
    # the untouched original verifies
    ok = ["migrate", "verify", chat_url, "--d1", "DB", "--config", str(migrated.config)]
    migrated.cli(*ok, "--state-dir", str(migrated.state), "--report", str(tmp_path / "ok.json"))


def test_sql_out_resumed_after_kill_applies_with_wrangler(
    chat_url: str, migrated: Project, tmp_path: Path
) -> None:
    """--sql-out, killed half-way and resumed; wrangler (Miniflare's D1) imports the file
    and verification finds the same checksums as the direct migration."""
    import os
    import subprocess

    from .conftest import ROOT
    from .test_resume import kill_when, start

    wrangler = ROOT / "bridge" / "node_modules" / ".bin" / "wrangler"
    assert wrangler.exists(), "npm packages missing: run scripts/bootstrap --node"
    project = make_project(tmp_path)
    ck, out = project.root / "ck.json", project.root / "dump.sql"
    args = ["migrate", "postgres", chat_url, "--sql-out", str(out), "--config", str(project.config)]
    args += ["--checkpoint", str(ck), "--batch-rows", "40"]
    state = kill_when(
        start(project, [*args, "--max-rows-per-second", "3000"]),
        ck,
        lambda s: s.get("copy:events", {}).get("rows", 0) > 0,
    )
    assert state["target"]["offset"] > 0 and not state["finished"]
    project.cli(*args)
    text = out.read_text()
    assert text.count('CREATE TABLE "members"') == 1 and "PRAGMA defer_foreign_keys" in text
    env = {**os.environ, "CI": "true", "WRANGLER_SEND_METRICS": "false"}
    for command in (["migrations", "apply", "DB"], ["execute", "DB", "--file", str(out)]):
        done = subprocess.run(
            [str(wrangler), "d1", *command, "--local"],
            cwd=project.root,
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    [database] = [
        p
        for p in (project.root / ".wrangler/state/v3/d1/miniflare-D1DatabaseObject").glob(
            "*.sqlite"
        )
        if p.name != "metadata.sqlite"
    ]
    verify = ["migrate", "verify", chat_url, "--target-file", str(database)]
    project.cli(*verify, "--checkpoint", str(ck), "--report", str(project.root / "v.json"))
    theirs = json.loads((project.root / "v.json").read_text())["verification"]["tables"]
    ours = report_of(migrated)["verification"]["tables"]
    assert [(t["table"], t["target_rows"], t["target_checksum"]) for t in theirs] == [
        (t["table"], t["target_rows"], t["target_checksum"]) for t in ours
    ]
