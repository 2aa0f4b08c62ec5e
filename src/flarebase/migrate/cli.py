"""`flarebase migrate`: thin commands over `flarebase.migrate`.

flarebase migrate postgres URL --d1 DB            Postgres (Neon, Supabase) into a D1 binding
flarebase migrate postgres URL --sql-out FILE     ... into SQL for `wrangler d1 execute --file`
flarebase migrate sqlite FILE --d1 DB             SQLite / LibSQL file or .dump into D1
flarebase migrate redis URL --rules rules.toml     Redis / Upstash Redis into KV and D1
flarebase migrate vectors FILE --vectorize INDEX  a JSONL export / Upstash Vector into Vectorize
flarebase migrate blobs SOURCE --r2 BUCKET        S3, Vercel Blob or a folder into R2
flarebase migrate verify SOURCE --d1 DB           compare again; non-zero exit on a difference

Every migration keeps a checkpoint (re-run the same command to continue after a
crash), verifies at the end (--no-verify to skip) and writes a JSON report.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from ..platform import FlarebaseError, load_project, open_env
from ..platform.migrations import apply_migrations
from .checkpoint import default_path
from .progress import LineProgress, Progress, RichProgress
from .report import Report, print_report
from .run import RunOptions, migrate, verify_only
from .source import Source
from .sources.postgres import PostgresOptions, PostgresSource, SourceError, redact
from .sources.sqlite import SqliteOptions, SqliteSource
from .sources.supabase import (
    accounts_columns,
    accounts_columns_from_migrations,
    server_migrations,
)
from .target import D1Reader, D1Target, SqlFileTarget, SqliteFileDB, TableReader, Target
from .translate import NUMERICS, TIMESTAMPS

migrate_app = typer.Typer(
    help="Move data onto Cloudflare, resumably, verified: Postgres and SQLite/LibSQL into D1, "
    "Redis into KV and D1, vectors into Vectorize, blobs into R2."
)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

D1Opt = Annotated[str | None, typer.Option("--d1", help="target D1 binding (or database_name)")]
SqlOutOpt = Annotated[
    Path | None, typer.Option("--sql-out", help="write SQL for `wrangler d1 execute --file`")
]
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="wrangler.toml or wrangler.jsonc")]
StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="local state directory")]
ProviderOpt = Annotated[str, typer.Option("--provider", help="bindings provider (local)")]
TablesOpt = Annotated[
    list[str] | None, typer.Option("--tables", help="only these tables (repeat or comma-separate)")
]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", help="leave these tables out")]
WhereOpt = Annotated[
    list[str] | None, typer.Option("--where", help="TABLE=CONDITION: copy only matching rows")
]
CheckpointOpt = Annotated[
    Path | None, typer.Option("--checkpoint", help="checkpoint file (default: under .flarebase/)")
]
RestartOpt = Annotated[bool, typer.Option("--restart", help="ignore the checkpoint, start over")]
ReplaceOpt = Annotated[
    bool, typer.Option("--replace", help="drop target tables of the same names first")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="print the plan and translated schema; write nothing")
]
VerifyOpt = Annotated[bool, typer.Option("--verify/--no-verify", help="verify at the end")]
SampleOpt = Annotated[int, typer.Option("--sample", help="rows per table compared field by field")]
ReportOpt = Annotated[Path | None, typer.Option("--report", help="write the JSON report here")]
BatchOpt = Annotated[int, typer.Option("--batch-rows", min=1, help="rows per D1 batch")]
RateOpt = Annotated[
    float | None,
    typer.Option("--max-rows-per-second", help="throttle reading (spare a production source)"),
]


def _run(work: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except FlarebaseError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(1) from None


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _wheres(values: list[str] | None) -> dict[str, str]:
    wheres = {}
    for value in values or []:
        table, sep, condition = value.partition("=")
        if not sep or not table.strip() or not condition.strip():
            raise typer.BadParameter(f"--where {value!r}: expected TABLE=CONDITION")
        wheres[table.strip()] = condition.strip()
    return wheres


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise typer.BadParameter(f"{option} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _progress() -> Progress:
    return RichProgress(err) if err.is_terminal else LineProgress(err)


@asynccontextmanager
async def _target(
    d1: str | None, sql_out: Path | None, config: Path, state_dir: Path | None, provider: str
) -> AsyncIterator[tuple[Target, TableReader | None, Any, Path]]:
    """(target, reader for verification, the D1 binding or None, root for .flarebase/)."""
    if (d1 is None) == (sql_out is None):
        raise FlarebaseError("give exactly one of --d1 BINDING or --sql-out FILE")
    if sql_out is not None:
        yield SqlFileTarget(sql_out), None, None, Path.cwd()
        return
    async with open_env(config, provider=provider, state_dir=state_dir) as env:
        spec = env.project.d1(d1 or "")
        db = env[spec.binding]
        where = f"D1 {spec.binding} ({provider}{f', {state_dir}' if state_dir else ''})"
        yield D1Target(db, where), D1Reader(db, where), db, env.project.root


def _finish(report: Report, report_path: Path | None, root: Path, kind: str, schema: bool) -> None:
    print_report(report, console, schema=schema)
    path = report_path or root / ".flarebase" / "migrate" / f"{kind}-report.json"
    report.write(path)
    err.print(f"report: {path}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


async def _execute(
    source: Source,
    kind: str,
    d1: str | None,
    sql_out: Path | None,
    config: Path,
    state_dir: Path | None,
    provider: str,
    checkpoint: Path | None,
    options: RunOptions,
    report_path: Path | None,
    before_plan: Callable[[Any, bool], Awaitable[None]] | None = None,
) -> None:
    async with _target(d1, sql_out, config, state_dir, provider) as (target, reader, db, root):
        if before_plan is not None:
            await before_plan(db, options.dry_run)
        path = checkpoint or default_path(root, kind, source.description, target.description)
        try:
            report = await migrate(
                source,
                target,
                path,
                reader=reader,
                options=options,
                progress=None if options.dry_run else _progress(),
            )
        finally:
            await source.aclose()
        _finish(report, report_path, root, kind, schema=options.dry_run)
        if sql_out is not None and not options.dry_run:
            err.print(
                f"apply with: wrangler d1 execute <DATABASE> --file {sql_out} "
                "(then: flarebase migrate verify ... --target-file <the database file>)",
                highlight=False,
            )


def _has_supabase_auth(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                """SELECT 1 FROM information_schema.columns WHERE table_schema = 'auth'
                   AND table_name = 'users' AND column_name = 'encrypted_password'"""
            ).fetchone()
    except psycopg.Error as e:
        raise SourceError(f"cannot connect to {redact(url)}: {e}") from None
    return row is not None


def _accounts_setup(
    source: PostgresSource, auth: bool | None, config: Path
) -> Callable[[Any, bool], Awaitable[None]]:
    """Find the server's users/accounts columns in the target (applying the project's
    D1 migrations first when the tables are missing, as `flarebase dev` would)."""

    async def setup(db: Any, dry_run: bool) -> None:
        if auth is False:
            return
        if not _has_supabase_auth(source.url):
            if auth:
                raise FlarebaseError("--auth: the source has no Supabase auth.users table")
            return
        columns = await accounts_columns(db) if db is not None else None
        if columns is None and db is not None and not dry_run:
            project = load_project(config)
            for spec in project.d1_databases:
                if db is not None:
                    folder = project.root / spec.migrations_dir
                    applied = await apply_migrations(db, folder, spec.migrations_table)
                    if applied:
                        err.print(f"applied D1 migrations {', '.join(applied)}", highlight=False)
                    break
            columns = await accounts_columns(db)
        if columns is None:
            folders = []
            try:
                project = load_project(config)
                folders = [project.root / s.migrations_dir for s in project.d1_databases]
            except FlarebaseError:
                pass
            columns = accounts_columns_from_migrations(*folders, server_migrations())
        if columns is None:
            raise FlarebaseError(
                "the source has Supabase auth.users but the target has no users table: "
                "apply the server's migrations first, or pass --no-auth"
            )
        source.options.accounts = columns

    return setup


@migrate_app.command("postgres")
def postgres(
    url: Annotated[str, typer.Argument(help="postgresql://user:password@host:port/database")],
    d1: D1Opt = None,
    sql_out: SqlOutOpt = None,
    tables: TablesOpt = None,
    exclude: ExcludeOpt = None,
    where: WhereOpt = None,
    schema: Annotated[
        list[str] | None, typer.Option("--schema", help="schemas to read (default: public)")
    ] = None,
    timestamps: Annotated[
        str, typer.Option("--timestamps", help="iso (ISO-8601 text) or epoch-ms (integer)")
    ] = "iso",
    numeric: Annotated[
        str, typer.Option("--numeric", help="text (exact) or real (rounded values reported)")
    ] = "text",
    auth: Annotated[
        bool | None,
        typer.Option("--auth/--no-auth", help="Supabase auth.users -> users (default: if present)"),
    ] = None,
    batch_rows: BatchOpt = 1000,
    checkpoint: CheckpointOpt = None,
    restart: RestartOpt = False,
    replace: ReplaceOpt = False,
    dry_run: DryRunOpt = False,
    verify: VerifyOpt = True,
    sample: SampleOpt = 100,
    report: ReportOpt = None,
    max_rows_per_second: RateOpt = None,
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
    provider: ProviderOpt = "local",
) -> None:
    """Postgres (Neon, Supabase, ...) into D1: schema, rows, indexes, views; verified."""
    options = PostgresOptions(
        tables=_split(tables),
        exclude=_split(exclude),
        where=_wheres(where),
        schemas=_split(schema) or ["public"],
        timestamps=_choice(timestamps, TIMESTAMPS, "--timestamps"),
        numeric=_choice(numeric, NUMERICS, "--numeric"),
        batch_rows=batch_rows,
    )
    source = PostgresSource(url, options)
    run = RunOptions(restart, replace, verify, sample, max_rows_per_second, dry_run=dry_run)
    setup = _accounts_setup(source, auth, config)
    _run(
        lambda: _execute(
            source,
            "postgres",
            d1,
            sql_out,
            config,
            state_dir,
            provider,
            checkpoint,
            run,
            report,
            setup,
        )
    )


@migrate_app.command("sqlite")
def sqlite(
    file: Annotated[Path, typer.Argument(help="an SQLite/LibSQL database file or a .dump")],
    d1: D1Opt = None,
    sql_out: SqlOutOpt = None,
    tables: TablesOpt = None,
    exclude: ExcludeOpt = None,
    where: WhereOpt = None,
    batch_rows: BatchOpt = 1000,
    checkpoint: CheckpointOpt = None,
    restart: RestartOpt = False,
    replace: ReplaceOpt = False,
    dry_run: DryRunOpt = False,
    verify: VerifyOpt = True,
    sample: SampleOpt = 100,
    report: ReportOpt = None,
    max_rows_per_second: RateOpt = None,
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
    provider: ProviderOpt = "local",
) -> None:
    """SQLite, LibSQL or Turso (a database file or a .dump) into D1, verified."""
    options = SqliteOptions(_split(tables), _split(exclude), _wheres(where), batch_rows)
    source = SqliteSource(file, options)
    run = RunOptions(restart, replace, verify, sample, max_rows_per_second, dry_run=dry_run)
    _run(
        lambda: _execute(
            source, "sqlite", d1, sql_out, config, state_dir, provider, checkpoint, run, report
        )
    )


@migrate_app.command("verify")
def verify(
    source: Annotated[
        str | None,
        typer.Argument(
            help="postgresql://... URL, an SQLite file/.dump, redis://..., a .jsonl file, "
            "s3://bucket/prefix, vercel-blob://, or a folder"
        ),
    ] = None,
    d1: D1Opt = None,
    target_file: Annotated[
        Path | None,
        typer.Option("--target-file", help="an SQLite file holding the D1 database instead"),
    ] = None,
    tables: TablesOpt = None,
    exclude: ExcludeOpt = None,
    where: WhereOpt = None,
    schema: Annotated[list[str] | None, typer.Option("--schema", help="Postgres schemas")] = None,
    timestamps: Annotated[
        str | None, typer.Option("--timestamps", help="as migrated (default: the checkpoint's)")
    ] = None,
    numeric: Annotated[
        str | None, typer.Option("--numeric", help="as migrated (default: the checkpoint's)")
    ] = None,
    auth: Annotated[bool | None, typer.Option("--auth/--no-auth", help="Supabase auth")] = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="take the migration's options from it")
    ] = None,
    sample: SampleOpt = 100,
    report: ReportOpt = None,
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
    provider: ProviderOpt = "local",
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="redis | vectors | blobs (default: from SOURCE)"),
    ] = None,
    rules: Annotated[Path | None, typer.Option("--rules", help="redis: the rules file")] = None,
    kv: Annotated[str | None, typer.Option("--kv", help="redis: default KV binding")] = None,
    upstash_url: Annotated[
        str | None, typer.Option("--upstash-url", help="Upstash REST URL")
    ] = None,
    upstash_token: Annotated[
        str | None, typer.Option("--upstash-token", help="Upstash REST token")
    ] = None,
    vectorize: Annotated[
        str | None, typer.Option("--vectorize", help="vectors: the Vectorize binding")
    ] = None,
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", help="vectors: SOURCE=TARGET")
    ] = None,
    r2: Annotated[str | None, typer.Option("--r2", help="blobs: the R2 binding")] = None,
    endpoint_url: Annotated[
        str | None, typer.Option("--endpoint-url", help="blobs: S3-compatible endpoint")
    ] = None,
    vercel_token: Annotated[
        str | None, typer.Option("--vercel-token", help="blobs: Vercel Blob token")
    ] = None,
    vercel_api_url: Annotated[
        str, typer.Option("--vercel-api-url", help="blobs: Vercel Blob API")
    ] = "https://blob.vercel-storage.com",
) -> None:
    """Compare a source with its copy: counts, content checksums, sampled fields.

    Tables (Postgres, SQLite) against D1; Redis keys against KV and D1 (by the rules);
    vectors against Vectorize; blobs against R2. Options a migration was run with
    (metadata flattening, part sizes, prefixes) come from its checkpoint (--checkpoint).

    Exits 1 with a report of the differing rows when anything differs."""
    object_kind = cli_objects.object_kind(source, kind, upstash_url)
    if object_kind is not None:
        saved = _saved_options(checkpoint) if checkpoint else {}
        before = _saved_target(checkpoint) if checkpoint else {}
        if object_kind == "redis":
            build = cli_objects.redis_builder(
                source, upstash_url, upstash_token, rules, kv, d1, 500, provider, state_dir
            )
        elif object_kind == "vectors":
            build = cli_objects.vectors_builder(
                Path(source) if source else None,
                upstash_url,
                upstash_token,
                vectorize,
                namespace or [f"{k}={v}" for k, v in saved.get("namespaces", {}).items()],
                saved.get("separator", "__"),
                bool(saved.get("nested", False)),
                saved.get("data_key", "data"),
                None,
                1000,
                provider,
                state_dir,
            )
        elif object_kind == "blobs":
            if not source:
                raise typer.BadParameter("blobs: give SOURCE")
            build = cli_objects.blobs_builder(
                source,
                r2,
                endpoint_url,
                vercel_token,
                vercel_api_url,
                saved.get("target_prefix", ""),
                8,
                1000,
                str(saved.get("part_size", 8 * 1024 * 1024)),
                str(saved.get("multipart_threshold", 64 * 1024 * 1024)),
                provider,
                state_dir,
            )
        else:
            raise typer.BadParameter("--kind must be redis, vectors or blobs")
        _run(
            lambda: cli_objects.verify_kind(
                build, config, state_dir, provider, sample, report, before
            )
        )
        return
    if source is None:
        raise typer.BadParameter("give SOURCE")
    is_postgres = source.startswith(("postgres://", "postgresql://"))
    if (d1 is None) == (target_file is None):
        err.print("[red]error:[/red] give exactly one of --d1 BINDING or --target-file FILE")
        raise typer.Exit(2)

    async def work() -> None:
        async with _reader(d1, target_file, config, state_dir, provider) as (reader, db, root):
            kind = "postgres" if is_postgres else "sqlite"
            target_name = reader.description if db is not None else ""
            saved = _saved_options(
                checkpoint or default_path(root, kind, _source_description(source), target_name)
            )
            src: Source
            if is_postgres:
                options = PostgresOptions(
                    tables=_split(tables) or saved.get("tables", []),
                    exclude=_split(exclude) or saved.get("exclude", []),
                    where=_wheres(where) or saved.get("where", {}),
                    schemas=_split(schema) or saved.get("schemas", ["public"]),
                    timestamps=_choice(
                        timestamps or saved.get("timestamps", "iso"), TIMESTAMPS, "--timestamps"
                    ),
                    numeric=_choice(numeric or saved.get("numeric", "text"), NUMERICS, "--numeric"),
                )
                pg = PostgresSource(source, options)
                use_auth = auth if auth is not None else saved.get("auth")
                await _accounts_setup(pg, use_auth, config)(db, True)
                src = pg
            else:
                src = SqliteSource(
                    Path(source),
                    SqliteOptions(
                        _split(tables) or saved.get("tables", []),
                        _split(exclude) or saved.get("exclude", []),
                        _wheres(where) or saved.get("where", {}),
                    ),
                )
            try:
                result, _ = await verify_only(src, reader, sample=sample)
            finally:
                await src.aclose()
            result.status = "verified" if result.ok else "mismatch"
            _finish(result, report, root, f"{kind}-verify", schema=False)

    _run(work)


def _source_description(source: str) -> str:
    if source.startswith(("postgres://", "postgresql://")):
        return redact(source)
    return f"sqlite:{Path(source)}"


def _saved_target(path: Path) -> dict[str, Any]:
    """What an object migration kept of its own in the checkpoint (e.g. a count before)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    own = data.get("target", {}).get("migration", {})
    return own if isinstance(own, dict) else {}


def _saved_options(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    description = data.get("description", {})
    return description if isinstance(description, dict) else {}


@asynccontextmanager
async def _reader(
    d1: str | None, target_file: Path | None, config: Path, state_dir: Path | None, provider: str
) -> AsyncIterator[tuple[TableReader, Any, Path]]:
    if target_file is not None:
        if not target_file.exists():
            raise FlarebaseError(f"no such file: {target_file}")
        db = SqliteFileDB(target_file)
        try:
            yield D1Reader(db, f"SQLite file {target_file}"), None, Path.cwd()
        finally:
            await db.aclose()
        return
    async with open_env(config, provider=provider, state_dir=state_dir) as env:
        spec = env.project.d1(d1 or "")
        where = f"D1 {spec.binding} ({provider}{f', {state_dir}' if state_dir else ''})"
        yield D1Reader(env[spec.binding], where), env[spec.binding], env.project.root


from . import cli_objects  # noqa: E402  (registers redis, vectors, blobs on migrate_app)

if __name__ == "__main__":  # pragma: no cover
    migrate_app(sys.argv[1:])
