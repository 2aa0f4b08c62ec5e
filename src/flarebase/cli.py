"""The `flarebase` command: a thin layer over documented functions.

flarebase dev                                serve the project on the embedded default
flarebase db migrations create|list|apply    D1 migrations, as wrangler records them
flarebase db execute DATABASE --command SQL  run SQL against a D1 binding
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .platform import Env, FlarebaseError, load_project, open_env
from .platform.config import Project
from .platform.migrations import apply_migrations, create_migration, list_migrations

app = typer.Typer(help="flarebase: the backend for AI chat apps on Cloudflare, in Python.")
db_app = typer.Typer(help="D1 databases.")
migrations_app = typer.Typer(help="D1 migrations (same files and table as wrangler).")
app.add_typer(db_app, name="db")
db_app.add_typer(migrations_app, name="migrations")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="wrangler.toml or wrangler.jsonc")]
StateOpt = Annotated[
    Path | None, typer.Option("--state-dir", help="local state (default .flarebase/state)")
]
ProviderOpt = Annotated[str, typer.Option("--provider", help="local (embedded)")]


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; flarebase errors become one red line and exit status 1."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except FlarebaseError as e:
        err_console.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
        raise typer.Exit(1) from None


def env_of(config: Path, state_dir: Path | None, provider: str = "local") -> Any:
    return open_env(config, provider=provider, state_dir=state_dir)


def describe_bindings(env: Env) -> Table:
    table = Table("binding", "product", "target", title=f"bindings of {env.project.path}")
    project = env.project
    rows = [(s.binding, "D1", s.name) for s in project.d1_databases]
    rows += [(s.binding, "KV", s.name) for s in project.kv_namespaces]
    rows += [(s.binding, "R2", s.name) for s in project.r2_buckets]
    rows += [(s.binding, "Vectorize", s.index_name) for s in project.vectorize]
    rows += [(s.name, "Durable Object", s.class_name) for s in project.durable_objects]
    rows += [(s.binding, "Queue", s.queue) for s in project.queue_producers]
    for row in rows:
        table.add_row(*row)
    for name, value in env.vars.items():
        table.add_row(name, "var", "(set)" if value else "(empty)")
    return table


@app.command()
def dev(
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8787,
    serve: Annotated[bool, typer.Option(help="serve the API (--no-serve: set up and exit)")] = True,
) -> None:
    """Open the project's bindings on the embedded provider, apply D1 migrations,
    report the bindings, and serve the API."""

    async def work() -> None:
        async with env_of(config, state_dir) as env:
            for spec in env.project.d1_databases:
                folder = env.project.root / spec.migrations_dir
                applied = await apply_migrations(env[spec.binding], folder, spec.migrations_table)
                if applied:
                    console.print(f"{spec.binding}: applied {', '.join(applied)}")
            console.print(describe_bindings(env))
            if serve:
                await serve_api(env, host, port)

    run(work)


async def serve_api(env: Env, host: str, port: int) -> None:
    import uvicorn

    from .server import create_app

    console.print(f"serving the API on http://{host}:{port} (OpenAPI at /docs)")
    server = uvicorn.Server(uvicorn.Config(create_app(env), host=host, port=port))
    await server.serve()


def _db_spec(project: Project, database: str | None) -> Any:
    if database:
        return project.d1(database)
    if not project.d1_databases:
        raise FlarebaseError(f"{project.path}: no [[d1_databases]]")
    return project.d1_databases[0]


DatabaseArg = Annotated[
    str | None, typer.Argument(help="binding or database_name (default: the first)")
]


@migrations_app.command("create")
def migrations_create(
    database: DatabaseArg, message: str, config: ConfigOpt = Path("wrangler.toml")
) -> None:
    """Create an empty numbered migration file."""
    try:
        project = load_project(config)
        spec = _db_spec(project, database)
    except FlarebaseError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    path = create_migration(project.root / spec.migrations_dir, message)
    console.print(f"created {path}")


@migrations_app.command("list")
def migrations_list(
    database: DatabaseArg = None,
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
) -> None:
    """List migration files and whether each is applied."""

    async def work() -> None:
        async with env_of(config, state_dir) as env:
            spec = _db_spec(env.project, database)
            folder = env.project.root / spec.migrations_dir
            table = Table("name", "status", title=f"migrations of {spec.name}")
            for m in await list_migrations(env[spec.binding], folder, spec.migrations_table):
                table.add_row(m.name, "applied" if m.applied else "pending")
            console.print(table)

    run(work)


@migrations_app.command("apply")
def migrations_apply(
    database: DatabaseArg = None,
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
) -> None:
    """Apply unapplied migrations in order, each atomically with its record."""

    async def work() -> None:
        async with env_of(config, state_dir) as env:
            spec = _db_spec(env.project, database)
            folder = env.project.root / spec.migrations_dir
            applied = await apply_migrations(env[spec.binding], folder, spec.migrations_table)
            console.print(f"applied {len(applied)} migration(s): {', '.join(applied) or '-'}")

    run(work)


@db_app.command("execute")
def db_execute(
    database: Annotated[str, typer.Argument(help="binding or database_name")],
    command: Annotated[str | None, typer.Option("--command", help="SQL to run")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="SQL file to run")] = None,
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
) -> None:
    """Run SQL (one statement: rows as JSON; a file: statement count)."""
    if (command is None) == (file is None):
        err_console.print("[red]error:[/red] give exactly one of --command or --file")
        raise typer.Exit(2)

    async def work() -> None:
        async with env_of(config, state_dir) as env:
            db = env[_db_spec(env.project, database).binding]
            if file is not None:
                result = await db.exec(file.read_text(encoding="utf-8"))
                console.print(f"executed {result.count} statement(s) in {result.duration:.1f} ms")
            else:
                rows = (await db.prepare(command).all()).results
                print(json.dumps(rows, default=repr, ensure_ascii=False, indent=2))

    run(work)


def main() -> None:
    app()
