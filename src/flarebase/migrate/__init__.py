"""Move data onto Cloudflare's products, resumably, and prove nothing was lost.

    from flarebase.migrate import PostgresSource, D1Target, D1Reader, migrate

    async with open_env("wrangler.toml") as env:
        source = PostgresSource("postgresql://...", PostgresOptions(timestamps="iso"))
        report = await migrate(source, D1Target(env.DB), ".flarebase/migrate/pg.json",
                               reader=D1Reader(env.DB))
        assert report.ok  # every row compared: counts, checksums, sampled fields

A migration is a `Source` (Postgres, SQLite/LibSQL) read into a `Plan`, copied by
`migrate` into a `Target` (a D1 binding or an SQL file for wrangler) in stages
recorded in a checkpoint, then verified with `verify`.

Keys, vectors and blobs move as one stream of batches instead (`objects`):
`migrate_objects(RedisMigration(...) | VectorMigration(...) | BlobMigration(...),
checkpoint)`; see `keys`, `redis_rules`, `vectors` and `blobs`.
"""

from .checkpoint import Checkpoint, CheckpointError, StageState
from .model import Issue, Plan, TablePlan
from .objects import ObjectMigration, ObjectOptions, migrate_objects, verify_objects
from .progress import LineProgress, NullProgress, Progress, RichProgress
from .report import Report
from .run import RunOptions, migrate, verify_only
from .source import Source
from .sources.postgres import PostgresOptions, PostgresSource, SourceError
from .sources.sqlite import SqliteSource
from .target import D1Reader, D1Target, SqlFileTarget, SqliteFileDB, Target, TargetError
from .verify import Verification, verify

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "D1Reader",
    "D1Target",
    "Issue",
    "LineProgress",
    "NullProgress",
    "ObjectMigration",
    "ObjectOptions",
    "Plan",
    "PostgresOptions",
    "PostgresSource",
    "Progress",
    "Report",
    "RichProgress",
    "RunOptions",
    "Source",
    "SourceError",
    "SqlFileTarget",
    "SqliteFileDB",
    "SqliteSource",
    "StageState",
    "TablePlan",
    "Target",
    "TargetError",
    "Verification",
    "migrate",
    "migrate_objects",
    "verify",
    "verify_objects",
    "verify_only",
]
