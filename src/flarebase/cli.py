"""The `flarebase` command: a thin layer over documented functions.

flarebase init DIR                           scaffold a new backend project in DIR
flarebase dev [--provider miniflare]         serve the project (embedded default, or Miniflare)
flarebase db migrations create|list|apply    D1 migrations, as wrangler records them
flarebase db execute DATABASE --command SQL  run SQL against a D1 binding
flarebase vectorize create|list|delete|create-metadata-index|list-metadata-index
flarebase queues list|peek|purge|retry-dlq   inspect the local queues
flarebase do list                            stored Durable Objects, with sizes
flarebase deploy --target python-worker|bridge   deploy to Cloudflare with wrangler
flarebase bench [--quick] [NAME ...]         the benchmarks of a source checkout
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .migrate.cli import migrate_app
from .platform import Env, FlarebaseError, load_project, open_env
from .platform.config import Project
from .platform.d1 import script_statements
from .platform.migrations import apply_migrations, create_migration, list_migrations

app = typer.Typer(help="flarebase: the backend for AI chat apps on Cloudflare, in Python.")
db_app = typer.Typer(help="D1 databases.")
migrations_app = typer.Typer(help="D1 migrations (same files and table as wrangler).")
vectorize_app = typer.Typer(help="Local Vectorize indexes (wrangler vectorize's commands).")
queues_app = typer.Typer(help="Local queues.")
do_app = typer.Typer(help="Local Durable Objects.")
app.add_typer(db_app, name="db")
app.add_typer(vectorize_app, name="vectorize")
app.add_typer(queues_app, name="queues")
app.add_typer(do_app, name="do")
db_app.add_typer(migrations_app, name="migrations")
app.add_typer(migrate_app, name="migrate")

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
    table = Table(
        "binding", "product", "target", "provider", title=f"bindings of {env.project.path}"
    )
    project = env.project
    rows = [(s.binding, "D1", s.name) for s in project.d1_databases]
    rows += [(s.binding, "KV", s.name) for s in project.kv_namespaces]
    rows += [(s.binding, "R2", s.name) for s in project.r2_buckets]
    rows += [(s.binding, "Vectorize", s.index_name) for s in project.vectorize]
    rows += [(s.name, "Durable Object", s.class_name) for s in project.durable_objects]
    rows += [(s.binding, "Queue", s.queue) for s in project.queue_producers]
    for name, product, target in rows:
        table.add_row(name, product, target, provider_of(env[name]))
    for name, value in env.vars.items():
        table.add_row(name, "var", "(set)" if value else "(empty)", "")
    return table


def provider_of(binding: Any) -> str:
    """The provider package a binding comes from (flarebase.platform.<provider>...): with
    --provider miniflare some bindings are the bridge's (Miniflare), some local."""
    parts = type(binding).__module__.split(".")
    return parts[2] if parts[:2] == ["flarebase", "platform"] and len(parts) > 3 else "?"


DevProviderOpt = Annotated[
    str,
    typer.Option(
        "--provider",
        help="local (embedded) or miniflare (D1, KV, R2 and queues on Miniflare, state in "
        "<state dir>/miniflare; Vectorize and Durable Objects stay local)",
    ),
]


@app.command()
def dev(
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
    provider: DevProviderOpt = "local",
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8787,
    serve: Annotated[bool, typer.Option(help="serve the API (--no-serve: set up and exit)")] = True,
) -> None:
    """Check the server's settings (unless --no-serve), open the project's bindings on
    the provider, apply D1 migrations, report the bindings, and serve the API."""

    async def work() -> None:
        from .server import durable_objects  # the server's classes (ChatStream, ...)

        # Before any binding opens (Miniflare takes seconds): bad settings are one line.
        settings = server_settings(config) if serve else None
        async with open_env(
            config, provider=provider, state_dir=state_dir, durable_objects=durable_objects()
        ) as env:
            for spec in env.project.d1_databases:
                folder = env.project.root / spec.migrations_dir
                applied = await apply_migrations(env[spec.binding], folder, spec.migrations_table)
                if applied:
                    console.print(f"{spec.binding}: applied {', '.join(applied)}")
            console.print(describe_bindings(env))
            if settings is not None:
                await serve_api(env, host, port, settings)

    run(work)


