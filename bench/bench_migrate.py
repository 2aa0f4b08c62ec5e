"""Postgres -> D1 migration rows/s, verification on, against db-to-sqlite copying the
same database in the same run (target: >= 3x, issue 6).

A real PostgreSQL 15 is started on a loopback port with a generated chat-app
dataset: 1,000,000 rows over four tables with mixed types (50,000 with
FLAREBASE_BENCH_QUICK=1, best of three runs). Both tools copy every table into a
fresh SQLite file; ours (into the local D1) also writes the checkpoint and reads
both sides again to verify every row.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import QUICK, rate, report, scratch_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "migrate"))

from pg import postgres_server  # noqa: E402

from flarebase.migrate import PostgresOptions, PostgresSource, RunOptions, migrate  # noqa: E402
from flarebase.migrate.target import D1Reader, D1Target  # noqa: E402
from flarebase.platform.local.d1 import LocalD1  # noqa: E402

TOTAL = 50_000 if QUICK else 1_000_000
SCHEMA = """
CREATE TABLE users (
  id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, name text, active boolean NOT NULL,
  balance numeric(12, 2) NOT NULL, created_at timestamptz NOT NULL, prefs jsonb);
CREATE TABLE chats (
  id uuid PRIMARY KEY, user_id bigint NOT NULL REFERENCES users(id), title text NOT NULL,
  visibility text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE messages (
  id bigserial PRIMARY KEY, chat_id uuid NOT NULL REFERENCES chats(id), role text NOT NULL,
  parts jsonb NOT NULL, tokens integer, score double precision, created_at timestamptz NOT NULL);
CREATE TABLE chat_tags (
  chat_id uuid REFERENCES chats(id), tag text, added date, PRIMARY KEY (chat_id, tag));
"""


def dataset_sql(total: int) -> str:
    users, chats, tags = total // 5, total // 5, total // 10
    messages = total - users - chats - tags
    return f"""
INSERT INTO users (email, name, active, balance, created_at, prefs)
SELECT 'user' || g || '@example.com', 'User ' || g, g % 3 <> 0, (g % 100000) / 100.0,
       timestamptz '2024-01-01' + g * interval '17 seconds',
       jsonb_build_object('theme', CASE WHEN g % 2 = 0 THEN 'dark' ELSE 'light' END, 'n', g)
FROM generate_series(1, {users}) g;
INSERT INTO chats (id, user_id, title, visibility, created_at)
SELECT md5('chat' || g)::uuid, 1 + g % {users}, 'Chat about ' || g,
       CASE WHEN g % 4 = 0 THEN 'public' ELSE 'private' END,
       timestamptz '2024-02-01' + g * interval '11 seconds'
FROM generate_series(1, {chats}) g;
INSERT INTO messages (chat_id, role, parts, tokens, score, created_at)
SELECT md5('chat' || (1 + g % {chats}))::uuid, CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END,
       jsonb_build_array(jsonb_build_object('type', 'text', 'text', 'Message number ' || g)),
       g % 4000, g / 7.0, timestamptz '2024-03-01' + g * interval '3 seconds'
FROM generate_series(1, {messages}) g;
INSERT INTO chat_tags (chat_id, tag, added)
SELECT md5('chat' || (1 + g / 2))::uuid, 'tag' || (g % 2), date '2024-01-01' + g % 365
FROM generate_series(0, {tags} - 1) g;
ANALYZE;
"""


async def ours(url: str, folder: Path, run: int) -> tuple[float, int]:
    db = LocalD1(folder / f"ours-{run}.sqlite3")
    source = PostgresSource(url, PostgresOptions(batch_rows=2000))
    try:
        start = time.perf_counter()
        result = await migrate(
            source,
            D1Target(db),
            folder / f"ours-{run}.checkpoint.json",
            reader=D1Reader(db),
            options=RunOptions(verify=True),
        )
        seconds = time.perf_counter() - start
    finally:
        await source.aclose()
        await db.aclose()
    assert result.verification is not None and result.verification.ok, result.to_json()
    return seconds, result.rows_copied()


def peer(url: str, folder: Path) -> float:
    """db-to-sqlite (SQLAlchemy + sqlite-utils), all tables, same database."""
    out = folder / "db_to_sqlite.db"
    out.unlink(missing_ok=True)
    exe = Path(sys.executable).with_name("db-to-sqlite")
    sqlalchemy_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    start = time.perf_counter()
    subprocess.run([str(exe), sqlalchemy_url, str(out), "--all"], check=True)
    return time.perf_counter() - start


def main() -> None:
    folder = scratch_dir()
    runs = 3 if QUICK else 1  # interleaved, best of each: noise hits both alike
    try:
        with postgres_server() as server:
            server.create_database("bench", SCHEMA + dataset_sql(TOTAL))
            url = server.url("bench")
            peer_times, our_times = [], []
            for run in range(runs):
                peer_times.append(peer(url, folder))
                seconds, rows = asyncio.run(ours(url, folder, run))
                assert rows == TOTAL, rows
                our_times.append(seconds)
            report(
                "migrate postgres->d1",
                rate(TOTAL, min(our_times)),
                rate(TOTAL, min(peer_times)),
                "db-to-sqlite",
                unit="rows/s",
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
