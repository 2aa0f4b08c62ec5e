"""SQLite / LibSQL (a file or a .dump) -> D1: exact values, rowids, virtual tables,
triggers and AUTOINCREMENT positions; SQL output within D1's statement limit."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from flarebase.platform.d1 import script_statements, split_statements
from flarebase.platform.local.d1 import LocalD1

from .conftest import Project

SCHEMA = """
CREATE TABLE authors (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, bio TEXT);
CREATE TABLE posts (
  id INTEGER PRIMARY KEY,
  author_id INTEGER NOT NULL REFERENCES authors(id) ON DELETE CASCADE,
  reply_to INTEGER REFERENCES posts(id),
  title TEXT, body TEXT, score REAL, data BLOB,
  created_at TEXT DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE kv (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE log (at INTEGER, msg TEXT);
CREATE INDEX posts_author ON posts (author_id, created_at);
CREATE VIEW author_posts AS
  SELECT a.name, count(p.id) AS n
  FROM authors a LEFT JOIN posts p ON p.author_id = a.id GROUP BY a.id;
CREATE TRIGGER posts_touch AFTER UPDATE OF title ON posts
  BEGIN UPDATE posts SET created_at = 'touched' WHERE id = NEW.id; END;
CREATE VIRTUAL TABLE posts_fts USING fts5(title, body);
"""
BIG_TEXT = "Tübingen 'quoted' ünïcödé; -- " * 10_000  # ~300 kB: over D1's statement limit
BIG_BLOB = bytes(range(256)) * 600  # ~150 kB


def build(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany(
        "INSERT INTO authors (name, bio) VALUES (?, ?)", [(f"author {i}", None) for i in range(60)]
    )
    conn.execute("DELETE FROM authors WHERE id > 50")  # AUTOINCREMENT stays at 60
    posts = [
        (
            i,
            1 + i % 50,
            (i + 3 if i % 7 == 0 and i < 790 else i - 1) if i > 1 else None,
            f"post {i}",
            f"hello world {i}",
            i / 3,
            bytes([i % 256]) * (i % 5),
            "2024-01-01 00:00:00",
        )
        for i in range(1, 801)
    ]
    posts[-1] = (800, 2, None, "big", BIG_TEXT, 1e300, BIG_BLOB, "2024-01-02 00:00:00")
    conn.executemany("INSERT INTO posts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", posts)
    values = [1, 1.5, "1", b"\x00\x01", None, "NaN", -0.0, 2**63 - 1, "it's", "💬"]
    conn.executemany("INSERT INTO kv VALUES (?, ?)", [(f"k{i}", v) for i, v in enumerate(values)])
    conn.executemany("INSERT INTO log VALUES (?, ?)", [(i, f"line {i % 10}") for i in range(500)])
    conn.execute("DELETE FROM log WHERE at % 3 = 0")  # rowid gaps
    conn.execute("INSERT INTO posts_fts (rowid, title, body) SELECT id, title, body FROM posts")
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "app.db"
    build(path)
    return path


QUERIES = [
    "SELECT rowid, * FROM log ORDER BY rowid",
    "SELECT k, v, typeof(v) FROM kv ORDER BY k",
    "SELECT id, author_id, reply_to, title, length(body), score, hex(data), created_at FROM posts",
    "SELECT rowid, title FROM posts_fts WHERE posts_fts MATCH 'hello AND 42' ORDER BY rowid",
    "SELECT name, n FROM author_posts ORDER BY name",
    "SELECT name, seq FROM sqlite_sequence",
    "SELECT body = ? , data = ? FROM posts WHERE id = 800",
]


def same_answers(a: Path, b: Path, rowids: bool = True) -> None:
    left, right = sqlite3.connect(a), sqlite3.connect(b)
    try:
        for query in QUERIES:
            if not rowids:
                query = query.replace("SELECT rowid, * FROM log", "SELECT * FROM log")
            params = (BIG_TEXT, BIG_BLOB) if "?" in query else ()
            expected = left.execute(query, params).fetchall()
            assert expected, query
            assert right.execute(query, params).fetchall() == expected, query
    finally:
        left.close()
        right.close()


def test_file_to_d1_keeps_values_rowids_and_objects(source: Path, project: Project) -> None:
    project.migrate("sqlite", str(source), "--d1", "DB", "--report", "r.json")
    report = json.loads((project.root / "r.json").read_text())
    assert report["status"] == "verified"
    checks = {t["table"]: t for t in report["verification"]["tables"]}
    assert set(checks) == {"authors", "posts", "kv", "log", "posts_fts"}
    same_answers(source, project.database)
    conn = sqlite3.connect(project.database)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("UPDATE posts SET title = 'changed' WHERE id = 5")  # the trigger came along
        assert conn.execute("SELECT created_at FROM posts WHERE id = 5").fetchone() == ("touched",)
        cur = conn.execute("INSERT INTO authors (name) VALUES ('new') RETURNING id")
        assert cur.fetchone() == (61,)  # AUTOINCREMENT continues past the deleted 51..60
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO posts (id, author_id) VALUES (9999, 999)")
    finally:
        conn.close()


def test_dump_gives_the_same_database(source: Path, project: Project, tmp_path: Path) -> None:
    """A `sqlite3 DB .dump` (as `turso db shell DB .dump` writes it): BEGIN/COMMIT,
    PRAGMAs, virtual tables through writable_schema, FTS shadow tables."""
    cli = shutil.which("sqlite3")
    assert cli, "the sqlite3 command-line shell is needed (Debian package sqlite3)"
    dump = tmp_path / "app.sql"
    dump.write_text(
        subprocess.run(
            [cli, str(source), ".dump"], capture_output=True, text=True, check=True
        ).stdout,
        encoding="utf-8",
    )
    text = dump.read_text()
    assert "BEGIN TRANSACTION" in text and "writable_schema" in text
    project.migrate("sqlite", str(dump), "--d1", "DB", "--report", "r.json")
    report = json.loads((project.root / "r.json").read_text())
    assert report["ok"]
    assert {t["table"] for t in report["verification"]["tables"]} == {
        "authors",
        "posts",
        "kv",
        "log",
        "posts_fts",
    }
    same_answers(source, project.database, rowids=False)  # .dump renumbers keyless rows


def test_sql_out_stays_within_d1_statement_limit(
    source: Path, project: Project, tmp_path: Path
) -> None:
    out = tmp_path / "out.sql"
    project.migrate("sqlite", str(source), "--sql-out", str(out), "--checkpoint", "ck.json")
    statements = split_statements(out.read_text(encoding="utf-8"))
    assert max(len(s.encode()) for s in statements) <= 100_000
    assert any(s.startswith('UPDATE "posts" SET "body" = "body" ||') for s in statements)
    applied = tmp_path / "applied.sqlite3"

    async def apply() -> None:
        db = LocalD1(applied)  # D1's limits: 100,000-byte statements, 2 MB values
        try:
            # As `wrangler d1 execute --file` sends it: the file's statements, one batch.
            sql = out.read_text(encoding="utf-8")
            await db.batch([db.prepare(s) for s in script_statements(sql)])
        finally:
            await db.aclose()

    asyncio.run(apply())
    same_answers(source, applied)
    verify = ["migrate", "verify", str(source), "--target-file", str(applied)]
    project.cli(*verify, "--checkpoint", str(project.root / "ck.json"))


def test_rows_referencing_nothing_are_named_before_anything_is_written(
    project: Project, tmp_path: Path
) -> None:
    path = tmp_path / "dangling.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE a (id INTEGER PRIMARY KEY);"
        "CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id));"
        "INSERT INTO a VALUES (1); INSERT INTO b VALUES (1, 1), (2, 7);"
    )
    conn.close()
    result = project.migrate("sqlite", str(path), "--d1", "DB", code=1)
    assert "b rowid 2: a_id -> a (no such row)" in result.output
    assert (
        not project.database.exists()
        or project.sql("SELECT name FROM sqlite_master WHERE name = 'b'") == []
    )


def test_rows_over_d1s_row_limit_are_reported_not_dropped(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE files (id INTEGER PRIMARY KEY, data BLOB)")
    rows = [(1, b"a"), (2, b"\x00" * 2_500_000), (3, b"c"), (4, b"d" * 1_000_000)]
    conn.executemany("INSERT INTO files VALUES (?, ?)", rows)
    conn.commit()
    conn.close()
    result = project.migrate("sqlite", str(path), "--d1", "DB", "--report", "r.json", code=1)
    assert "over D1's 2,000,000-byte row limit" in result.output
    report = json.loads((project.root / "r.json").read_text())
    assert report["ok"] is False
    (skipped,) = [i for i in report["issues"] if i["severity"] == "error"]
    assert skipped["object"] == "row id=2 of files" and "2,500,0" in skipped["reason"]
    assert project.sql("SELECT id, length(data) FROM files ORDER BY id") == [
        (1, 1),
        (3, 1),
        (4, 1_000_000),
    ]
    (check,) = report["verification"]["tables"]
    assert (check["source_rows"], check["target_rows"]) == (4, 3)
    assert check["differences"][0]["kind"] == "missing" and "id=2" in check["differences"][0]["key"]