def server_settings(config: Path) -> Any:
    """The server's settings from the project's vars, checked as the app checks them at
    start (ConfigError: invalid values, or no AUTH_SECRET)."""
    from .platform.env import read_vars
    from .server.auth import check_settings
    from .server.settings import Settings

    settings = Settings.from_env(read_vars(load_project(config)))
    check_settings(settings)
    return settings


async def serve_api(env: Env, host: str, port: int, settings: Any = None) -> None:
    import uvicorn

    from .server import create_app

    app = create_app(env, settings)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, lifespan="off"))
    # The app's start-up (settings, memory's index) runs here, not in uvicorn: a
    # ConfigError it raises is then one line and exit 1, not a traceback and exit 0.
    async with app.router.lifespan_context(app):
        console.print(f"serving the API on http://{host}:{port} (OpenAPI at /docs)")
        await server.serve()


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="the project folder (created if missing)")],
    name: Annotated[str | None, typer.Option(help="Worker name (default: the folder's)")] = None,
    force: Annotated[bool, typer.Option(help="overwrite existing files")] = False,
) -> None:
    """Scaffold a new backend project: wrangler.toml with every binding, migrations/,
    .env.example listing every setting, .dev.vars with a fresh AUTH_SECRET, .gitignore."""
    from .server.scaffold import scaffold

    try:
        created = scaffold(directory, name=name, force=force)
    except FlarebaseError as e:
        err_console.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    for path in created:
        console.print(f"created {path}", highlight=False)
    console.print(f"next: cd {directory} && flarebase dev", highlight=False)


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
                # As `wrangler d1 execute --file`: the file's statements in one batch.
                sql = file.read_text(encoding="utf-8")
                results = await db.batch([db.prepare(s) for s in script_statements(sql)])
                console.print(f"executed {len(results)} statement(s)")
            else:
                rows = (await db.prepare(command).all()).results
                print(json.dumps(rows, default=repr, ensure_ascii=False, indent=2))

    run(work)


# -- local state: Vectorize indexes, queues, Durable Objects -------------------------------
def local_state(config: Path, state_dir: Path | None) -> Path:
    """The local provider's state folder for a project (as `open_env` resolves it)."""
    if state_dir is not None:
        return state_dir
    try:
        return load_project(config).root / ".flarebase" / "state"
    except FlarebaseError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(1) from None


def attempt(work: Callable[[], T]) -> T:
    try:
        return work()
    except FlarebaseError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(1) from None


@vectorize_app.command("create")
def vectorize_create(
    name: str,
    dimensions: Annotated[int, typer.Option(help="vector length, 1 to 1536")],
    metric: Annotated[str, typer.Option(help="cosine, euclidean or dot-product")],
    description: str = "",
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
) -> None:
    """Create an index (dimensions and metric are fixed for its life)."""
    from .platform.local.vectorize import create_index

    state = local_state(config, state_dir)
    attempt(
        lambda: create_index(
            state, name, dimensions=dimensions, metric=metric, description=description
        )
    )
    console.print(f"created index {name} ({dimensions} dimensions, {metric})")


@vectorize_app.command("list")
def vectorize_list(config: ConfigOpt = Path("wrangler.toml"), state_dir: StateOpt = None) -> None:
    """List indexes with their configuration."""
    from .platform.local.vectorize import list_indexes

    table = Table("name", "dimensions", "metric", "description")
    for info in attempt(lambda: list_indexes(local_state(config, state_dir))):
        table.add_row(info.name, str(info.config.dimensions), info.config.metric, info.description)
    console.print(table)


