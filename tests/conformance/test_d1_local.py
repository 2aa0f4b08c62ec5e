"""D1 limits that cannot be reached through the binding in a test's time: the local
provider's size cap and query deadline are shrunk here (local-only by nature)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flarebase.platform import D1Error
from flarebase.platform.local import d1 as local_d1


async def test_database_size_cap(tmp_path: Path) -> None:
    db = local_d1.LocalD1(tmp_path / "small.sqlite3", max_size=64 * 1024)
    await db.exec("CREATE TABLE b (v BLOB)")
    with pytest.raises(D1Error, match="SQLITE_FULL"):
        for _ in range(100):
            await db.prepare("INSERT INTO b VALUES (zeroblob(4000))").run()
    size = (await db.prepare("SELECT 1").all()).meta.size_after
    assert size <= 64 * 1024
    await db.aclose()


async def test_query_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_d1, "D1_QUERY_SECONDS", 0.2)
    db = local_d1.LocalD1(tmp_path / "slow.sqlite3")
    forever = (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"
    )
    with pytest.raises(D1Error, match="exceeded timeout"):
        await db.prepare(forever).all()
    assert await db.prepare("SELECT 2 AS v").first("v") == 2  # usable afterwards
    await db.aclose()
