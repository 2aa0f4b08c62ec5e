"""D1 migrations, recorded exactly as `wrangler d1 migrations apply` records them.

Files are `<migrations_dir>/NNNN_name.sql`; applied ones are rows of
`d1_migrations(id, name, applied_at)` named by file name. Each file runs in
one batch together with its record, so a failed migration leaves no trace.
Works on any provider's D1 binding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import D1Spec, Project
from .d1 import script_statements
from .errors import ConfigError

# wrangler's own DDL, byte for byte, so that both tools leave the same schema.
_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS {table}(
\t\tid         INTEGER PRIMARY KEY AUTOINCREMENT,
\t\tname       TEXT UNIQUE,
\t\tapplied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
)"""
_NUMBERED = re.compile(r"^(\d+)_.*\.sql$")


@dataclass(frozen=True)
class Migration:
    name: str
    path: Path
    applied: bool


def migrations_dir(project: Project, spec: D1Spec) -> Path:
    return project.root / spec.migrations_dir


def migration_files(folder: Path) -> list[Path]:
    """The `.sql` files of the folder, in name order (as wrangler sorts them)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix == ".sql"), key=lambda p: p.name)


def create_migration(folder: Path, message: str) -> Path:
    """A new empty `NNNN_message.sql`, numbered one past the highest file."""
    slug = re.sub(r"\s+", "_", message.strip())
    if not slug or "/" in slug or "\\" in slug:
        raise ConfigError(f"invalid migration name {message!r}")
    numbers = [int(m.group(1)) for p in migration_files(folder) if (m := _NUMBERED.match(p.name))]
    number = f"{max(numbers, default=0) + 1:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{number}_{slug}.sql"
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    path.write_text(f"-- Migration number: {number} \t {stamp}\n", encoding="utf-8")
    return path


async def applied_names(db: Any, table: str = "d1_migrations") -> list[str]:
    # prepare, not exec: D1's exec runs each *line* as a statement, and this DDL has several.
    await db.prepare(_CREATE_TABLE.format(table=table)).run()
    rows = await db.prepare(f"SELECT name FROM {table} ORDER BY id").raw()
    return [row[0] for row in rows]


async def list_migrations(db: Any, folder: Path, table: str = "d1_migrations") -> list[Migration]:
    done = set(await applied_names(db, table))
    return [Migration(p.name, p, p.name in done) for p in migration_files(folder)]


async def apply_migrations(db: Any, folder: Path, table: str = "d1_migrations") -> list[str]:
    """Apply every unapplied file in order; return the names applied."""
    applied = []
    for migration in await list_migrations(db, folder, table):
        if migration.applied:
            continue
        sql = migration.path.read_text(encoding="utf-8")
        statements = [db.prepare(s) for s in script_statements(sql)]
        record = db.prepare(f"INSERT INTO {table} (name) VALUES (?)").bind(migration.name)
        await db.batch([*statements, record])
        applied.append(migration.name)
    return applied