@vectorize_app.command("delete")
def vectorize_delete(
    name: str, config: ConfigOpt = Path("wrangler.toml"), state_dir: StateOpt = None
) -> None:
    """Delete an index and all its vectors."""
    from .platform.local.vectorize import delete_index

    attempt(lambda: delete_index(local_state(config, state_dir), name))
    console.print(f"deleted index {name}")


@vectorize_app.command("create-metadata-index")
def vectorize_create_metadata_index(
    name: str,
    property_name: Annotated[str, typer.Option("--property-name")],
    type: Annotated[str, typer.Option("--type", help="string, number or boolean")],
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
) -> None:
    """Index a metadata property so queries can filter on it (vectors written from now on)."""
    from .platform.local.vectorize import create_metadata_index

    attempt(
        lambda: create_metadata_index(local_state(config, state_dir), name, property_name, type)
    )
    console.print(f"created metadata index {property_name} ({type}) on {name}")


@vectorize_app.command("list-metadata-index")
def vectorize_list_metadata_index(
    name: str, config: ConfigOpt = Path("wrangler.toml"), state_dir: StateOpt = None
) -> None:
    """List an index's metadata indexes."""
    from .platform.local.vectorize import list_metadata_indexes

    table = Table("property", "type")
    for index in attempt(lambda: list_metadata_indexes(local_state(config, state_dir), name)):
        table.add_row(index.property_name, index.index_type)
    console.print(table)


@queues_app.command("list")
def queues_list(config: ConfigOpt = Path("wrangler.toml"), state_dir: StateOpt = None) -> None:
    """Queues with their message counts (those in wrangler.toml, and any holding messages)."""
    from .platform.local.queues import list_queues

    project = attempt(lambda: load_project(config))
    names = {s.queue for s in project.queue_producers} | {s.queue for s in project.queue_consumers}
    table = Table("queue", "messages", "ready", "delayed", "leased")
    for q in list_queues(local_state(config, state_dir), sorted(names)):
        table.add_row(q.name, str(q.messages), str(q.ready), str(q.delayed), str(q.leased))
    console.print(table)


@queues_app.command("peek")
def queues_peek(
    queue: str,
    limit: int = 10,
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
) -> None:
    """The next messages of a queue, without leasing them."""
    from .platform.local.queues import peek

    for message in peek(local_state(config, state_dir), queue, limit):
        print(json.dumps(dataclasses.asdict(message), default=str, ensure_ascii=False))


@queues_app.command("purge")
def queues_purge(
    queue: str, config: ConfigOpt = Path("wrangler.toml"), state_dir: StateOpt = None
) -> None:
    """Delete every message of a queue."""
    from .platform.local.queues import purge

    console.print(f"purged {purge(local_state(config, state_dir), queue)} message(s) from {queue}")


@queues_app.command("retry-dlq")
def queues_retry_dlq(
    dead_letter_queue: str,
    into: Annotated[str, typer.Option(help="the queue to send the messages back to")],
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
) -> None:
    """Move every message of a dead-letter queue back to a queue."""
    from .platform.local.queues import retry_dlq

    moved = retry_dlq(local_state(config, state_dir), dead_letter_queue, into)
    console.print(f"moved {moved} message(s) from {dead_letter_queue} to {into}")


@do_app.command("list")
def do_list(
    class_name: Annotated[str | None, typer.Argument(help="only this class")] = None,
    config: ConfigOpt = Path("wrangler.toml"),
    state_dir: StateOpt = None,
) -> None:
    """Stored Durable Objects by class, with their storage size."""
    from .platform.local.durable_objects import list_objects

    table = Table("class", "id", "name", "bytes", "alarm (ms)")
    for obj in list_objects(local_state(config, state_dir), class_name):
        table.add_row(
            obj.class_name, obj.id, obj.name or "", str(obj.size_bytes), str(obj.alarm_ms or "")
        )
    console.print(table)


DEPLOY_TARGETS = ("python-worker", "bridge")


