"""Local D1 against raw sqlite3 on the same file: point query and 100k-row batch insert.

Target: overhead <= 1.5x raw sqlite3 (issue 2).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

from flarebase.platform.local.d1 import LocalD1

from common import QUICK, report_overhead, scratch_dir

ROWS = 10_000 if QUICK else 100_000
LOOKUPS = 5_000 if QUICK else 50_000
SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, tags TEXT)"
INSERT = "INSERT INTO items (id, name, price, tags) VALUES (?, ?, ?, ?)"
POINT = "SELECT * FROM items WHERE id = ?"


def row(i: int) -> tuple[int, str, float, str]:
    return (i, f"item {i}", i * 0.5, '["a","b"]')


async def ours_insert(db: LocalD1) -> float:
    await db.exec("DELETE FROM items")
    stmt = db.prepare(INSERT)
    start = time.perf_counter()
    await db.batch([stmt.bind(*row(i)) for i in range(ROWS)])
    return time.perf_counter() - start


def raw_insert(conn: sqlite3.Connection, many: bool) -> float:
    """One transaction of ROWS inserts: executemany, or one execute per row as D1 does."""
    conn.execute("DELETE FROM items")
    start = time.perf_counter()
    conn.execute("BEGIN")
    if many:
        conn.executemany(INSERT, (row(i) for i in range(ROWS)))
    else:
        for i in range(ROWS):
            conn.execute(INSERT, row(i))
    conn.execute("COMMIT")
    return time.perf_counter() - start


async def ours_point(db: LocalD1) -> float:
    stmt = db.prepare(POINT)
    start = time.perf_counter()
    for i in range(LOOKUPS):
        await stmt.bind(i % ROWS).first()
    return (time.perf_counter() - start) / LOOKUPS


def raw_point(conn: sqlite3.Connection) -> float:
    start = time.perf_counter()
    for i in range(LOOKUPS):
        cur = conn.execute(POINT, (i % ROWS,))
        cols = [d[0] for d in cur.description]
        dict(zip(cols, cur.fetchone(), strict=True))
    return (time.perf_counter() - start) / LOOKUPS


async def main() -> None:
    folder = scratch_dir()
    db = LocalD1(folder / "ours.sqlite3")
    await db.exec(SCHEMA)
    raw = sqlite3.connect(folder / "raw.sqlite3", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    raw.execute(SCHEMA)
    # Interleaved runs, best of each: drift on a noisy machine hits both sides alike.
    runs = [
        (await ours_insert(db), raw_insert(raw, many=False), raw_insert(raw, many=True))
        for _ in range(3)
    ]
    ours_s, loop_s, many_s = (min(run[i] for run in runs) for i in range(3))
    name = f"d1 batch insert {ROWS:,} rows"
    report_overhead(name, ours_s, loop_s, "sqlite3 execute per row")
    report_overhead(name, ours_s, many_s, "sqlite3 executemany")
    points = [(await ours_point(db), raw_point(raw)) for _ in range(5)]
    ours_q, raw_q = min(o for o, _ in points), min(r for _, r in points)
    report_overhead("d1 point query first()", ours_q, raw_q, "sqlite3 execute+dict")
    await db.aclose()
    raw.close()


if __name__ == "__main__":
    asyncio.run(main())