@app.command()
def deploy(
    target: Annotated[str, typer.Option(help="python-worker or bridge")],
    config: ConfigOpt = Path("wrangler.toml"),
    out: Annotated[Path | None, typer.Option(help="default .flarebase/<target>")] = None,
    consumer: Annotated[
        list[str] | None,
        typer.Option(help="QUEUE=module:function, for each queue consumer (python-worker)"),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            help="write the files; python-worker: print the command; bridge: "
            "run wrangler deploy --dry-run --outdir dist (offline)"
        ),
    ] = False,
) -> None:
    """Deploy to Cloudflare.

    python-worker: flarebase as a Python Worker: write wrangler.toml, pyproject.toml and
    src/entry.py, then run `uv run pywrangler deploy` there.

    bridge: the bridge Worker (for provider="bridge") with the project's D1, KV, R2,
    Vectorize and queue producer bindings: write wrangler.toml and src/index.js, then run
    bridge/'s wrangler deploy there. BRIDGE_SECRET is $FLAREBASE_BRIDGE_SECRET, else
    FLAREBASE_BRIDGE_SECRET in the project's .dev.vars (16+ characters; the provider
    reads the same name); it is uploaded with the deploy (wrangler --secrets-file), so
    the Worker never runs without it and a changed secret replaces the old one. The
    Worker is named <project name>-bridge; a real deploy needs `wrangler login` or
    $CLOUDFLARE_API_TOKEN, as wrangler does.
    """
    try:
        if target not in DEPLOY_TARGETS:
            raise FlarebaseError(f"unknown target {target!r}; known: {', '.join(DEPLOY_TARGETS)}")
        if target == "bridge":
            if consumer:
                raise FlarebaseError("--consumer is for --target python-worker")
            code = _deploy_bridge(config, out, dry_run)
        else:
            code = _deploy_python_worker(config, out, consumer or [], dry_run)
    except FlarebaseError as e:
        err_console.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def _deploy_python_worker(config: Path, out: Path | None, consumer: list[str], dry: bool) -> int:
    from .deploy import deploy_python_worker, plan_python_worker

    consumers = dict(item.split("=", 1) for item in consumer if "=" in item)
    plan = plan_python_worker(config, out, consumers=consumers)
    console.print(plan.describe(), highlight=False)
    command = " ".join(plan.command)
    console.print(
        f"{'would run' if dry else 'running'}: (cd {plan.out_dir} && {command})", highlight=False
    )
    return deploy_python_worker(plan, dry_run=dry)


def _deploy_bridge(config: Path, out: Path | None, dry: bool) -> int:
    from .deploy import deploy_bridge, plan_bridge

    plan = plan_bridge(config, out)
    console.print(plan.describe(), highlight=False)
    command = " ".join(plan.command(dry_run=dry))
    console.print(f"running: (cd {plan.out_dir} && {command})", highlight=False)
    deploy_bridge(plan, dry_run=dry)
    return 0


# The benchmarks ship with the source (bench/ beside src/), not in the wheel.
BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


@app.command()
def bench(
    names: Annotated[
        list[str] | None, typer.Argument(help="which ones (d1, kv, r2, ...); all if none")
    ] = None,
    quick: Annotated[bool, typer.Option(help="smaller data sets, as CI runs them")] = False,
) -> None:
    """Run the benchmarks of bench/, each printing its ratio against a peer run beside it."""
    known = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    if not known:
        err_console.print(f"error: no benchmarks in {BENCH_DIR}; they come with a source checkout")
        raise typer.Exit(1)
    unknown = [name for name in names or [] if name not in known]
    if unknown:
        err_console.print(f"error: unknown benchmark {unknown[0]!r}; known: {', '.join(known)}")
        raise typer.Exit(1)
    env = {**os.environ, "FLAREBASE_BENCH_QUICK": "1" if quick else "0"}
    console.print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    failed = []
    for name in names or known:
        console.print(f"== {name}", style="bold")
        done = subprocess.run([sys.executable, f"bench_{name}.py"], cwd=BENCH_DIR, env=env)
        if done.returncode != 0:
            failed.append(name)
    if failed:
        err_console.print(f"error: failed: {', '.join(failed)}")
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
